"""What the real-model tests share: a seeded torch network with non-trivial BatchNorm
statistics exported by ``torch.onnx.export`` (no dynamic axes, so the batch is fixed), and
the error measure they use against ONNX Runtime."""

from __future__ import annotations

import io

import numpy as np


def onnx_bytes(build, batch: int, size: int) -> bytes:
    """``build()`` (called after seeding torch) exported for a (batch, 3, size, size) input."""
    import torch
    torch.manual_seed(0)
    net = build().eval()
    with torch.no_grad():   # non-trivial BatchNorm statistics
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    buf = io.BytesIO()
    torch.onnx.export(net, torch.zeros(batch, 3, size, size), buf, dynamo=False,
                      opset_version=17, input_names=["x"], output_names=["y"])
    return buf.getvalue()


def rel(y, want) -> float:
    """max |y - want| / max |want|."""
    return float(np.abs(np.asarray(y, np.float64) - want).max() / np.abs(want).max())
