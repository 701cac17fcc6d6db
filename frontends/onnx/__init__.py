"""ONNX interchange (``onnx`` is an optional dependency, imported on first use):
:func:`load_onnx` imports an NCHW ONNX model into the NHWC IR; :func:`export_onnx` writes a
cnnc graph as an ONNX model (NCHW inside, NHWC at the boundary)."""


def require_onnx(purpose: str):
    """The ``onnx`` module, or an UnsupportedError saying ``purpose`` (e.g. "ONNX import")
    needs it."""
    try:
        import onnx
    except ImportError as e:
        from cnnc.errors import UnsupportedError
        raise UnsupportedError(f"{purpose} needs the 'onnx' package (pip install onnx): "
                               f"{e}") from None
    return onnx


def load_onnx(source):
    from cnnc.frontends.onnx.importer import load_onnx as _load
    return _load(source)


def export_onnx(model, path=None):
    from cnnc.frontends.onnx.export import export_onnx as _export
    return _export(model, path)


__all__ = ["load_onnx", "export_onnx"]
