"""Tensor types: a shape (ints, or a string symbol such as ``"N"`` for the batch) and a dtype."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnc.errors import DTypeError, ShapeError

Dim = int | str

_SHORT = {"float32": "f32", "float64": "f64", "float16": "f16", "int64": "i64", "int32": "i32",
          "bool": "b8"}


@dataclass(frozen=True)
class TensorType:
    """The static type of an SSA value. ``shape`` dims are ints or symbols (``"N"``)."""

    shape: tuple[Dim, ...]
    dtype: str = "float32"

    def __post_init__(self):
        shape = tuple(self.shape)
        for d in shape:
            if isinstance(d, bool) or not isinstance(d, (int, str, np.integer)):
                raise ShapeError(f"dimension must be an int or a symbol, got {d!r} in {shape}")
            if not isinstance(d, str) and d < 0:
                raise ShapeError(f"dimension must be >= 0, got {d} in {shape}")
        object.__setattr__(self, "shape", tuple(d if isinstance(d, str) else int(d) for d in shape))
        if self.dtype not in _SHORT:
            raise DTypeError(f"unsupported dtype {self.dtype!r}; expected one of {sorted(_SHORT)}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def with_shape(self, shape) -> "TensorType":
        return TensorType(tuple(shape), self.dtype)

    def concrete(self, bindings: dict[str, int]) -> tuple[int, ...]:
        """The shape with symbols replaced by their bound sizes."""
        try:
            return tuple(d if isinstance(d, int) else int(bindings[d]) for d in self.shape)
        except KeyError as e:
            raise ShapeError(f"symbol {e.args[0]!r} of shape {self} is unbound") from None

    def nbytes(self, bindings: dict[str, int] | None = None) -> int:
        shape = self.concrete(bindings or {})
        return int(np.prod(shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def __str__(self) -> str:
        return f"{_SHORT[self.dtype]}[{','.join(str(d) for d in self.shape)}]"


def dims_equal(a: Dim, b: Dim) -> bool:
    return a == b


def num_elements(shape) -> int:
    return int(np.prod([d for d in shape], dtype=np.int64))
