"""A Keras-like front end: layers, ``Input``, ``Sequential`` and the functional ``Model``.

    x = cnnc.Input(shape=(32, 32, 3))
    y = cnnc.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    model = cnnc.Model(inputs=x, outputs=cnnc.layers.GlobalAveragePooling2D()(y))
    graph = model.to_graph()          # a fresh cnnc.ir.Graph each call
"""

from cnnc.frontends.keras import layers
from cnnc.frontends.keras.core import Input, InputLayer, KerasTensor, Layer
from cnnc.frontends.keras.model import Model, Sequential

__all__ = ["layers", "Input", "InputLayer", "KerasTensor", "Layer", "Model", "Sequential"]
