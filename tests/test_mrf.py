"""The MRF patch loss (jaxstyle.mrf, Li & Wand 2016): nearest patches as a brute-force search finds
them, zero at the painting itself, exact gradients, padding that is never matched, tiling and
batching that change nothing, and the options' checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstyle
from jaxstyle import JaxstyleError, StyleConfig
from jaxstyle.losses import mrf
from jaxstyle.evaluate import objective, tiling
from jaxstyle.run.batch import stylize_batch
from jaxstyle.run.problem import Job, make_problem

from .conftest import smooth_image, stripes


def brute_force_nearest(rows: np.ndarray, library: np.ndarray) -> np.ndarray:
    """For each row, the library row of highest cosine similarity, by a double loop."""
    out = []
    for r in rows:
        scores = [float(r @ q) / (np.linalg.norm(r) * np.linalg.norm(q)) for q in library]
        out.append(int(np.argmax(scores)))
    return np.asarray(out)


def windows(features: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Every size x size window of an (H, W, C) map, every ``stride`` positions, flattened (dy, dx, c)."""
    h, w, _ = features.shape
    return np.asarray([features[y:y + size, x:x + size].reshape(-1)
                       for y in range(0, h - size + 1, stride) for x in range(0, w - size + 1, stride)])


def test_patches_are_the_windows_of_the_map():
    f = np.random.default_rng(0).normal(size=(9, 11, 4)).astype(np.float32)
    for size, stride in ((3, 1), (3, 2), (2, 3)):
        got = np.asarray(mrf.patches(jnp.asarray(f), size, stride))
        np.testing.assert_array_equal(got.reshape(-1, got.shape[-1]), windows(f, size, stride))


@pytest.mark.parametrize("blocked", [False, True])
def test_nearest_patch_matches_a_brute_force_search(monkeypatch, blocked):
    rng = np.random.default_rng(1)
    style = rng.normal(size=(10, 12, 5)).astype(np.float32)
    output = rng.normal(size=(8, 9, 5)).astype(np.float32)
    lib = mrf.library(jnp.asarray(style), 3, 2)
    rows = windows(output, 3, 1)
    if blocked:  # the row-block path that keeps the score matrix small on large images
        monkeypatch.setattr(mrf, "SCORE_BLOCK_BYTES", 4 * lib.patches.shape[0] * 5)
    got = np.asarray(jax.jit(mrf.nearest)(jnp.asarray(rows), lib))
    np.testing.assert_array_equal(got, brute_force_nearest(rows, windows(style, 3, 2)))
    # The squared error is that of the brute-force matches.
    expected = np.sum(np.square(rows - windows(style, 3, 2)[brute_force_nearest(rows, windows(style, 3, 2))]))
    np.testing.assert_allclose(float(mrf.squared_error(jnp.asarray(rows), lib)), expected, rtol=1e-5)


def test_padding_rows_are_never_matched():
    """Libraries of unequal length are padded with zero patches; a zero patch scores 0, above every
    real patch here (all anti-correlated with the output), yet it must never be chosen."""
    rows = jnp.ones((4, 6), jnp.float32)
    short = mrf.PatchLibrary(patches=-jnp.arange(1, 13, dtype=jnp.float32).reshape(2, 6), valid=jnp.ones(2))
    long = mrf.PatchLibrary(patches=-jnp.arange(1, 25, dtype=jnp.float32).reshape(4, 6), valid=jnp.ones(4))
    stacked = mrf.MRF().stack([short, long])  # the loss stacks its own targets (objective.stack_targets)
    assert stacked.patches.shape == (2, 4, 6) and np.asarray(stacked.valid).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    padded = jax.tree.map(lambda a: a[0], stacked)
    assert np.asarray(mrf.nearest(rows, padded)).max() < 2
    np.testing.assert_allclose(float(mrf.squared_error(rows, padded)), float(mrf.squared_error(rows, short)))
    # The relative normalisation's patch energy ignores the padding too.
    assert float(mrf.normalize(jnp.float32(1.0), 4, padded)) == pytest.approx(float(mrf.normalize(jnp.float32(1.0), 4, short)))


def _texture_problem(weights, painting, **changes):
    cfg = StyleConfig(size=max(painting.shape[:2]), content_layers=(), style_loss="mrf", init="noise", **changes)
    return make_problem(weights, painting, [painting], cfg)


def test_loss_is_zero_at_the_painting_and_positive_elsewhere(weights):
    painting = stripes(40, 48) * 0.8 + 0.2 * smooth_image(40, 48)
    data = _texture_problem(weights, painting, mrf_stride=1)
    at_painting = objective.loss_terms(jnp.asarray(painting), data)["style"]
    elsewhere = objective.loss_terms(jnp.asarray(smooth_image(40, 48)), data)["style"]
    assert float(at_painting) < 1e-6 * float(elsewhere) and float(elsewhere) > 0.1
    # With a sparser library, the painting's own patches between the samples are not in it.
    sparse = _texture_problem(weights, painting, mrf_stride=2)
    assert float(objective.loss_terms(jnp.asarray(painting), sparse)["style"]) > 1e-4 * float(elsewhere)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    style = rng.normal(size=(7, 8, 3)).astype(np.float32)
    lib = mrf.stack([mrf.library(jnp.asarray(style), 3, 1),
                     mrf.library(jnp.asarray(rng.normal(size=(6, 6, 3)).astype(np.float32)), 3, 1)])
    blend = jnp.asarray([0.25, 0.75], jnp.float32)
    # Near the first painting, so that its nearest patches are clear-cut; away from the second.
    f = jnp.asarray(style[:6, 1:] + 0.3 * rng.normal(size=(6, 7, 3)).astype(np.float32))
    direction = jnp.asarray(rng.normal(size=f.shape).astype(np.float32))
    for normalization in ("paper", "relative"):
        loss = lambda g: mrf.layer_loss(g, lib, blend, 3, normalization)
        grad = jax.grad(loss)(f)
        eps = 1e-2  # the loss is quadratic between changes of the nearest patch: central differences are exact
        rows = lambda g: mrf.patches(g, 3).reshape(-1, 27)
        for k in range(2):
            one = jax.tree.map(lambda a: a[k], lib)
            assert (mrf.nearest(rows(f + eps * direction), one) == mrf.nearest(rows(f - eps * direction), one)).all()
        numeric = (loss(f + eps * direction) - loss(f - eps * direction)) / (2 * eps)
        assert float(jnp.vdot(grad, direction)) == pytest.approx(float(numeric), rel=2e-3)


def test_tiled_mrf_loss_and_gradient_equal_untiled(weights):
    h, w = 90, 107
    cfg = StyleConfig(size=w, style_loss="mrf", mrf_layers=("relu2_1", "relu3_1"), content_layers=("relu3_2",),
                      tv_weight=0.3, style_blend_weights=(0.3, 0.7))
    # Plain stripes repeat exactly, so some output patches sit at near-ties between two different
    # library patches, and float rounding (which differs between any two XLA programs) picks either:
    # the loss then jumps by ~1e-5 on some CPUs. A little seeded noise breaks the ties.
    noise = np.random.default_rng(1).uniform(-0.05, 0.05, (120, 90, 3))
    painting = np.clip(stripes(120, 90) + noise, 0, 1).astype(np.float32)
    data = make_problem(weights, smooth_image(h, w), [painting, smooth_image(100, 130, 1.0)], cfg)
    x = jnp.asarray(smooth_image(h, w, 0.5))
    value, grad = jax.jit(jax.value_and_grad(objective.total_loss))(x, data)
    spec = data.spec
    plan = tiling.make_plan(h, w, 32, spec.layers, margin=spec.style_loss.margin(spec.style_layers))
    assert plan.grid[0] >= 2 and plan.grid[1] >= 2 and plan.halo == tiling.make_plan(h, w, 32, spec.layers).halo + 4
    tiled_value, tiled_grad = tiling.value_and_grad(x, data, plan)
    assert abs(float(tiled_value - value)) / float(value) < 1e-5
    assert float(jnp.linalg.norm(tiled_grad - grad) / jnp.linalg.norm(grad)) < 1e-5


def test_a_batch_with_paintings_of_different_sizes_equals_separate_runs():
    """Per-job style scales give libraries of different lengths: stacked, they are padded, and each
    job's result is the one it gets alone."""
    # float32 L-BFGS memory: rounding the pairs to bfloat16 (the default's) lifts the batch's float
    # rounding differences from a single run's to 6e-4 in a pixel after 4 steps
    cfg = StyleConfig(size=40, steps=4, style_loss="mrf", mrf_layers=("relu2_1",), style_weight=5.0,
                      lbfgs_history="float32")
    jobs = [Job(smooth_image(30, 40), (stripes(40, 40),), cfg),
            Job(smooth_image(30, 40, 1.0), (stripes(40, 40),), cfg.replace(style_scale=0.7))]
    batch = stylize_batch(jobs, batch_size=2)
    assert batch[0].timings["batch_size"] == 2
    for job, result in zip(jobs, batch):
        alone = jaxstyle.stylize(job.content, job.styles, job.config)
        np.testing.assert_allclose(result.image, alone.image, atol=5e-4)  # float rounding, over the steps
        assert result.history[-1] < result.history[0]


def test_mrf_options_are_checked():
    with pytest.raises(JaxstyleError, match="mrf_patch_size"):
        StyleConfig(style_loss="mrf", mrf_patch_size=0)
    with pytest.raises(JaxstyleError, match="mrf_stride"):
        StyleConfig(style_loss="mrf", mrf_stride=2.5)
    with pytest.raises(JaxstyleError, match="MRF layer"):
        StyleConfig(style_loss="mrf", mrf_layers=("relu9_1",))
    # Under the MRF loss, the style layer weights are those of the MRF layers.
    assert StyleConfig(style_loss="mrf", style_layer_weights=(0.5, 0.5)).style_term_layers == ("relu3_1", "relu4_1")
    with pytest.raises(JaxstyleError, match="2 layers"):
        StyleConfig(style_loss="mrf", style_layer_weights=(1, 1, 1, 1, 1))
    # A whole 3x3 patch at relu4_1 (stride 8) needs 24 px; relu4_1 alone needs 8.
    assert StyleConfig(style_loss="mrf", content_layers=()).min_size == 24
    with pytest.raises(JaxstyleError, match="with the mrf style loss: use at least"):
        StyleConfig(style_loss="mrf", content_layers=(), size=20)
