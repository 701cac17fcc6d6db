"""Every layer class (``cnnc.layers``), with Keras's names, arguments and defaults."""

from cnnc.frontends.keras.basic import (Activation, Add, BatchNormalization, Concatenate, Dense,
                                        Dropout, Flatten, LeakyReLU, Multiply, ReLU, Reshape,
                                        Softmax)
from cnnc.frontends.keras.conv import (AveragePooling2D, AvgPool2D, Conv2D, DepthwiseConv2D,
                                       GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPool2D,
                                       MaxPooling2D, ZeroPadding2D)
from cnnc.frontends.keras.core import Input, InputLayer, KerasTensor, Layer
from cnnc.frontends.keras.resample import Cropping2D, UpSampling2D

__all__ = ["Layer", "Input", "InputLayer", "KerasTensor", "Conv2D", "DepthwiseConv2D",
           "MaxPooling2D", "MaxPool2D", "AveragePooling2D", "AvgPool2D",
           "GlobalAveragePooling2D", "GlobalMaxPooling2D", "ZeroPadding2D", "BatchNormalization",
           "Dense", "Flatten", "Reshape", "Add", "Multiply", "Concatenate", "ReLU", "LeakyReLU",
           "Activation", "Softmax", "Dropout", "UpSampling2D", "Cropping2D"]

from cnnc.frontends.keras.extended import (ELU, Average, Conv2DTranspose,  # noqa: E402
                                           GroupNormalization, LayerNormalization, Maximum,
                                           Minimum, PReLU, Rescaling, SeparableConv2D, Subtract)

__all__ += ["Conv2DTranspose", "SeparableConv2D", "LayerNormalization", "GroupNormalization",
            "PReLU", "ELU", "Subtract", "Maximum", "Minimum", "Average", "Rescaling",
            "Convolution2DTranspose", "SeparableConvolution2D"]
Convolution2DTranspose = Conv2DTranspose
SeparableConvolution2D = SeparableConv2D
