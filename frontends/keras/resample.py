"""Keras's UpSampling2D and Cropping2D, channels-last like every cnnc layer."""

from __future__ import annotations

from cnnc.errors import ConfigError, ShapeError
from cnnc.frontends.keras import args as A
from cnnc.frontends.keras.core import Layer


class UpSampling2D(Layer):
    """Repeat rows and columns ``size`` = s | (sh, sw) times: ``interpolation="nearest"``
    (Keras's default: each pixel repeated) or ``"bilinear"`` (tf.image.resize: half-pixel
    centres, no antialiasing when upsampling)."""

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.size = A.int_pair(size, "size", self.where)
        if data_format not in (None, "channels_last"):
            raise ConfigError(f"{self.where}: data_format must be 'channels_last' (cnnc is "
                              f"NHWC), got {data_format!r}")
        if interpolation not in ("nearest", "bilinear"):
            raise ConfigError(f"{self.where}: interpolation must be 'nearest' or 'bilinear', "
                              f"got {interpolation!r}")
        self.interpolation = interpolation

    def build(self, input_shape):
        self.expect_rank(input_shape, 4)

    def emit(self, em, inputs):
        _, h, w, _ = inputs[0].shape
        sh, sw = self.size
        nearest = self.interpolation == "nearest"
        return em.op(self, "resize", inputs, {
            "size": (h * sh, w * sw), "scales": (float(sh), float(sw)),
            "mode": "nearest" if nearest else "linear",
            "coordinate_mode": "asymmetric" if nearest else "half_pixel",
            "nearest_mode": "floor"})


class Cropping2D(Layer):
    """Drop rows/columns at the edges of H and W: ``cropping`` = c | (ch, cw) |
    ((top, bottom), (left, right))."""

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.cropping = A.zero_padding(cropping, self.where)
        if data_format not in (None, "channels_last"):
            raise ConfigError(f"{self.where}: data_format must be 'channels_last' (cnnc is "
                              f"NHWC), got {data_format!r}")

    def build(self, input_shape):
        self.expect_rank(input_shape, 4)
        (t, b), (l, r) = self.cropping
        h, w = input_shape[1:3]
        if t + b >= h or l + r >= w:
            raise ShapeError(f"{self.where}: cropping {self.cropping} leaves nothing of the "
                             f"{h}x{w} input (expected top+bottom < {h} and left+right < {w})")

    def emit(self, em, inputs):
        _, h, w, _ = inputs[0].shape
        (t, b), (l, r) = self.cropping
        return em.op(self, "slice", inputs, {"starts": (t, l), "ends": (h - b, w - r),
                                             "axes": (1, 2), "steps": (1, 1)})
