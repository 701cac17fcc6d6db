"""explain(): the lecture's numbers for a small model, computed by hand."""

import numpy as np

import cnnc
from cnnc import layers as L


def _small():
    """7x7x2 -> conv 3x3/2 SAME (4 filters) -> BN -> max pool 2x2/2 -> conv 3x3/2 SAME on 2."""
    m = cnnc.Sequential([cnnc.Input(shape=(7, 7, 2)),
                         L.Conv2D(4, 3, strides=2, padding="same", name="c1"),
                         L.BatchNormalization(epsilon=1e-3, name="bn"),
                         L.MaxPooling2D(2, name="pool"),
                         L.Conv2D(3, 3, strides=2, padding="same", use_bias=False, name="c2")],
                        name="small")
    bn = m.get_layer("bn")
    gamma, beta = np.array([2.0, 1.0, 0.5, 4.0]), np.array([0.1, -0.2, 0.0, 1.0])
    mean, var = np.array([0.5, 0.0, -1.0, 2.0]), np.array([3.0, 1.0, 0.25, 15.999])
    bn.set_weights([a.astype(np.float32) for a in (gamma, beta, mean, var)])
    return m


def test_explain_small_model_by_hand():
    text = cnnc.explain(_small(), print_fn=None)
    lines = text.splitlines()
    # conv c1 on 7, k=3, s=2, SAME: total = (ceil(7/2)-1)*2 + 3 - 7 = 2 -> 1/1; (7-3+2)//2+1 = 4
    assert "padding H: SAME: total = max((⌈7/2⌉ − 1)·2 + 3 − 7, 0) = 2 → top 1, bottom 1" in text
    assert "h' = ⌊(h − f + p_top + p_bottom)/s⌋ + 1 = ⌊(7 − 3 + 1 + 1)/2⌋ + 1 = 6/2 + 1 = " \
           "3 + 1 = 4" in text
    # receptive field after c1: 3 (jump 2); after the pool: 3 + (2-1)*2 = 5 (jump 4)
    assert "receptive field 3×3 input pixels (jump 2×2)" in text
    assert "receptive field 5×5 input pixels (jump 4×4)" in text
    # pool 2x2/2 on 4: (4-2)/2+1 = 2
    assert "⌊(4 − 2 + 0 + 0)/2⌋ + 1 = 2/2 + 1 = 1 + 1 = 2" in text
    # c2 on 2, k=3, s=2, SAME: total = (1-1)*2 + 3 - 2 = 1 -> 0 before, 1 after (asymmetric)
    assert "= 1 → left 0, right 1 (odd total: TF puts the extra cell at the right)" in text
    assert "⌊(2 − 3 + 0 + 1)/2⌋ + 1 = 0/2 + 1 = 0 + 1 = 1" in text
    # receptive field after c2: 5 + (3-1)*4 = 13 (jump 8)
    assert "receptive field 13×13 input pixels (jump 8×8)" in text
    # params: c1 3*3*2*4 + 4 = 76, c2 3*3*4*3 = 108, bn 16; FLOPs c1: 2*4*4*4*18 + 64 (bias)
    assert "params 3·3·2·4 + 4 = 76" in text and "params 3·3·4·3 = 108" in text
    assert "FLOPs/sample 2·4·4·4·(3·3·2) + 64 (bias/epilogue) = 2,368" in text
    # total FLOPs: c1 2368 + bn 2·4·4·4 = 128 + pool 2·2·4·4 taps = 64 + c2 2·3·36 = 216
    assert lines[-1] == "total: 200 params, 2,776 FLOPs per sample"
    # folded BN: scale = gamma / sqrt(var + eps), shift = beta - mean * scale
    scale = np.array([2.0, 1.0, 0.5, 4.0]) / np.sqrt(np.array([3.0, 1.0, 0.25, 15.999]) + 1e-3)
    shift = np.array([0.1, -0.2, 0.0, 1.0]) - np.array([0.5, 0.0, -1.0, 2.0]) * scale
    assert f"scale [{', '.join(f'{s:.4g}' for s in scale)}]" in text
    assert f"shift [{', '.join(f'{s:.4g}' for s in shift)}]" in text
    # 2/√3.001, 1/√1.001, 0.5/√0.251, 4/√16 and 0.1 − 0.5·1.1545
    assert "scale [1.155, 0.9995, 0.998, 1], shift [-0.4773, -0.2, 0.998, -1]" in text
    assert "folded into conv2d 'c1'" in text


def test_model_explain_and_callable_module():
    import cnnc.explain as mod  # importing the module must not break cnnc.explain(...)
    m = _small()
    assert cnnc.explain(m, print_fn=None) == m.explain(print_fn=None) == \
        mod.explain(m, print_fn=None)
