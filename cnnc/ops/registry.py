"""The op registry: one :class:`OpDef` per op holds its attribute schema, its shape/dtype rule
and its NumPy reference, side by side.

    conv2d = def_op("conv2d", arity=(2, 3), attrs={...}, traits={"pure"})

    @conv2d.shape
    def _(x, w, b=None, *, strides, padding, dilation, groups): ...   # TensorTypes -> TensorType

    @conv2d.reference
    def _(x, w, b=None, *, strides, padding, dilation, groups): ...   # ndarrays -> ndarray
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Callable

from cnnc.errors import CnncError, ConfigError, ShapeError, UnsupportedError
from cnnc.ir.types import TensorType

REQUIRED = object()


@dataclass(frozen=True)
class Attr:
    """One attribute: a normaliser ``kind`` (see :data:`KINDS`), a default and a doc line."""

    kind: str
    default: Any = REQUIRED
    doc: str = ""


def _int(v, name, where, minimum=None):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise ConfigError(f"{where}: {name} must be an integer, got {v!r}")
    v = int(v)
    if minimum is not None and v < minimum:
        raise ConfigError(f"{where}: {name} must be >= {minimum}, got {v}")
    return v


def _pair(v, name, where, minimum=1):
    """An int or a pair of ints -> (a, b)."""
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ConfigError(f"{where}: {name} must be an int or a pair of ints, got {v!r}")
        return tuple(_int(x, name, where, minimum) for x in v)
    x = _int(v, name, where, minimum)
    return (x, x)


def _padding(v, name, where):
    """'valid' | 'same' | p | (ph, pw) | ((top, bottom), (left, right))."""
    if isinstance(v, str):
        w = v.lower()
        if w not in ("valid", "same"):
            raise ConfigError(f"{where}: {name} must be 'valid', 'same' or explicit pads, got {v!r}")
        return w
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        p = _int(v, name, where, 0)
        return ((p, p), (p, p))
    if isinstance(v, (list, tuple)) and len(v) == 2:
        if all(isinstance(x, (list, tuple)) for x in v):
            return tuple(_pair(x, name, where, 0) for x in v)
        ph, pw = _pair(v, name, where, 0)
        return ((ph, ph), (pw, pw))
    raise ConfigError(f"{where}: {name} must be 'valid', 'same', an int, (ph, pw) or "
                      f"((top, bottom), (left, right)), got {v!r}")


def _float(v, name, where):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ConfigError(f"{where}: {name} must be a number, got {v!r}")
    return float(v)


def _bool(v, name, where):
    if not isinstance(v, (bool, int)) or v not in (0, 1):
        raise ConfigError(f"{where}: {name} must be a bool, got {v!r}")
    return bool(v)


def _ints(v, name, where):
    if not isinstance(v, (list, tuple)):
        raise ConfigError(f"{where}: {name} must be a list of ints, got {v!r}")
    return tuple(_int(x, name, where) for x in v)


def _str(v, name, where):
    if not isinstance(v, str):
        raise ConfigError(f"{where}: {name} must be a string, got {v!r}")
    return v


def _any(v, name, where):
    return v


KINDS: dict[str, Callable] = {
    "int": lambda v, n, w: _int(v, n, w),
    "pos_int": lambda v, n, w: _int(v, n, w, 1),
    "pair": _pair, "padding": _padding, "float": _float, "bool": _bool, "ints": _ints,
    "str": _str, "any": _any,
}


@dataclass
class OpDef:
    name: str
    attrs: dict[str, Attr]
    arity: tuple[int, int | None]
    traits: frozenset = field(default_factory=frozenset)
    doc: str = ""
    shape_fn: Callable | None = None
    reference_fn: Callable | None = None

    # decorators
    def shape(self, fn):
        self.shape_fn = fn
        return fn

    def reference(self, fn):
        self.reference_fn = fn
        return fn

    def check_arity(self, n: int, where: str) -> None:
        lo, hi = self.arity
        if n < lo or (hi is not None and n > hi):
            want = f"{lo}" if lo == hi else f"{lo}..{hi if hi is not None else ''}"
            raise ConfigError(f"{where}: {self.name} takes {want} operands, got {n}")

    def check_attrs(self, attrs: dict, where: str) -> dict:
        """Unknown names rejected, values normalised, defaults filled, schema order kept."""
        unknown = set(attrs) - set(self.attrs)
        if unknown:
            raise ConfigError(f"{where}: unknown attribute(s) {sorted(unknown)} for {self.name}; "
                              f"expected some of {list(self.attrs)}")
        out = {}
        for name, spec in self.attrs.items():
            if name in attrs:
                out[name] = KINDS[spec.kind](attrs[name], name, where)
            elif spec.default is REQUIRED:
                raise ConfigError(f"{where}: {self.name} needs attribute {name!r}")
            else:
                out[name] = spec.default
        return out

    def infer(self, types: list[TensorType], attrs: dict, where: str) -> TensorType:
        if self.shape_fn is None:
            raise UnsupportedError(f"{where}: op {self.name!r} has no shape rule")
        try:
            return self.shape_fn(*types, **attrs)
        except ShapeError as e:
            raise ShapeError(f"{where}: {e}") from None
        except CnncError:
            raise

    def evaluate(self, arrays, attrs: dict):
        if self.reference_fn is None:
            raise UnsupportedError(f"op {self.name!r} has no reference implementation")
        return self.reference_fn(*arrays, **attrs)


REGISTRY: dict[str, OpDef] = {}


def def_op(name: str, *, attrs: dict[str, Attr] | None = None, arity=(1, 1), traits=("pure",),
           doc: str = "") -> OpDef:
    if name in REGISTRY:
        raise CnncError(f"op {name!r} is registered twice")
    op = OpDef(name, dict(attrs or {}), tuple(arity), frozenset(traits), doc)
    REGISTRY[name] = op
    return op


def get_op(name: str) -> OpDef:
    import cnnc.ops  # noqa: F401  (registers every op family)
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnsupportedError(f"unknown op {name!r}; known ops: {sorted(REGISTRY)}") from None
