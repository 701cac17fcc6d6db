"""Fused ops made by the pass pipeline: a conv2d or dense followed by an ordered epilogue.

    conv2d_fused(x, w, b, *extras) {strides, padding, dilation, groups, epilogue}
    dense_fused(x, w, b, *extras) {epilogue}

``b`` is always present. The epilogue is a tuple of steps applied in order to ``y = op + b``:
an activation ``("relu",)``, ``("leaky_relu", alpha)``, ``("clip", lo, hi)``, ...;
``("scale_shift",)`` consumes the next two extras (per-channel scale, shift);
``("add",)`` consumes the next extra (a residual of the output's shape).
"""

from __future__ import annotations

from cnnc.errors import ConfigError, ShapeError
from cnnc.ir.types import TensorType
from cnnc.ops.common import broadcast_shapes, expect_vector
from cnnc.ops.conv import CONV_ATTRS, conv2d_reference, conv2d_type
from cnnc.ops.dense import dense_type
from cnnc.ops.elementwise import ACTIVATIONS, activation
from cnnc.ops.registry import KINDS, REQUIRED, Attr, def_op

#: step name -> (number of extra operands it consumes, names of its parameters)
STEPS = {name: (0, tuple(attrs)) for name, (_, attrs) in ACTIVATIONS.items()}
STEPS.update({"scale_shift": (2, ()), "add": (1, ())})
#: step name -> default values of its trailing parameters (as the activation op's attributes)
_DEFAULTS = {name: tuple(a.default for a in attrs.values() if a.default is not REQUIRED)
             for name, (_, attrs) in ACTIVATIONS.items()}


def step(name: str, *params) -> tuple:
    """Build one epilogue step; checks the name and the parameter count."""
    if name not in STEPS:
        raise ConfigError(f"unknown epilogue step {name!r}; expected one of {sorted(STEPS)}")
    want = STEPS[name][1]
    defaults = _DEFAULTS.get(name, ())
    missing = len(want) - len(params)
    if 0 < missing <= len(defaults):  # omitted trailing parameters take the op's defaults
        params = (*params, *defaults[len(defaults) - missing:])
    if len(params) != len(want):
        raise ConfigError(f"epilogue step {name!r} takes parameters {want}, got {params}")
    return (name, *(float(p) for p in params))


def _epilogue(v, name, where):
    if not isinstance(v, (list, tuple)):
        raise ConfigError(f"{where}: epilogue must be a list of steps, got {v!r}")
    try:
        return tuple(step(s) if isinstance(s, str) else step(*s) for s in v)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def num_extras(epilogue) -> int:
    return sum(STEPS[s[0]][0] for s in epilogue)


def residual_positions(epilogue) -> list[int]:
    """The input indices of a fused op's residual operands (the ``add`` steps' extras)."""
    k, found = 3, []
    for s in epilogue:
        if s[0] == "add":
            found.append(k)
        k += STEPS[s[0]][0]
    return found


def _check_extras(out: TensorType, extras, epilogue) -> None:
    if len(extras) != num_extras(epilogue):
        raise ShapeError(f"epilogue {[s[0] for s in epilogue]} needs {num_extras(epilogue)} "
                         f"extra operands, got {len(extras)}")
    it = iter(extras)
    for s in epilogue:
        if s[0] == "scale_shift":
            for what in ("scale", "shift"):
                expect_vector(next(it), out.shape[-1], what)
        elif s[0] == "add":
            r = next(it)
            if broadcast_shapes(out.shape, r.shape) != out.shape:
                raise ShapeError(f"residual {r} does not broadcast to the output {out}")


def apply_epilogue(y, extras, epilogue):
    """The meaning of an epilogue, applied to the array ``y``."""
    it = iter(extras)
    for name, *params in epilogue:
        if name == "scale_shift":
            y = y * next(it) + next(it)
        elif name == "add":
            y = y + next(it)
        else:
            y = activation(name, y, **dict(zip(STEPS[name][1], params)))
    return y


KINDS["epilogue"] = _epilogue
EPILOGUE = {"epilogue": Attr("epilogue", (), "ordered steps applied after op + bias")}

conv2d_fused = def_op("conv2d_fused", attrs={**CONV_ATTRS, **EPILOGUE}, arity=(3, None),
                      doc=__doc__)
dense_fused = def_op("dense_fused", attrs=EPILOGUE, arity=(3, None), doc=__doc__)


@conv2d_fused.shape
def _(x, w, b, *extras, epilogue, **conv_attrs):
    out = conv2d_type(x, w, b, **conv_attrs)
    _check_extras(out, extras, epilogue)
    return out


@conv2d_fused.reference
def _(x, w, b, *extras, epilogue, **conv_attrs):
    return apply_epilogue(conv2d_reference(x, w, b, **conv_attrs), extras, epilogue)


@dense_fused.shape
def _(x, w, b, *extras, epilogue):
    out = dense_type(x, w, b)
    _check_extras(out, extras, epilogue)
    return out


@dense_fused.reference
def _(x, w, b, *extras, epilogue):
    return apply_epilogue(x @ w + b, extras, epilogue)
