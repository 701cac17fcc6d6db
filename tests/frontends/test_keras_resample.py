"""Keras UpSampling2D (nearest and bilinear, Keras's defaults) and Cropping2D: eager results
against NumPy / PyTorch's bilinear interpolation (half-pixel centres, like tf.image.resize),
a model through the cpu target, and the errors."""

import numpy as np
import pytest

import cnnc
from cnnc import layers as L
from cnnc.errors import ConfigError, ShapeError

rng = np.random.default_rng(14)


def test_upsampling_nearest_repeats_pixels():
    x = rng.normal(size=(2, 3, 4, 5))
    y = L.UpSampling2D((2, 3))(x)
    np.testing.assert_allclose(y, x.repeat(2, axis=1).repeat(3, axis=2), rtol=1e-12)


def test_upsampling_bilinear_is_half_pixel():
    torch = pytest.importorskip("torch")
    x = rng.normal(size=(2, 3, 4, 5))
    y = L.UpSampling2D(2, interpolation="bilinear")(x)
    want = torch.nn.functional.interpolate(torch.tensor(x.transpose(0, 3, 1, 2)),
                                           scale_factor=2, mode="bilinear",
                                           align_corners=False).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12)


def test_cropping():
    x = rng.normal(size=(2, 7, 6, 3))
    np.testing.assert_array_equal(L.Cropping2D(((1, 2), (0, 3)))(x), x[:, 1:5, 0:3])
    np.testing.assert_array_equal(L.Cropping2D(1)(x), x[:, 1:6, 1:5])


@pytest.mark.numba
def test_unet_like_model_on_cpu():
    x = cnnc.Input((12, 10, 3))
    d = L.Conv2D(4, 3, strides=2, padding="same", activation="relu")(x)
    u = L.UpSampling2D(interpolation="bilinear")(d)
    c = L.Cropping2D(((1, 1), (0, 0)))(L.ZeroPadding2D(((1, 1), (0, 0)))(x))
    y = L.Conv2D(2, 1)(L.Concatenate()([u, c]))
    y = L.UpSampling2D((1, 2))(y)
    model = cnnc.Model(x, y)
    xs = rng.normal(size=(2, 12, 10, 3)).astype(np.float32)
    want = model(xs)
    got = cnnc.compile(model, target="cpu")(xs)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_errors_name_the_layer():
    with pytest.raises(ConfigError, match="up.*interpolation"):
        L.UpSampling2D(interpolation="bicubic", name="up")
    with pytest.raises(ConfigError, match="up2.*channels_last"):
        L.UpSampling2D(data_format="channels_first", name="up2")
    with pytest.raises(ShapeError, match="crop.*leaves nothing"):
        L.Cropping2D(((2, 2), (0, 0)), name="crop")(rng.normal(size=(1, 4, 4, 1)))
