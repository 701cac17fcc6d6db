"""TF-style eager ops on NumPy arrays (``cnnc.nn``), run by the reference interpreter.

    y = cnnc.nn.conv2d(x, filters, strides=2, padding="SAME")     # x NHWC, filters HWIO
    y = cnnc.nn.max_pool2d(y, ksize=3, strides=2, padding="VALID")

Each call builds a one-node graph and evaluates it with :mod:`cnnc.backends.reference`, in
float64 when the input is float64 (else float32). Arguments follow ``tf.nn``: ``strides``,
``ksize`` and ``dilations`` are an int or a list of 1, 2 or 4 ints (4: ``[1, h, w, 1]``);
``padding`` is "VALID"/"SAME" in any case or, for conv2d and max_pool2d, explicit
``[[0, 0], [top, bottom], [left, right], [0, 0]]``.
"""

from __future__ import annotations

import numbers

import numpy as np

from cnnc.errors import ConfigError, DTypeError, ShapeError, UnsupportedError
from cnnc.ir.graph import Graph

__all__ = ["conv2d", "bias_add", "relu", "max_pool2d", "avg_pool2d"]


def _array(x, what: str, where: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise DTypeError(f"{where}: {what} must be a numeric array, got dtype {a.dtype}")
    return a


def _nhwc(x, where: str) -> np.ndarray:
    a = _array(x, "input", where)
    if a.ndim != 4:
        raise ShapeError(f"{where}: input must be 4-D (N, H, W, C), got shape {a.shape}")
    return a


def _data_format(data_format, where):
    if data_format not in (None, "NHWC"):
        raise UnsupportedError(f"{where}: only data_format='NHWC' is supported, "
                               f"got {data_format!r}")


def _hw(v, what: str, where: str) -> tuple[int, int]:
    """tf.nn's int | [n] | [h, w] | [1, h, w, 1] -> (h, w)."""
    items = list(v) if isinstance(v, (list, tuple, np.ndarray)) else [v]
    ok = all(isinstance(i, numbers.Integral) and not isinstance(i, bool) and i >= 1
             for i in items)
    if ok and len(items) == 1:
        return int(items[0]), int(items[0])
    if ok and len(items) == 2:
        return int(items[0]), int(items[1])
    if ok and len(items) == 4 and items[0] == 1 and items[3] == 1:
        return int(items[1]), int(items[2])
    raise ConfigError(f"{where}: {what} must be a positive int or a list of 1, 2 or 4 of them "
                      f"(4: [1, h, w, 1]), got {v!r}")


def _padding(p, where: str, explicit: bool = True):
    if isinstance(p, str):
        if p.upper() in ("VALID", "SAME"):
            return p.lower()
        raise ConfigError(f"{where}: padding must be 'VALID', 'SAME' or explicit pads, got {p!r}")
    if explicit and isinstance(p, (list, tuple)) and len(p) == 4:
        try:
            pads = [tuple(int(v) for v in pair) for pair in p]
        except (TypeError, ValueError):
            pads = None
        if pads and all(len(q) == 2 and min(q) >= 0 for q in pads) \
                and pads[0] == (0, 0) and pads[3] == (0, 0):
            return (pads[1], pads[2])
    allowed = "'VALID', 'SAME' or [[0, 0], [top, bottom], [left, right], [0, 0]]" if explicit \
        else "'VALID' or 'SAME'"
    raise ConfigError(f"{where}: padding must be {allowed}, got {p!r}")


def _run(op: str, x: np.ndarray, consts, attrs=None) -> np.ndarray:
    """Evaluate ``op(x, *consts) {attrs}`` with the reference interpreter."""
    from cnnc.backends.reference import evaluate
    g = Graph(f"nn.{op}")
    xv = g.add_input(x.shape, name="input")
    cv = [g.constant(c, layer=f"nn.{op}") for c in consts]
    g.set_outputs(g.add(op, [xv, *cv], attrs or {}, layer=f"nn.{op}"))
    dtype = np.float64 if x.dtype == np.float64 else np.float32
    return evaluate(g, [x], dtype)[0]


def conv2d(input, filters, strides, padding, data_format="NHWC", dilations=None, name=None):
    """``tf.nn.conv2d``: NHWC input, HWIO ``filters`` ``(kh, kw, cin // groups, cout)``."""
    where = f"cnnc.nn.conv2d{f' {name!r}' if name else ''}"
    _data_format(data_format, where)
    x = _nhwc(input, where)
    w = _array(filters, "filters", where)
    if w.ndim != 4:
        raise ShapeError(f"{where}: filters must be 4-D (kh, kw, in, out), got shape {w.shape}")
    if w.shape[2] == 0 or x.shape[3] % w.shape[2]:
        raise ShapeError(f"{where}: input has {x.shape[3]} channels, which filters with "
                         f"{w.shape[2]} input channels (shape {w.shape}) do not divide")
    attrs = {"strides": _hw(strides, "strides", where), "padding": _padding(padding, where),
             "dilation": _hw(1 if dilations is None else dilations, "dilations", where),
             "groups": x.shape[3] // w.shape[2]}
    return _run("conv2d", x, [w], attrs)


def bias_add(value, bias, data_format=None, name=None):
    """``value + bias`` over the last (channel) axis."""
    where = f"cnnc.nn.bias_add{f' {name!r}' if name else ''}"
    _data_format(data_format, where)
    x = _array(value, "value", where)
    if x.ndim < 1:
        raise ShapeError(f"{where}: value must have at least one axis, got a scalar")
    return _run("bias_add", x, [_array(bias, "bias", where)])


def relu(features, name=None):
    """``max(features, 0)``."""
    where = f"cnnc.nn.relu{f' {name!r}' if name else ''}"
    return _run("relu", _array(features, "features", where), [])


def _pool(op, input, ksize, strides, padding, data_format, name, explicit):
    where = f"cnnc.nn.{op}{f' {name!r}' if name else ''}"
    _data_format(data_format, where)
    attrs = {"pool_size": _hw(ksize, "ksize", where), "strides": _hw(strides, "strides", where),
             "padding": _padding(padding, where, explicit)}
    return _run(op, _nhwc(input, where), [], attrs)


def max_pool2d(input, ksize, strides, padding, data_format="NHWC", name=None):
    """``tf.nn.max_pool2d``; padded cells never win."""
    return _pool("max_pool2d", input, ksize, strides, padding, data_format, name, True)


def avg_pool2d(input, ksize, strides, padding, data_format="NHWC", name=None):
    """``tf.nn.avg_pool2d``; with SAME a window averages its real (unpadded) cells."""
    return _pool("avg_pool2d", input, ksize, strides, padding, data_format, name, False)
