"""cnnc as an ``onnx.backend`` backend: ``prepare`` imports and compiles a model, the returned
representation's ``run`` executes it.

    from cnnc.frontends.onnx.backend import CnncBackend, bind_inputs
    rep = CnncBackend.prepare(model, target="cpu")      # target: "numpy" | "cpu" | "cuda"
    (y,) = rep.run([x])

A compiler specialises weights and shape arguments ahead of time, so graph inputs that a test
feeds at run time (weights, ``axes``, ``shape``, ``pads``, ...) can be bound first:
``bind_inputs(model, {name: array})`` returns a copy of ``model`` in which those inputs are
initializers. Errors are cnnc's own: :class:`~cnnc.errors.UnsupportedError` for an op, opset or
attribute cnnc cannot import or compile.
"""

from __future__ import annotations

import numpy as np

from cnnc.errors import ConfigError, ShapeError
from cnnc.frontends.onnx import require_onnx

DEVICES = {"CPU": ("numpy", "cpu"), "CUDA": ("cuda",)}


def bind_inputs(model, arrays: dict):
    """A copy of ``model`` in which each graph input named in ``arrays`` is an initializer
    holding that array (and no longer a graph input, from IR version 4 on: before it, every
    initializer must also be listed as an input)."""
    onnx = require_onnx("the ONNX backend")
    names = [vi.name for vi in model.graph.input]
    unknown = sorted(set(arrays) - set(names))
    if unknown:
        raise ConfigError(f"bind_inputs: {unknown} are not graph inputs (inputs: {names})")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if out.ir_version >= 4:
        keep = [vi for vi in out.graph.input if vi.name not in arrays]
        del out.graph.input[:]
        out.graph.input.extend(keep)
    for name, arr in arrays.items():
        out.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(arr), name))
    return out


class CnncRep:
    """A prepared model: ``run(inputs)`` returns the graph's outputs as a tuple of arrays."""

    def __init__(self, imported, compiled):
        self.imported = imported
        self.compiled = compiled

    @property
    def input_names(self) -> list[str]:
        return self.imported.input_names

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            missing = [n for n in self.input_names if n not in inputs]
            if missing:
                raise ShapeError(f"run: inputs {missing} were not given (the model takes "
                                 f"{self.input_names})")
            inputs = [inputs[n] for n in self.input_names]
        elif isinstance(inputs, np.ndarray):
            inputs = [inputs]
        outs = self.compiled(*inputs)
        return tuple(outs) if isinstance(outs, tuple) else (outs,)


def _backend_base():
    require_onnx("the ONNX backend")
    from onnx.backend.base import Backend
    return Backend


class CnncBackend(_backend_base()):
    """``onnx.backend.base.Backend`` for cnnc; ``target`` picks the cnnc target ("numpy" by
    default on ``device="CPU"``, "cuda" on ``device="CUDA"``)."""

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return str(device).upper().split(":")[0] in DEVICES

    @classmethod
    def prepare(cls, model, device: str = "CPU", target: str | None = None,
                opt_level: int = 2, **kwargs) -> CnncRep:
        import cnnc
        from cnnc.frontends.onnx.importer import load_onnx
        dev = str(device).upper().split(":")[0]
        if dev not in DEVICES:
            raise ConfigError(f"device {device!r} is not one of {sorted(DEVICES)}")
        target = target or DEVICES[dev][0]
        if target not in DEVICES[dev]:
            raise ConfigError(f"target {target!r} does not run on device {device!r} "
                              f"(expected one of {DEVICES[dev]})")
        if kwargs:
            raise ConfigError(f"prepare: unknown option(s) {sorted(kwargs)}")
        imported = load_onnx(model)
        return CnncRep(imported, cnnc.compile(imported, target=target, opt_level=opt_level))

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)


prepare = CnncBackend.prepare
run_model = CnncBackend.run_model
supports_device = CnncBackend.supports_device
