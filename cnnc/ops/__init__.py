"""The op registry and every op family (importing this package registers them all)."""

from cnnc.ops import conv, dense, elementwise, fused, norm, pool, reduce, shape  # noqa: F401
from cnnc.ops import resample  # noqa: F401  (resize)
from cnnc.ops import conv_transpose  # noqa: F401  (after fused: it reuses the epilogue)
from cnnc.ops.registry import REGISTRY, Attr, OpDef, get_op

__all__ = ["REGISTRY", "OpDef", "Attr", "get_op"]
