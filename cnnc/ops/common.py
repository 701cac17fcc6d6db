"""Small helpers for shape rules (symbolic dims, rank checks, broadcasting)."""

from __future__ import annotations

from cnnc.errors import DTypeError, ShapeError
from cnnc.ir.types import TensorType


def expect_rank(t: TensorType, rank: int, what: str) -> None:
    if t.rank != rank:
        raise ShapeError(f"{what} must have rank {rank}, got {t}")


def expect_static(dims, what: str) -> tuple[int, ...]:
    for d in dims:
        if not isinstance(d, int):
            raise ShapeError(f"{what} must be static, got symbolic dim {d!r}")
    return tuple(dims)


def same_dtype(*types: TensorType) -> str:
    dtypes = {t.dtype for t in types}
    if len(dtypes) != 1:
        raise DTypeError(f"operands have different dtypes: {', '.join(str(t) for t in types)}")
    return types[0].dtype


def expect_vector(t: TensorType, n, what: str) -> None:
    if t.shape != (n,):
        raise ShapeError(f"{what} must have shape ({n},), got {t}")


def broadcast_shapes(a: tuple, b: tuple) -> tuple:
    """NumPy broadcasting over dims that may be symbols."""
    out = []
    for i in range(max(len(a), len(b))):
        x = a[-1 - i] if i < len(a) else 1
        y = b[-1 - i] if i < len(b) else 1
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise ShapeError(f"shapes {tuple(a)} and {tuple(b)} do not broadcast "
                             f"(dim {-1 - i}: {x} vs {y})")
    return tuple(reversed(out))


def normalize_axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < rank:
        raise ShapeError(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank
