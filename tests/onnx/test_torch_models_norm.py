"""Real models with normalisation layers and transposed convs, in the style of test_torchvision_models.py: torchvision's
ConvNeXt-T (LayerNorm over channels, GELU, permutes), a U-Net written here in torch
(ConvTranspose2d x2 upsampling, cat skips) and timm's GhostNet (ghost modules: primary conv,
cheap depthwise conv, concat, channel slice) and CSPDarknet (CS3Darknet-S: cross-stage
split/concat), random weights, exported by ``torch.onnx.export`` at batch 1 and at a fixed
batch of 2, run on the numpy and cpu targets against ONNX Runtime; and, at batch 1, timm's
EdgeNeXt-XS (a positional encoding computed at import) and ECA-ResNet-26t (1-D convs).

Every model but ECA-ResNet-26t (numpy only, see CONSTANT_AND_1D) is checked on cpu at both
batches (cold compiles on 2 cores: GhostNet ~50 s, the U-Net 7 s, CSPDarknet 14 s, ConvNeXt-T
~20 s since its GELUs, layer scales and Linear layers fuse into 1x1 convs; at batch 2 most
kernels are batch 1's, from the disk cache: GhostNet ~10 s; EdgeNeXt-XS at 64x64 ~45 s).
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
nn = torch.nn
sys.modules.setdefault("torchvision._meta_registrations",
                       types.ModuleType("torchvision._meta_registrations"))

pytestmark = [pytest.mark.slow, pytest.mark.numba]
TOL = 1e-4
SIZE = 32


class TorchUNet(nn.Module):
    """Two levels: conv-BN-ReLU pairs, max pools, ConvTranspose2d(k=2, s=2) upsampling and
    channel concatenation with the skips."""

    def __init__(self, cin=3, classes=2, f=8):
        super().__init__()

        def block(a, b):
            return nn.Sequential(nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b),
                                 nn.ReLU(), nn.Conv2d(b, b, 3, padding=1), nn.ReLU())
        self.e1, self.e2, self.mid = block(cin, f), block(f, 2 * f), block(2 * f, 4 * f)
        self.pool = nn.MaxPool2d(2)
        self.u2 = nn.ConvTranspose2d(4 * f, 2 * f, 2, stride=2)
        self.d2 = block(4 * f, 2 * f)
        self.u1 = nn.ConvTranspose2d(2 * f, f, 2, stride=2)
        self.d1 = block(2 * f, f)
        self.head = nn.Conv2d(f, classes, 1)

    def forward(self, x):
        s1 = self.e1(x)
        s2 = self.e2(self.pool(s1))
        m = self.mid(self.pool(s2))
        y = self.d2(torch.cat([self.u2(m), s2], 1))
        y = self.d1(torch.cat([self.u1(y), s1], 1))
        return self.head(y)


def _tv(name):
    import torchvision.models as tvm
    return getattr(tvm, name)(num_classes=10)


def _timm(name):
    timm = pytest.importorskip("timm")
    return timm.create_model(name, pretrained=False, num_classes=10)


MODELS = {
    "convnext_tiny": lambda: _tv("convnext_tiny"),
    "torch_unet": TorchUNet,
    "ghostnet_100": lambda: _timm("ghostnet_100"),
    "cs3darknet_s": lambda: _timm("cs3darknet_s"),
}


def export(name: str, batch: int) -> bytes:
    return onnx_bytes(MODELS[name], batch, SIZE)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name", list(MODELS))
def test_model_matches_onnxruntime(name, batch):
    onnx = pytest.importorskip("onnx")
    data = export(name, batch)
    x = np.random.default_rng(batch).standard_normal((batch, 3, SIZE, SIZE)).astype(np.float32)
    want = run_ort(onnx.load_from_string(data), x)[0].astype(np.float64)
    model = cnnc.load_onnx(data)
    for target in ("numpy", "cpu"):
        y = cnnc.compile(model, target=target)(x)
        assert y.shape == want.shape, target
        assert rel(y, want) < TOL, f"{name} batch {batch} on {target}: {rel(y, want):.2e}"


#: timm models that need ONNX nodes with no converter computed at import (EdgeNeXt's
#: positional encoding: CumSum, Sin and Cos of a constant mask) or a 1-D Conv (ECA attention:
#: a 5-tap conv along the pooled channels), with their input sizes and targets.  ECA-ResNet-26t
#: runs on numpy only: its cpu compile (55-60 s of the suite's time) adds plain ResNet convs,
#: and its ECA block runs on cpu in test_import_ops.py
#: (``test_efficient_channel_attention_on_cpu``)
CONSTANT_AND_1D = {"edgenext_x_small": (64, ("numpy", "cpu")), "ecaresnet26t": (32, ("numpy",))}


@pytest.mark.parametrize("name", list(CONSTANT_AND_1D))
def test_constant_subgraphs_and_1d_convs_match_onnxruntime(name):
    onnx = pytest.importorskip("onnx")
    size, targets = CONSTANT_AND_1D[name]
    data = onnx_bytes(lambda: _timm(name), 1, size)
    x = np.random.default_rng(7).standard_normal((1, 3, size, size)).astype(np.float32)
    want = run_ort(onnx.load_from_string(data), x)[0].astype(np.float64)
    model = cnnc.load_onnx(data)
    assert not {"cumsum", "sin", "cos"} & {n.op for n in model.to_graph().nodes}
    for target in targets:
        y = cnnc.compile(model, target=target)(x)
        assert y.shape == want.shape, target
        assert rel(y, want) < TOL, f"{name} on {target}: {rel(y, want):.2e}"
