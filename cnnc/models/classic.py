"""Plain stacks: LeNet-5, AlexNet, VGG-11/16 (Sequential models, logits out).

Layouts follow torchvision (AlexNet: 64-192-384-256-256 with the stem padded by 2, no local
response norm; VGG: 3x3 same convs + ReLU, 2x2 max pools, 4096-4096 classifier with dropout),
so the parameter counts at 224x224x3 are torchvision's: AlexNet 61,100,840, VGG-11
132,863,336, VGG-16 138,357,544. There is no adaptive pooling: the classifier's input size
follows the input shape.
"""

from __future__ import annotations

from cnnc.frontends.keras import Input, Sequential
from cnnc.frontends.keras import layers as L
from cnnc.models._util import check, seeds


def lenet5(input_shape=(32, 32, 1), num_classes=10, seed=0) -> Sequential:
    """LeCun et al. 1998: conv5(6)-avgpool-conv5(16)-avgpool-120-84-classes, tanh
    (61,706 parameters for 32x32x1 and 10 classes)."""
    shape, classes = check("lenet5", input_shape, num_classes, seed)
    s = seeds(seed)
    return Sequential([
        Input(shape),
        L.Conv2D(6, 5, activation="tanh", seed=next(s)), L.AveragePooling2D(2),
        L.Conv2D(16, 5, activation="tanh", seed=next(s)), L.AveragePooling2D(2),
        L.Flatten(),
        L.Dense(120, activation="tanh", seed=next(s)),
        L.Dense(84, activation="tanh", seed=next(s)),
        L.Dense(classes, seed=next(s)),
    ], name="lenet5")


def alexnet(input_shape=(224, 224, 3), num_classes=1000, seed=0) -> Sequential:
    """AlexNet in torchvision's single-tower layout (input at least 63x63)."""
    shape, classes = check("alexnet", input_shape, num_classes, seed)
    s = seeds(seed)
    return Sequential([
        Input(shape),
        L.ZeroPadding2D(2), L.Conv2D(64, 11, strides=4, activation="relu", seed=next(s)),
        L.MaxPooling2D(3, 2),
        L.Conv2D(192, 5, padding="same", activation="relu", seed=next(s)),
        L.MaxPooling2D(3, 2),
        L.Conv2D(384, 3, padding="same", activation="relu", seed=next(s)),
        L.Conv2D(256, 3, padding="same", activation="relu", seed=next(s)),
        L.Conv2D(256, 3, padding="same", activation="relu", seed=next(s)),
        L.MaxPooling2D(3, 2),
        L.Flatten(),
        L.Dropout(0.5), L.Dense(4096, activation="relu", seed=next(s)),
        L.Dropout(0.5), L.Dense(4096, activation="relu", seed=next(s)),
        L.Dense(classes, seed=next(s)),
    ], name="alexnet")


VGG_CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
}


def _vgg(name, input_shape, num_classes, seed) -> Sequential:
    shape, classes = check(name, input_shape, num_classes, seed)
    s = seeds(seed)
    model = Sequential([Input(shape)], name=name)
    for v in VGG_CONFIGS[name]:
        model.add(L.MaxPooling2D(2) if v == "M" else
                  L.Conv2D(v, 3, padding="same", activation="relu", seed=next(s)))
    for layer in (L.Flatten(), L.Dense(4096, activation="relu", seed=next(s)), L.Dropout(0.5),
                  L.Dense(4096, activation="relu", seed=next(s)), L.Dropout(0.5),
                  L.Dense(classes, seed=next(s))):
        model.add(layer)
    return model


def vgg11(input_shape=(224, 224, 3), num_classes=1000, seed=0) -> Sequential:
    """VGG-11 (configuration A), input at least 32x32."""
    return _vgg("vgg11", input_shape, num_classes, seed)


def vgg16(input_shape=(224, 224, 3), num_classes=1000, seed=0) -> Sequential:
    """VGG-16 (configuration D), input at least 32x32."""
    return _vgg("vgg16", input_shape, num_classes, seed)
