"""Data movement: flatten, reshape, concat, pad, transpose. Layout is NHWC; flatten is
row-major over (H, W, C) like Keras."""

from __future__ import annotations

import numpy as np

from cnnc.errors import ConfigError, ShapeError
from cnnc.ir.types import TensorType
from cnnc.ops.common import normalize_axis, same_dtype
from cnnc.ops.registry import KINDS, Attr, _pair, def_op


def _split_prod(dims):
    """(product of the int dims, list of symbols)."""
    prod, syms = 1, []
    for d in dims:
        if isinstance(d, int):
            prod *= d
        else:
            syms.append(d)
    return prod, syms


def _merge(dims):
    prod, syms = _split_prod(dims)
    if not syms:
        return prod
    if len(syms) == 1 and prod == 1:
        return syms[0]
    raise ShapeError(f"cannot merge dims {tuple(dims)} that mix symbols")


flatten = def_op("flatten", attrs={"axis": Attr("int", 1)},
                 doc="(d0..d_{axis-1}, d_axis..) -> (prod(before), prod(after))")


@flatten.shape
def _(x, *, axis):
    if not 0 <= axis <= x.rank:
        raise ShapeError(f"flatten axis {axis} is out of range for {x}")
    return TensorType((_merge(x.shape[:axis]), _merge(x.shape[axis:])), x.dtype)


@flatten.reference
def _(x, *, axis):
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


reshape = def_op("reshape", attrs={"shape": Attr("ints")},
                 doc="target shape; 0 copies the input dim at that index, -1 is inferred")


@reshape.shape
def _(x, *, shape):
    if sum(1 for d in shape if d == -1) > 1:
        raise ShapeError(f"reshape target {shape} has more than one -1")
    out = []
    for i, d in enumerate(shape):
        if d == 0:
            if i >= x.rank:
                raise ShapeError(f"reshape target {shape}: 0 at index {i} has no input dim")
            out.append(x.shape[i])
        elif d < -1:
            raise ShapeError(f"reshape target {shape} has a negative size {d}")
        else:
            out.append(d)
    in_prod, in_syms = _split_prod(x.shape)
    known = [d for d in out if d != -1]
    out_prod, out_syms = _split_prod(known)
    rest = list(in_syms)
    for s in out_syms:
        if s not in rest:
            raise ShapeError(f"reshape {x} to {shape}: symbol {s!r} is not in the input")
        rest.remove(s)
    if -1 in out:
        if out_prod == 0 or in_prod % out_prod:
            raise ShapeError(f"cannot reshape {x} into {shape}")
        q = in_prod // out_prod
        if rest and q != 1:
            raise ShapeError(f"cannot reshape {x} into {shape}: -1 mixes a symbol and a size")
        out[out.index(-1)] = rest[0] if rest else q
        rest = rest[1:]
    elif in_prod != out_prod:
        raise ShapeError(f"cannot reshape {x} ({in_prod} elements per symbol) into {shape}")
    if rest:
        raise ShapeError(f"reshape {x} to {shape} drops symbolic dims {rest}")
    return TensorType(tuple(out), x.dtype)


@reshape.reference
def _(x, *, shape):
    target = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(target)


concat = def_op("concat", attrs={"axis": Attr("int", -1)}, arity=(1, None))


@concat.shape
def _(*xs, axis):
    first = xs[0]
    ax = normalize_axis(axis, first.rank)
    total = 0
    for i, t in enumerate(xs):
        if t.rank != first.rank or any(a != b for k, (a, b) in enumerate(zip(t.shape, first.shape))
                                       if k != ax):
            raise ShapeError(f"concat operand {i} {t} does not match operand 0 {first} "
                             f"outside axis {axis}")
        if not isinstance(t.shape[ax], int):
            raise ShapeError(f"concat axis {axis} must be static, got {t}")
        total += t.shape[ax]
    return TensorType(tuple(total if k == ax else d for k, d in enumerate(first.shape)),
                      same_dtype(*xs))


concat.reference(lambda *xs, axis: np.concatenate(xs, axis=axis))

def _pads_attr(v, name, where):
    """((before, after), ...) of non-negative ints, as nested tuples (arrays and lists too)."""
    try:
        pairs = [tuple(p) for p in np.asarray(v, dtype=object).tolist()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError
        return tuple(tuple(_pair(p, name, where, 0)) for p in pairs)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {name} must be ((before, after), ...) per dim, "
                          f"got {v!r}") from None


KINDS["pads"] = _pads_attr

pad = def_op("pad", attrs={"pads": Attr("pads"), "value": Attr("float", 0.0)},
             doc="constant padding; pads is ((before, after), ...) for every dim")


def _check_pads(pads, rank):
    if len(pads) != rank:
        raise ShapeError(f"pads must be {rank} non-negative (before, after) pairs, got {pads}")
    return pads


@pad.shape
def _(x, *, pads, value):
    pads = _check_pads(pads, x.rank)
    shape = []
    for d, (a, b) in zip(x.shape, pads):
        if not isinstance(d, int) and (a or b):
            raise ShapeError(f"cannot pad symbolic dim {d!r} of {x}")
        shape.append(d if not isinstance(d, int) else d + a + b)
    return TensorType(tuple(shape), x.dtype)


pad.reference(lambda x, pads, value: np.pad(x, pads, constant_values=value))

transpose = def_op("transpose", attrs={"perm": Attr("ints")})


@transpose.shape
def _(x, *, perm):
    if sorted(perm) != list(range(x.rank)):
        raise ShapeError(f"perm {perm} is not a permutation of the {x.rank} axes of {x}")
    return TensorType(tuple(x.shape[p] for p in perm), x.dtype)


transpose.reference(lambda x, perm: np.transpose(x, perm))


# ---- slicing, gathering, tiling, broadcasting ---------------------------------------
#: an ``end`` at least this large means "to the end of the axis" (ONNX writes INT64_MAX)
BIG = 2 ** 62


def _axis_slice(d, start: int, end: int, step: int, where: str):
    """(first index, step, length) of ``x[start:end:step]`` along a dim of size ``d`` (Python
    and ONNX slicing: negative indices count from the end, out-of-range bounds clamp). A
    symbolic ``d`` may only be taken whole."""
    if step == 0:
        raise ShapeError(f"{where}: slice step must not be 0")
    if not isinstance(d, int):
        if start == 0 and step == 1 and end >= BIG:
            return 0, 1, d
        raise ShapeError(f"{where}: cannot slice the symbolic dim {d!r} "
                         f"(start {start}, end {end}, step {step}); only a whole symbolic dim")
    first, stop, st = slice(start, end, step).indices(d)
    return first, st, len(range(first, stop, st))


def slice_geometry(shape, starts, ends, axes, steps):
    """Per dim of ``shape``: (first index, step, output length) of a slice node."""
    rank = len(shape)
    if not (len(starts) == len(ends) == len(axes) == len(steps)):
        raise ShapeError(f"slice starts {starts}, ends {ends}, axes {axes} and steps {steps} "
                         f"must have the same length")
    geo = [(0, 1, d) for d in shape]
    seen = set()
    for s, e, ax, st in zip(starts, ends, axes, steps):
        k = normalize_axis(ax, rank, "slice axis")
        if k in seen:
            raise ShapeError(f"slice axes {axes} repeat axis {ax}")
        seen.add(k)
        geo[k] = _axis_slice(shape[k], s, e, st, f"slice of axis {ax}")
    return geo


slice_ = def_op("slice", attrs={"starts": Attr("ints"), "ends": Attr("ints"),
                                "axes": Attr("ints"), "steps": Attr("ints")},
                doc="x[starts:ends:steps] along axes (Python/ONNX semantics: negative indices, "
                    "clamped bounds, negative steps); a strided copy")


@slice_.shape
def _(x, *, starts, ends, axes, steps):
    geo = slice_geometry(x.shape, starts, ends, axes, steps)
    return TensorType(tuple(n for _, _, n in geo), x.dtype)


@slice_.reference
def _(x, *, starts, ends, axes, steps):
    index = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        index[ax % x.ndim] = slice(s, e, st)
    return x[tuple(index)]


take = def_op("take", attrs={"axis": Attr("int"), "indices": Attr("ints"),
                             "indices_shape": Attr("ints", ())},
              doc="np.take(x, indices.reshape(indices_shape), axis): a gather with constant "
                  "indices (negative ones count from the end); a scalar index (indices_shape "
                  "()) drops the axis")


@take.shape
def _(x, *, axis, indices, indices_shape):
    ax = normalize_axis(axis, x.rank, "take axis")
    d = x.shape[ax]
    if not isinstance(d, int):
        raise ShapeError(f"take along the symbolic dim {d!r} of {x}")
    if int(np.prod(indices_shape, dtype=np.int64)) != len(indices):
        raise ShapeError(f"take: {len(indices)} indices do not fill indices_shape "
                         f"{tuple(indices_shape)}")
    bad = [i for i in indices if not -d <= i < d]
    if bad:
        raise ShapeError(f"take: indices {bad} are out of range for axis {axis} of {x} "
                         f"(size {d}: expected -{d}..{d - 1})")
    return TensorType((*x.shape[:ax], *indices_shape, *x.shape[ax + 1:]), x.dtype)


@take.reference
def _(x, *, axis, indices, indices_shape):
    idx = np.asarray(indices, np.int64).reshape(indices_shape)
    return np.take(x, idx, axis=axis % x.ndim)


tile = def_op("tile", attrs={"repeats": Attr("ints")}, doc="np.tile with one repeat per dim")


@tile.shape
def _(x, *, repeats):
    if len(repeats) != x.rank or any(r < 0 for r in repeats):
        raise ShapeError(f"tile repeats {tuple(repeats)} must be {x.rank} non-negative ints "
                         f"for {x}")
    out = []
    for d, r in zip(x.shape, repeats):
        if not isinstance(d, int) and r != 1:
            raise ShapeError(f"cannot tile the symbolic dim {d!r} of {x} {r} times")
        out.append(d * r if isinstance(d, int) else d)
    return TensorType(tuple(out), x.dtype)


tile.reference(lambda x, repeats: np.tile(x, repeats))


def _dims_attr(v, name, where):
    """A shape: ints >= 0 and symbols."""
    if not isinstance(v, (list, tuple)) or any(
            isinstance(d, bool) or not isinstance(d, (int, np.integer, str)) for d in v):
        raise ConfigError(f"{where}: {name} must be a list of ints and symbols, got {v!r}")
    return tuple(d if isinstance(d, str) else int(d) for d in v)


KINDS["dims"] = _dims_attr

broadcast_to = def_op("broadcast_to", attrs={"shape": Attr("dims")},
                      doc="x broadcast NumPy-style against ``shape`` (both ways: ONNX Expand)")


@broadcast_to.shape
def _(x, *, shape):
    from cnnc.ops.common import broadcast_shapes
    off = len(shape) - x.rank
    for k, d in enumerate(shape):
        if isinstance(d, str) and (k < off or x.shape[k - off] != d):
            raise ShapeError(f"broadcast_to {tuple(shape)}: the symbol {d!r} must stand where "
                             f"{x} has it")
    return TensorType(broadcast_shapes(x.shape, tuple(shape)), x.dtype)


@broadcast_to.reference
def _(x, *, shape):
    out = []
    for i in range(max(x.ndim, len(shape))):
        a = x.shape[-1 - i] if i < x.ndim else 1
        b = shape[-1 - i] if i < len(shape) else 1
        out.append(a if isinstance(b, str) or b == 1 else b)
    return np.broadcast_to(x, tuple(reversed(out))).copy()
