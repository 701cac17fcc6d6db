"""cnnc: a compiler for convolutional neural networks.

    import cnnc
    model = cnnc.models.resnet20()
    compiled = cnnc.compile(model, target="cpu")
    y = compiled(x)            # x: NHWC float array, any batch size
"""

from cnnc.errors import (CnncError, ConfigError, DTypeError, KernelError, ResourceError,
                         ShapeError, UnsupportedError, VerificationError)
from cnnc.ir import Graph, TensorType, verify
from cnnc.compile import compile

__version__ = "0.1.0"

__all__ = ["compile", "CnncError", "ConfigError", "ShapeError", "DTypeError",
           "UnsupportedError", "VerificationError", "ResourceError", "KernelError", "Graph",
           "TensorType", "verify", "layers", "Sequential", "Model", "Input", "models", "nn", "load_onnx",
           "export_onnx", "load"]


def __getattr__(name):
    # the front end, zoo and eager ops load on first use (keeps `import cnnc` light)
    import importlib
    if name == "layers":
        return importlib.import_module("cnnc.frontends.keras.layers")
    if name in ("Sequential", "Model", "Input"):
        return getattr(importlib.import_module("cnnc.frontends.keras"), name)
    if name == "models":
        return importlib.import_module("cnnc.models")
    if name == "nn":
        return importlib.import_module("cnnc.frontends.nn")
    if name == "backends":
        return importlib.import_module("cnnc.backends")
    if name == "load_onnx":
        return importlib.import_module("cnnc.frontends.onnx.importer").load_onnx
    if name == "export_onnx":
        return importlib.import_module("cnnc.frontends.onnx.export").export_onnx
    if name == "load":
        return importlib.import_module("cnnc.artifacts").load
    if name == "explain":  # a callable module: cnnc.explain(model)
        return importlib.import_module("cnnc.explain")
    if name == "frontends":
        return importlib.import_module("cnnc.frontends")
    raise AttributeError(f"module 'cnnc' has no attribute {name!r}")
