"""Shared argument checks and the per-layer seed stream of the zoo builders."""

from __future__ import annotations

import itertools

from cnnc.errors import ConfigError
from cnnc.frontends.keras import args as A


def check(name: str, input_shape, num_classes, seed) -> tuple:
    where = f"cnnc.models.{name}"
    shape = A.shape_tuple(input_shape, "input_shape", where)
    if len(shape) != 3:
        raise ConfigError(f"{where}: input_shape must be (H, W, C), got {input_shape!r}")
    classes = A.positive_int(num_classes, "num_classes", where)
    if not A.is_int(seed) or seed < 0:
        raise ConfigError(f"{where}: seed must be a non-negative integer, got {seed!r}")
    return shape, classes


def seeds(seed: int):
    """Distinct, reproducible seeds for the successive weighted layers of one model."""
    return itertools.count(int(seed) * 1_000_003)
