"""Argument normalisation for layers: every check quotes the layer and the value it received.

``where`` is how a message names the layer, e.g. ``"Conv2D layer 'conv2d_1'"``.
"""

from __future__ import annotations

import numbers

from cnnc.errors import ConfigError

#: Keras activation name -> list of (op, attrs) nodes it emits (empty: identity)
ACTIVATIONS = {
    "linear": [],
    "relu": [("relu", {})],
    "relu6": [("relu6", {})],
    "sigmoid": [("sigmoid", {})],
    "tanh": [("tanh", {})],
    "softmax": [("softmax", {"axis": -1})],
    "leaky_relu": [("leaky_relu", {"alpha": 0.2})],          # Keras 3 default slope
    "hard_sigmoid": [("hard_sigmoid", {"alpha": 1 / 6, "beta": 0.5})],  # relu6(x + 3) / 6
    "hard_swish": [("hard_swish", {})],
}
ACTIVATIONS["hard_silu"] = ACTIVATIONS["hard_swish"]
# every Keras 3 activation that is a chain of existing ops, with Keras's defaults
ACTIVATIONS.update({
    "gelu": [("gelu", {})],                                   # approximate=False
    "silu": [("swish", {"alpha": 1.0})],                      # x * sigmoid(x)
    "elu": [("elu", {"alpha": 1.0})],
    "selu": [("selu", {})],
    "celu": [("celu", {"alpha": 1.0})],
    "softplus": [("softplus", {})],
    "softsign": [("softsign", {})],
    "mish": [("mish", {})],
    "exponential": [("exp", {})],
    "log_softmax": [("log_softmax", {"axis": -1})],
    "hard_tanh": [("clip", {"min": -1.0, "max": 1.0})],
    "soft_shrink": [("shrink", {"bias": 0.5, "lambd": 0.5})],  # threshold 0.5
    "hard_shrink": [("shrink", {"bias": 0.0, "lambd": 0.5})],
    "log_sigmoid": [("neg", {}), ("softplus", {}), ("neg", {})],  # -softplus(-x)
})
ACTIVATIONS["swish"] = ACTIVATIONS["silu"]


def is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def positive_int(v, what: str, where: str) -> int:
    if not is_int(v) or v < 1:
        raise ConfigError(f"{where}: {what} must be a positive integer, got {v!r}")
    return int(v)


def int_pair(v, what: str, where: str, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints (each >= ``minimum``) -> (a, b)."""
    items = tuple(v) if isinstance(v, (list, tuple)) else (v, v)
    if len(items) != 2 or not all(is_int(x) and x >= minimum for x in items):
        kind = "positive integer" if minimum == 1 else f"integer >= {minimum}"
        raise ConfigError(f"{where}: {what} must be a {kind} or a pair of them, got {v!r}")
    return int(items[0]), int(items[1])


def padding_word(v, where: str) -> str:
    if not isinstance(v, str) or v.lower() not in ("valid", "same"):
        raise ConfigError(f"{where}: padding must be 'valid' or 'same', got {v!r}")
    return v.lower()


def activation(v, where: str) -> str:
    """None or a known activation name -> the canonical name ('linear' for None)."""
    if v is None:
        return "linear"
    if not isinstance(v, str) or v.lower() not in ACTIVATIONS:
        raise ConfigError(f"{where}: unknown activation {v!r}; expected one of "
                          f"{sorted(ACTIVATIONS)} or None")
    return v.lower()


def number(v, what: str, where: str, lo=None, hi=None, lo_open=False, hi_open=False) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ConfigError(f"{where}: {what} must be a number, got {v!r}")
    v = float(v)
    bad_lo = lo is not None and (v <= lo if lo_open else v < lo)
    bad_hi = hi is not None and (v >= hi if hi_open else v > hi)
    if bad_lo or bad_hi or v != v:
        rng = f"{'(' if lo_open else '['}{lo if lo is not None else '-inf'}, " \
              f"{hi if hi is not None else 'inf'}{')' if hi_open else ']'}"
        raise ConfigError(f"{where}: {what} must be in {rng}, got {v!r}")
    return v


def flag(v, what: str, where: str) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{where}: {what} must be True or False, got {v!r}")
    return v


def zero_padding(v, where: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """ZeroPadding2D's ``padding``: p | (ph, pw) | ((top, bottom), (left, right))."""
    if is_int(v) and v >= 0:
        return ((int(v), int(v)), (int(v), int(v)))
    if isinstance(v, (list, tuple)) and len(v) == 2:
        if all(is_int(x) and x >= 0 for x in v):
            return ((int(v[0]), int(v[0])), (int(v[1]), int(v[1])))
        if all(isinstance(p, (list, tuple)) and len(p) == 2
               and all(is_int(x) and x >= 0 for x in p) for p in v):
            return tuple((int(a), int(b)) for a, b in v)
    raise ConfigError(f"{where}: padding must be a non-negative int, (ph, pw) or "
                      f"((top, bottom), (left, right)), got {v!r}")


def shape_tuple(v, what: str, where: str, allow_minus_one: bool = False) -> tuple[int, ...]:
    ok = isinstance(v, (list, tuple)) and all(
        is_int(d) and (d >= 1 or (allow_minus_one and d == -1)) for d in v)
    if not ok or (allow_minus_one and sum(1 for d in v if d == -1) > 1):
        raise ConfigError(f"{where}: {what} must be a tuple of positive integers"
                          f"{' (one may be -1)' if allow_minus_one else ''}, got {v!r}")
    return tuple(int(d) for d in v)
