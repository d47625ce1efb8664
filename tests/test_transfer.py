"""End to end: tiny real runs of stylize() whose loss falls and whose style statistics move."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstyle
from jaxstyle import JaxstyleError, StyleConfig, losses
from jaxstyle.evaluate.objective import image_features

from .conftest import smooth_image, stripes

CONTENT = smooth_image(36, 48)
STYLE = stripes(40, 40)
TINY = StyleConfig(size=48, steps=20, chunk=5)
LAYERS = TINY.style_layers


def style_distance(weights, image, style):
    """Mean relative Gram error over the style layers (the quantity the style term minimises)."""
    f = image_features(weights, jnp.asarray(image), LAYERS, "max")
    s = image_features(weights, jnp.asarray(style), LAYERS, "max")
    return float(np.mean([losses.style_layer_loss(losses.gram(f[k]), losses.gram(s[k])) for k in LAYERS]))


@pytest.fixture(scope="module")
def lbfgs_result():
    return jaxstyle.stylize(CONTENT, STYLE, TINY)


def test_loss_falls_and_style_moves_towards_the_painting(weights, lbfgs_result):
    r = lbfgs_result
    assert r.image.shape == (36, 48, 3)  # content's aspect, long side = size
    assert r.history.shape == (20,)
    assert r.history[-1] < 0.5 * r.history[0]
    before = style_distance(weights, CONTENT, STYLE)
    after = style_distance(weights, r.image, STYLE)
    assert after < 0.5 * before, (before, after)
    assert 0.0 <= r.image.min() and r.image.max() <= 1.0
    # One loss-and-gradient evaluation per L-BFGS iteration without a line search.
    assert r.evaluations == 20


def test_adam_and_noise_init_also_converge():
    r = jaxstyle.stylize(CONTENT, STYLE, TINY.replace(optimizer="adam", init="noise", steps=30, lr=0.05))
    assert r.history[-1] < 0.7 * r.history[0]


def compile_log(caplog, run) -> list[str]:
    """The names of the programs XLA compiled while ``run()`` ran (optax's alias_test pattern)."""
    with jax.log_compiles(True), caplog.at_level(logging.WARNING, logger="jax"):
        caplog.clear()
        run()
    return [r.message.split(" with ")[0] for r in caplog.records if "Compiling" in r.message]


def test_second_run_compiles_nothing_with_other_traced_values_and_other_weights(lbfgs_result, caplog):
    """alpha, beta, layer weights, TV weight, learning rate and the seed are traced, and so are the
    weights: a different weight set of the same shapes (here the bundled one scaled, with its own
    SHA-256) reuses every compiled program. Before, the hash was part of the jit cache key."""
    changed = TINY.replace(content_weight=2.0, style_weight=3.0, tv_weight=0.1, lr=0.5, seed=7,
                           style_layer_weights=(0.1, 0.2, 0.3, 0.2, 0.2))
    bundled = jaxstyle.load_bundled()
    other = jaxstyle.VGGWeights(jax.tree.map(lambda a: 1.01 * a, bundled.params), bundled.preprocessing, sha256="other")
    compiled = compile_log(caplog, lambda: jaxstyle.stylize(CONTENT, STYLE, changed, weights=other))
    assert compiled == []


def test_same_seed_same_image_different_seed_different_image():
    cfg = TINY.replace(init="noise", steps=3)
    a = jaxstyle.stylize(CONTENT, STYLE, cfg.replace(seed=1)).image
    b = jaxstyle.stylize(CONTENT, STYLE, cfg.replace(seed=1)).image
    c = jaxstyle.stylize(CONTENT, STYLE, cfg.replace(seed=2)).image
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.01


def test_callback_reports_every_chunk():
    seen = []
    jaxstyle.stylize(CONTENT, STYLE, TINY.replace(steps=12), callback=seen.append)
    assert [p.step for p in seen] == [5, 10, 12]  # every `chunk` steps, then the last
    assert seen[-1].image().shape == (36, 48, 3)
    assert all(np.isfinite(p.loss) for p in seen)


def test_content_weight_zero_ignores_the_photo(weights):
    # With alpha = 0 and a noise start the result cannot depend on the photo at all.
    cfg = TINY.replace(content_weight=0.0, init="noise", steps=5)
    a = jaxstyle.stylize(CONTENT, STYLE, cfg).image
    b = jaxstyle.stylize(CONTENT[::-1].copy(), STYLE, cfg).image
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_two_styles_blend_between_them(weights):
    other = smooth_image(40, 40, phase=2.0)[..., ::-1].copy()
    r = jaxstyle.stylize(CONTENT, [STYLE, other], TINY)
    # The blended result sits between the two paintings, not on either.
    assert style_distance(weights, r.image, STYLE) < style_distance(weights, other, STYLE)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(style_layers=("relu1_1", "bogus")), "unknown style layer 'bogus'"),
        (dict(style_weight=-1.0), "style_weight"),
        (dict(size=8), "use at least 16 px"),
        (dict(optimizer="sgd"), "lbfgs, adam"),
        (dict(style_layer_weights=(1.0,)), "one per layer"),
    ],
)
def test_bad_config_is_refused_before_work(change, match):
    with pytest.raises(JaxstyleError, match=match):
        jaxstyle.stylize(CONTENT, STYLE, TINY.replace(**change))


def test_image_too_small_for_deepest_layer_names_the_minimum():
    with pytest.raises(JaxstyleError, match="at least 16 px"):
        jaxstyle.stylize(CONTENT, np.zeros((10, 40, 3), np.float32), TINY)


def test_settled_judges_the_best_loss_of_every_job_over_the_window():
    from jaxstyle.run.transfer import settled

    falling = list(100 * 0.9 ** np.arange(40))  # falls 65% every 10 steps
    assert not settled(falling, 0.01)
    flat = falling[:20] + [falling[19] * (1 - 1e-4 * k) for k in range(1, 21)]  # 0.1% over the last 10
    assert settled(flat, 0.01) and settled(flat, 0.002) and not settled(flat, 0.0005)
    assert not settled(flat, 0.0) and not settled(flat[:10], 0.5)  # 0: never; fewer than 11 losses: never
    # One step that overshoots among falling ones is judged by the best loss, so it does not stop a run
    # that still improves; a best loss that no step of the last 10 beat has settled.
    bumped = falling[:39] + [1e6]
    assert not settled(bumped, 0.01)
    assert settled(falling[:30] + [1e6] * 10, 0.01)
    # A batch stops only when every job has; a job whose loss is no longer finite has; a loss of 0 has.
    both = np.stack([flat, falling], 1)
    assert not settled(list(both), 0.01)
    both[-1, 1] = np.nan
    assert settled(list(both), 0.01)
    assert settled([1.0] * 5 + [0.0] * 15, 0.01)


def test_tolerance_stops_at_the_first_check_where_the_loss_settled_and_changes_nothing_before():
    from jaxstyle.run.transfer import settled

    cfg = TINY.replace(steps=200, chunk=5, tolerance=0.2)
    seen = []
    r = jaxstyle.stylize(CONTENT, STYLE, cfg, callback=seen.append)
    n = len(r.history)
    assert 20 < n < 200 and n % 5 == 0, n
    assert settled(list(r.history), 0.2) and not settled(list(r.history[:-5]), 0.2)
    # Every report until the last expects all 200 steps; the last says the run ends there.
    assert [p.steps for p in seen[:-1]] == [200] * (len(seen) - 1) and seen[-1].step == seen[-1].steps == n
    assert r.evaluations == n
    # The path is the one of a run of n steps: stopping changes nothing before it.
    full = jaxstyle.stylize(CONTENT, STYLE, cfg.replace(steps=n, tolerance=0.0))
    np.testing.assert_array_equal(r.image, full.image)
    np.testing.assert_array_equal(r.history, full.history)
