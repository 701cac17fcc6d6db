"""Real models written by others: torchvision classification networks (random weights),
exported by ``torch.onnx.export`` at batch 1 and at a fixed batch of 2 (no dynamic axes),
imported and run on the numpy and cpu targets, against ONNX Runtime.

torch, torchvision and onnxruntime are optional peers (``.ci/run`` installs them); each test
is skipped with the reason when one is missing. torchvision's compiled operators do not load
against the CPU torch wheel, but its model definitions are plain Python: a stand-in for
``torchvision._meta_registrations`` lets them import.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from onnx_build import run_ort
from torch_export import onnx_bytes, rel

import cnnc

torch = pytest.importorskip("torch")
sys.modules.setdefault("torchvision._meta_registrations",
                       types.ModuleType("torchvision._meta_registrations"))
tvm = pytest.importorskip("torchvision.models")

pytestmark = [pytest.mark.slow, pytest.mark.numba]
TOL = 1e-4   # max |y - ort| / max |ort|: float32 kernels vs ONNX Runtime's float32
SIZE = 64    # input height and width: small, so that the cpu compile stays short

MODELS = {
    "resnet18": lambda: tvm.resnet18(num_classes=10),
    "mobilenet_v2": lambda: tvm.mobilenet_v2(num_classes=10),
    "squeezenet1_1": lambda: tvm.squeezenet1_1(num_classes=10),
    "mnasnet0_5": lambda: tvm.mnasnet0_5(num_classes=10),
}


#: (model, batch) also checked on cpu (cold compile and run at batch 2 on 2 shared cores:
#: SqueezeNet 12 s, MobileNet-v2 26 s, MnasNet 34 s): the depthwise families (MobileNet-v2,
#: MnasNet) run on numpy only, to keep the suite's time; their kinds of layer are on cpu in
#: tests/models/test_modern.py and the DeepLabV3-MobileNetV3 test
CPU_CASES = {("resnet18", 1), ("resnet18", 2), ("squeezenet1_1", 1), ("squeezenet1_1", 2)}


def export(name: str, batch: int) -> bytes:
    return onnx_bytes(MODELS[name], batch, SIZE)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name", list(MODELS))
def test_torchvision_model_matches_onnxruntime(name, batch):
    onnx = pytest.importorskip("onnx")
    data = export(name, batch)
    x = np.random.default_rng(batch).standard_normal((batch, 3, SIZE, SIZE)).astype(np.float32)
    want = run_ort(onnx.load_from_string(data), x)[0].astype(np.float64)
    model = cnnc.load_onnx(data)
    for target in ("numpy", "cpu") if (name, batch) in CPU_CASES else ("numpy",):
        y = cnnc.compile(model, target=target)(x)
        assert y.shape == want.shape, target
        assert rel(y, want) < TOL, f"{name} batch {batch} on {target}: {rel(y, want):.2e}"
