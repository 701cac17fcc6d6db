"""Real models with data movement: ShuffleNetV2 (channel split and shuffle),
FCN-ResNet50 and DeepLabV3-MobileNetV3 (bilinear upsampling to the input size, hardswish,
hardsigmoid) and a small YOLO-style detector written here in plain torch (conv-bn-silu, a
C2f-like block with ``torch.split``/``chunk`` + concat, nearest ``Upsample`` x2 in an FPN, a
head with sigmoid and a slice). Random weights, exported by ``torch.onnx.export`` at batch 1
and a fixed batch of 2, run on the numpy and cpu targets against ONNX Runtime (rel err <= 1e-4).

Each is checked on both targets at both batches (cold cpu compile and run at batch 2 on 2
shared cores: tiny YOLO 14 s, ShuffleNetV2 20 s, DeepLabV3-MobileNetV3 41 s, FCN-ResNet50 16 s).
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
seg = pytest.importorskip("torchvision.models.segmentation")

pytestmark = [pytest.mark.slow, pytest.mark.numba]
TOL = 1e-4
nn = torch.nn


class ConvBnSiLU(nn.Sequential):
    def __init__(self, cin, cout, k=3, s=1):
        super().__init__(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.SiLU())


class C2f(nn.Module):
    """YOLOv8's C2f: a 1x1 conv, split in two, bottlenecks on the second half, concat."""

    def __init__(self, cin, cout, n=1):
        super().__init__()
        self.c = cout // 2
        self.cv1 = ConvBnSiLU(cin, 2 * self.c, 1)
        self.m = nn.ModuleList(nn.Sequential(ConvBnSiLU(self.c, self.c), ConvBnSiLU(self.c, self.c))
                               for _ in range(n))
        self.cv2 = ConvBnSiLU((2 + n) * self.c, cout, 1)

    def forward(self, x):
        ys = list(self.cv1(x).split((self.c, self.c), 1))
        for m in self.m:
            ys.append(ys[-1] + m(ys[-1]))
        return self.cv2(torch.cat(ys, 1))


class TinyYolo(nn.Module):
    """Backbone (strides 2..8), an FPN top-down path with nearest x2 upsampling, a head per
    level: box (4) and class scores (sigmoid), flattened and concatenated over the levels."""

    def __init__(self, nc=3):
        super().__init__()
        self.stem = ConvBnSiLU(3, 8, 3, 2)
        self.b1 = nn.Sequential(ConvBnSiLU(8, 16, 3, 2), C2f(16, 16))
        self.b2 = nn.Sequential(ConvBnSiLU(16, 24, 3, 2), C2f(24, 24))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.f1 = C2f(24 + 16, 16)
        self.heads = nn.ModuleList(nn.Conv2d(c, 4 + nc, 1) for c in (16, 24))

    def forward(self, x):
        p3 = self.b1(self.stem(x))
        p4 = self.b2(p3)
        f3 = self.f1(torch.cat([self.up(p4), p3], 1))
        outs = []
        for h, f in zip(self.heads, (f3, p4)):
            y = h(f).flatten(2)                       # (N, 4 + nc, HW)
            box, cls = y[:, :4], y[:, 4:]
            a, b = box.chunk(2, 1)
            outs.append(torch.cat([a, b * 2, cls.sigmoid()], 1))
        return torch.cat(outs, 2)


MODELS = {  # name: (builder, input size)
    "shufflenet_v2_x0_5": (lambda: tvm.shufflenet_v2_x0_5(num_classes=10), 64),
    "fcn_resnet50": (lambda: seg.fcn_resnet50(weights=None, weights_backbone=None,
                                              num_classes=5, aux_loss=False), 64),
    "deeplabv3_mobilenet_v3_large": (lambda: seg.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=5, aux_loss=False), 64),
    "tiny_yolo": (TinyYolo, 64),
}


class _Out(nn.Module):
    """Segmentation models return {"out": ...}: export the tensor."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        y = self.net(x)
        return y["out"] if isinstance(y, dict) else y


def export(name: str, batch: int) -> bytes:
    return onnx_bytes(lambda: _Out(MODELS[name][0]()), batch, MODELS[name][1])


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name", list(MODELS))
def test_model_matches_onnxruntime(name, batch):
    onnx = pytest.importorskip("onnx")
    data = export(name, batch)
    size = MODELS[name][1]
    x = np.random.default_rng(batch).standard_normal((batch, 3, size, size)).astype(np.float32)
    want = run_ort(onnx.load_from_string(data), x)[0].astype(np.float64)
    model = cnnc.load_onnx(data)
    for target in ("numpy", "cpu"):
        y = cnnc.compile(model, target=target)(x)
        assert y.shape == want.shape, target
        assert rel(y, want) < TOL, f"{name} batch {batch} on {target}: {rel(y, want):.2e}"
