"""Residual networks (functional models, logits out).

Every conv is bias-free and "same"-padded (stride 2 pads TF-style, the extra cell at the
bottom/right), followed by BatchNormalization (epsilon 1e-5); a block ends with
``ReLU(Add([bn(conv(...)), shortcut]))`` and the shortcut is a 1x1 conv + BN projection when
the shape changes (option B). ImageNet models use torchvision's v1.5 layout (bottleneck stride
on the 3x3 conv), so their trainable parameter counts are torchvision's (ResNet-18 11,689,512,
ResNet-34 21,797,672, ResNet-50 25,557,032); ``count_params()`` also counts the BN moving
statistics like Keras.
"""

from __future__ import annotations

from cnnc.frontends.keras import Input, Model
from cnnc.frontends.keras import layers as L
from cnnc.models._util import check, seeds


def _conv_bn(x, filters, kernel, stride, s, relu=True):
    x = L.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                 seed=next(s))(x)
    x = L.BatchNormalization(epsilon=1e-5)(x)
    return L.ReLU()(x) if relu else x


def _shortcut(x, filters, stride, s):
    if stride == 1 and x.shape[-1] == filters:
        return x
    return _conv_bn(x, filters, 1, stride, s, relu=False)


def basic_block(x, filters, stride, s):
    """3x3 -> 3x3, plus the shortcut."""
    y = _conv_bn(x, filters, 3, stride, s)
    y = _conv_bn(y, filters, 3, 1, s, relu=False)
    return L.ReLU()(L.Add()([y, _shortcut(x, filters, stride, s)]))


def bottleneck_block(x, filters, stride, s):
    """1x1 -> 3x3 (strided) -> 1x1 (4x wider), plus the shortcut."""
    y = _conv_bn(x, filters, 1, 1, s)
    y = _conv_bn(y, filters, 3, stride, s)
    y = _conv_bn(y, filters * 4, 1, 1, s, relu=False)
    return L.ReLU()(L.Add()([y, _shortcut(x, filters * 4, stride, s)]))


def _imagenet_resnet(name, block, depths, input_shape, num_classes, seed) -> Model:
    shape, classes = check(name, input_shape, num_classes, seed)
    s = seeds(seed)
    inp = Input(shape)
    x = _conv_bn(inp, 64, 7, 2, s)
    x = L.MaxPooling2D(3, 2, padding="same")(x)
    for stage, depth in enumerate(depths):
        for i in range(depth):
            x = block(x, 64 * 2 ** stage, 2 if stage > 0 and i == 0 else 1, s)
    x = L.GlobalAveragePooling2D()(x)
    return Model(inp, L.Dense(classes, seed=next(s))(x), name=name)


def resnet18(input_shape=(224, 224, 3), num_classes=1000, seed=0) -> Model:
    return _imagenet_resnet("resnet18", basic_block, (2, 2, 2, 2), input_shape, num_classes,
                            seed)


def resnet34(input_shape=(224, 224, 3), num_classes=1000, seed=0) -> Model:
    return _imagenet_resnet("resnet34", basic_block, (3, 4, 6, 3), input_shape, num_classes,
                            seed)


def resnet50(input_shape=(224, 224, 3), num_classes=1000, seed=0) -> Model:
    return _imagenet_resnet("resnet50", bottleneck_block, (3, 4, 6, 3), input_shape,
                            num_classes, seed)


def resnet20(input_shape=(32, 32, 3), num_classes=10, seed=0) -> Model:
    """He et al. 2016's CIFAR ResNet-20 (16-32-64 channels, 3 blocks per stage), with 1x1
    projection shortcuts (option B) where the shape changes."""
    shape, classes = check("resnet20", input_shape, num_classes, seed)
    s = seeds(seed)
    inp = Input(shape)
    x = _conv_bn(inp, 16, 3, 1, s)
    for stage, filters in enumerate((16, 32, 64)):
        for i in range(3):
            x = basic_block(x, filters, 2 if stage > 0 and i == 0 else 1, s)
    x = L.GlobalAveragePooling2D()(x)
    return Model(inp, L.Dense(classes, seed=next(s))(x), name="resnet20")
