"""The model zoo, built with the Keras-like front end.

    model = cnnc.models.resnet20()                 # or cnnc.models.get("resnet20", seed=1)
    cnnc.models.names()  # ['alexnet', 'lenet5', 'resnet18', ...]

Every builder is ``fn(input_shape=..., num_classes=..., seed=0)`` and returns a model whose
weights are Glorot-uniform kernels from ``seed``, zero biases and identity BatchNorms.
"""

from __future__ import annotations

from cnnc.errors import ConfigError
from cnnc.models.classic import alexnet, lenet5, vgg11, vgg16
from cnnc.models.modern import mobilenet_v2, unet
from cnnc.models.resnet import resnet18, resnet20, resnet34, resnet50

_BUILDERS = {f.__name__: f for f in (lenet5, alexnet, vgg11, vgg16, resnet18, resnet34,
                                     resnet50, resnet20, mobilenet_v2, unet)}

__all__ = ["get", "names", *_BUILDERS]


def names() -> list[str]:
    """The names :func:`get` accepts, sorted."""
    return sorted(_BUILDERS)


def get(name: str, **kwargs):
    """Build zoo model ``name`` with the builder's keyword arguments."""
    if name not in _BUILDERS:
        raise ConfigError(f"unknown model {name!r}; expected one of {names()}")
    import inspect
    known = list(inspect.signature(_BUILDERS[name]).parameters)
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise ConfigError(f"model {name!r}: unknown argument(s) {unknown}; expected some of "
                          f"{known}")
    return _BUILDERS[name](**kwargs)
