"""Region masks (Gatys et al. 2017, spatial control): label images, masks carried to each layer
(downsampled or eroded, against NumPy references), guided Gram matrices."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle import JaxstyleError, losses
from jaxstyle.losses import masks
from jaxstyle.model import vgg
from jaxstyle.io.image import resize_nearest

from .conftest import smooth_image


def label_image(h: int, w: int) -> np.ndarray:
    """Three regions: a red disc on a blue ground with a white band at the bottom."""
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = np.zeros((h, w, 3), np.uint8)
    out[...] = (0, 0, 255)
    out[(i - h // 3) ** 2 + (j - w // 2) ** 2 < (h // 4) ** 2] = (255, 0, 0)
    out[i >= h - h // 5] = (255, 255, 255)
    return out


def test_regions_follow_first_appearance_and_refuse_a_photo():
    index, colours = masks.regions(label_image(40, 50))
    assert colours == [(0, 0, 255), (255, 0, 0), (255, 255, 255)]  # blue appears first (row 0)
    assert index[0, 0] == 0 and index[40 // 3, 25] == 1 and index[-1, 0] == 2
    float_index, _ = masks.regions(label_image(40, 50) / 255.0)
    np.testing.assert_array_equal(float_index, index)
    with pytest.raises(JaxstyleError, match="was a photo passed by mistake"):
        masks.regions(smooth_image(40, 50))


def test_nearest_resize_never_blends_labels():
    index, colours = masks.regions(label_image(40, 50))
    m = masks.one_hot(index, len(colours), (23, 61))
    assert m.shape == (3, 23, 61) and set(np.unique(m)) == {0.0, 1.0}
    np.testing.assert_array_equal(m.sum(axis=0), 1.0)  # each pixel in exactly one region
    np.testing.assert_array_equal(resize_nearest(index, index.shape), index)


def test_guided_gram_with_all_ones_is_the_gram_and_a_partition_sums_to_it():
    f = jnp.asarray(np.random.default_rng(0).normal(size=(9, 11, 6)), jnp.float32)
    np.testing.assert_allclose(masks.guided_gram(f, jnp.ones((9, 11))), losses.gram(f), rtol=1e-5, atol=1e-6)
    left = jnp.asarray(np.broadcast_to(np.arange(11) < 4, (9, 11)), jnp.float32)
    parts = masks.guided_grams(f, jnp.stack([left, 1.0 - left]))
    mass = jnp.stack([left.sum(), (1.0 - left).sum()]).reshape(2, 1, 1)
    np.testing.assert_allclose(jnp.sum(mass * parts, axis=0) / (9 * 11), losses.gram(f), rtol=1e-5, atol=1e-6)
    assert not np.allclose(parts[0], parts[1])


def _sizes(h: int, w: int, layer: str) -> list:
    """(layer name, input height, input width) of every conv and pool up to ``layer``."""
    steps = []
    for name in vgg.LAYERS[: vgg.LAYERS.index(layer) + 1]:
        if name.startswith("conv"):
            steps.append(("conv", h, w))
        elif name.startswith("pool"):
            steps.append(("pool", h, w))
            h, w = h // 2, w // 2
    return steps


def eroded_reference(mask: np.ndarray, layer: str) -> np.ndarray:
    """Brute force: a position is in the region iff every image pixel of its receptive field is,
    the field found by walking the network backwards (clipped to each map, as VGG's zero padding and
    floor pooling do)."""
    steps = _sizes(*mask.shape, layer)
    h, w = mask.shape
    for kind, _, _ in steps:
        if kind == "pool":
            h, w = h // 2, w // 2
    out = np.zeros((h, w), np.float32)
    for i in range(h):
        for j in range(w):
            (a, b), (c, d) = (i, i), (j, j)
            for kind, hin, win in reversed(steps):
                if kind == "conv":
                    a, b, c, d = max(a - 1, 0), min(b + 1, hin - 1), max(c - 1, 0), min(d + 1, win - 1)
                else:
                    a, b, c, d = 2 * a, 2 * b + 1, 2 * c, 2 * d + 1
            out[i, j] = mask[a:b + 1, c:d + 1].all()
    return out


@pytest.mark.parametrize("layer", ["relu1_1", "relu2_1", "pool2", "relu3_1", "relu4_1"])
def test_eroded_masks_match_the_receptive_field_reference(layer):
    index, colours = masks.regions(label_image(45, 53))  # sides that are not multiples of 16
    m = masks.one_hot(index, len(colours))
    got = np.asarray(masks.at_layers(m, [layer], "eroded")[layer])
    for r in range(len(colours)):
        np.testing.assert_array_equal(got[r], eroded_reference(m[r] > 0.5, layer))
    assert got[1].sum() < (m[1] > 0).sum() / 4 ** vgg.pools_before(layer)  # eroded: smaller than its area


def test_downsampled_masks_are_block_means():
    index, colours = masks.regions(label_image(45, 53))
    m = masks.one_hot(index, len(colours))
    got = np.asarray(masks.at_layers(m, ["relu3_1"], "downsample")["relu3_1"])
    ref = m[:, :44, :52].reshape(3, 11, 4, 13, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(got, ref, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=0), 1.0, atol=1e-6)  # still a partition, with soft borders


def test_a_region_eroded_away_falls_back_to_its_downsampled_mask_and_an_empty_one_is_refused():
    index = np.zeros((64, 64), np.int32)
    index[30:34, 30:34] = 1  # a 4x4 px region: gone by relu3_1 once eroded
    m = masks.one_hot(index, 2)
    eroded = masks.at_layers(m, ["relu1_1", "relu3_1"], "eroded")
    with pytest.raises(JaxstyleError, match=r"region 2 \(colour \(9, 9, 9\)\) of the mask is empty at relu3_1"):
        masks.check_regions(eroded, [(0, 0, 0), (9, 9, 9)])
    settled, replaced = masks.layer_masks(m, ["relu1_1", "relu3_1"], "eroded")
    soft = masks.at_layers(m, ["relu3_1"], "downsample")["relu3_1"]
    assert replaced == [(1, "relu3_1")]  # at relu1_1 (one erosion) its 2x2 centre is left
    np.testing.assert_array_equal(settled["relu3_1"][1], soft[1])
    np.testing.assert_array_equal(settled["relu3_1"][0], eroded["relu3_1"][0])  # the other region stays eroded
    np.testing.assert_array_equal(settled["relu1_1"], eroded["relu1_1"])
    masks.check_regions(settled, [(0, 0, 0), (9, 9, 9)])
    empty = masks.one_hot(np.zeros((64, 64), np.int32), 2)  # region 2 has no pixel at all
    with pytest.raises(JaxstyleError, match="region 2"):
        masks.check_regions(masks.layer_masks(empty, ["relu3_1"])[0], [(0, 0, 0), (9, 9, 9)])


def _texture(h, w, colour_a, colour_b, period=6):
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.where(((i + 2 * j) % period < period // 2)[..., None], np.array(colour_a), np.array(colour_b)).astype(np.float32)


def test_two_regions_take_the_colours_of_their_own_paintings(tmp_path):
    """Left half of the photo from a red painting, right half from a blue one: each half's mean
    colour ends closer to its own painting's, and swapping the paintings swaps the halves. (Without
    masks nothing says which half gets which: a half-red, half-blue image also matches the blend's
    Gram matrices, and L-BFGS from the low-frequency start finds such layouts, either way round.)"""
    import jaxstyle

    h, w = 40, 64
    content = np.full((h, w, 3), 0.5, np.float32) + 0.1 * smooth_image(h, w)
    red, blue = _texture(48, 48, (0.9, 0.2, 0.1), (0.6, 0.1, 0.1)), _texture(48, 48, (0.1, 0.2, 0.9), (0.1, 0.1, 0.6))
    labels = np.zeros((h, w, 3), np.uint8)
    labels[:, w // 2:] = (255, 255, 255)
    jaxstyle.save_image(labels / 255.0, tmp_path / "photo_mask.png")
    jaxstyle.save_image(np.zeros((48, 48, 3), np.float32), tmp_path / "first_mask.png")  # all black: region 1
    jaxstyle.save_image(np.ones((48, 48, 3), np.float32), tmp_path / "second_mask.png")  # all white: region 2
    cfg = jaxstyle.StyleConfig(size=w, steps=40, style_layers=("relu1_1", "relu2_1"), content_layers=("relu2_1",),
                               style_weight=100.0, content_mask=str(tmp_path / "photo_mask.png"),
                               style_masks=(str(tmp_path / "first_mask.png"), str(tmp_path / "second_mask.png")))
    red_mean, blue_mean = red.mean(axis=(0, 1)), blue.mean(axis=(0, 1))
    for paintings, (left_goal, right_goal) in (([red, blue], (red_mean, blue_mean)), ([blue, red], (blue_mean, red_mean))):
        out = jaxstyle.stylize(content, paintings, cfg).image
        left, right = out[:, : w // 2 - 4].mean(axis=(0, 1)), out[:, w // 2 + 4:].mean(axis=(0, 1))
        assert np.linalg.norm(left - left_goal) < 0.5 * np.linalg.norm(left - right_goal)
        assert np.linalg.norm(right - right_goal) < 0.5 * np.linalg.norm(right - left_goal)


def test_tiled_guided_grams_loss_gradient_and_targets_equal_untiled(weights):
    """Guided Grams are sums over positions too: tile by tile (the output and a masked painting
    both cut into crops), loss, gradient and targets equal the whole image's."""
    import jax

    from jaxstyle import StyleConfig
    from jaxstyle.evaluate import bands, objective, tiling
    from jaxstyle.run.problem import Regions, make_problem

    from .conftest import stripes

    h, w = 90, 107
    cfg = StyleConfig(size=w, style_layers=("relu1_1", "relu2_1", "relu3_1"), content_layers=("relu3_2",),
                      tv_weight=0.3, style_blend_weights=(0.3, 0.7))
    index = np.zeros((h, w), np.int32)
    index[:, 50:] = 1
    style_index = np.zeros((80, 60), np.int32)
    style_index[40:] = 1
    colours = [(0, 0, 0), (255, 255, 255)]
    regions = Regions(index, colours, [style_index, None], [colours, None], np.ones((2, 2), bool))
    styles = [stripes(80, 60), smooth_image(70, 90, 1.0)]
    whole = make_problem(weights, smooth_image(h, w), styles, cfg, None, regions)
    x = jnp.asarray(smooth_image(h, w, 0.5))
    value, grad = jax.jit(jax.value_and_grad(objective.total_loss))(x, whole)
    tiles = tiling.make_plan(h, w, 32, whole.spec.layers)
    assert tiles.grid[0] >= 2 and tiles.grid[1] >= 2
    for plan in (tiles, bands.make_plan(h, w, 32, whole.spec.layers)):  # crops with halos; streamed bands
        tiled = make_problem(weights, smooth_image(h, w), styles, cfg, plan, regions)
        for a, b in zip(jax.tree.leaves(tiled.targets), jax.tree.leaves(whole.targets)):
            assert float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b)) < 1e-4
        tiled_value, tiled_grad = plan.value_and_grad(x, tiled)
        assert abs(float(tiled_value - value)) / float(value) < 1e-5
        assert float(jnp.linalg.norm(tiled_grad - grad) / jnp.linalg.norm(grad)) < 1e-5
