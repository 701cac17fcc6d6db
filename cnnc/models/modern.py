"""MobileNetV2 and a small U-Net (functional models).

``mobilenet_v2`` follows Keras Applications' MobileNetV2 (width 1.0): a stride-2 3x3 stem of
32 channels, 17 inverted-residual blocks (1x1 expansion by 6 except in the first block, 3x3
depthwise, linear 1x1 projection; an identity shortcut where stride 1 keeps the channels),
a 1x1 conv to 1280, global average pooling and the classifier. Every conv is bias-free and
followed by BatchNormalization (epsilon 1e-3) and ReLU6 except the projections. At
224x224x3 and 1000 classes it has Keras's 3,504,872 trainable parameters (3,538,984 with
the BN moving statistics).

``unet`` is a small U-Net for dense prediction: ``depth`` encoder levels of two 3x3
conv-BN-ReLU and a 2x2 max pool (``base_filters`` doubling per level), a bottleneck, then per
level a stride-2 Conv2DTranspose upsampling, a Concatenate with the encoder's skip and two
conv-BN-ReLU; a 1x1 conv gives ``num_classes`` logits per pixel, ``(N, H, W, classes)``.
H and W must be divisible by ``2 ** depth``.
"""

from __future__ import annotations

from cnnc.errors import ConfigError
from cnnc.frontends.keras import Input, Model
from cnnc.frontends.keras import args as A
from cnnc.frontends.keras import layers as L
from cnnc.models._util import check, seeds

#: (expansion t, output channels c, repeats n, first stride s) of MobileNetV2's blocks
MOBILENET_V2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _conv_bn(x, filters, kernel, stride, s, act=True):
    x = L.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                 seed=next(s))(x)
    x = L.BatchNormalization(epsilon=1e-3, momentum=0.999)(x)
    return L.ReLU(6.0)(x) if act else x


def inverted_residual(x, expansion, filters, stride, s):
    cin = x.shape[-1]
    y = _conv_bn(x, cin * expansion, 1, 1, s) if expansion != 1 else x
    y = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, seed=next(s))(y)
    y = L.ReLU(6.0)(L.BatchNormalization(epsilon=1e-3, momentum=0.999)(y))
    y = _conv_bn(y, filters, 1, 1, s, act=False)
    return L.Add()([x, y]) if stride == 1 and cin == filters else y


def mobilenet_v2(input_shape=(224, 224, 3), num_classes=1000, seed=0) -> Model:
    shape, classes = check("mobilenet_v2", input_shape, num_classes, seed)
    s = seeds(seed)
    inp = Input(shape)
    x = _conv_bn(inp, 32, 3, 2, s)
    for t, c, n, stride in MOBILENET_V2_BLOCKS:
        for i in range(n):
            x = inverted_residual(x, t, c, stride if i == 0 else 1, s)
    x = _conv_bn(x, 1280, 1, 1, s)
    x = L.GlobalAveragePooling2D()(x)
    return Model(inp, L.Dense(classes, seed=next(s))(x), name="mobilenet_v2")


def _double_conv(x, filters, s):
    for _ in range(2):
        x = L.Conv2D(filters, 3, padding="same", use_bias=False, seed=next(s))(x)
        x = L.ReLU()(L.BatchNormalization(epsilon=1e-5)(x))
    return x


def unet(input_shape=(64, 64, 3), num_classes=2, seed=0, base_filters=16, depth=3) -> Model:
    shape, classes = check("unet", input_shape, num_classes, seed)
    where = "cnnc.models.unet"
    base = A.positive_int(base_filters, "base_filters", where)
    depth = A.positive_int(depth, "depth", where)
    if shape[0] % 2 ** depth or shape[1] % 2 ** depth:
        raise ConfigError(f"{where}: input height and width must be divisible by 2**depth = "
                          f"{2 ** depth}, got input_shape {input_shape!r}")
    s = seeds(seed)
    inp = Input(shape)
    x, skips = inp, []
    for level in range(depth):
        x = _double_conv(x, base * 2 ** level, s)
        skips.append(x)
        x = L.MaxPooling2D(2)(x)
    x = _double_conv(x, base * 2 ** depth, s)
    for level in reversed(range(depth)):
        f = base * 2 ** level
        x = L.Conv2DTranspose(f, 2, strides=2, seed=next(s))(x)
        x = L.Concatenate()([x, skips[level]])
        x = _double_conv(x, f, s)
    out = L.Conv2D(classes, 1, seed=next(s))(x)
    return Model(inp, out, name="unet")
