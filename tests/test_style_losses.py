"""Style losses as objects: the registry, the sliced Wasserstein and histogram losses against
independent NumPy references, their gradients, zero at the painting, and a loss of one's own."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstyle
from jaxstyle import JaxstyleError, StyleConfig, cli, losses
from jaxstyle.losses import base
from jaxstyle.run.batch import Job, stylize_batch

from .conftest import smooth_image, stripes

ROOT = Path(__file__).resolve().parent.parent
SHALLOW = dict(size=32, steps=3, style_layers=("relu1_1", "relu2_1"), content_layers=("relu2_1",))


def features(seed: int, shape=(9, 11, 16)) -> jax.Array:
    return jax.nn.relu(jax.random.normal(jax.random.PRNGKey(seed), shape))


def numpy_quantiles(sorted_values: np.ndarray, m: int) -> np.ndarray:
    """Linear interpolation of a sorted column at the (i + 1/2)/m quantiles, written independently."""
    n = sorted_values.shape[0]
    positions = np.clip((np.arange(m) + 0.5) * n / m - 0.5, 0, n - 1)
    return np.stack([np.interp(positions, np.arange(n), sorted_values[:, k]) for k in range(sorted_values.shape[1])], 1)


def test_the_registry_lists_every_loss_and_refuses_unknown_names():
    assert losses.names()[:5] == ("gram", "wasserstein", "mrf", "sliced", "histogram")
    with pytest.raises(JaxstyleError, match="unknown style loss 'fancy'; choose one of gram, wasserstein, mrf"):
        losses.get("fancy")
    with pytest.raises(JaxstyleError, match="`style_loss` .* must be one of gram, wasserstein, mrf, sliced, histogram"):
        StyleConfig(style_loss="fancy")


def test_sliced_wasserstein_matches_a_numpy_reference_and_is_zero_at_the_painting():
    loss = losses.SlicedWasserstein(projections=12, seed=3)
    x, painting = features(0), features(1, (8, 13, 16))  # different numbers of positions: resampled
    dirs = np.array(jax.random.normal(jax.random.PRNGKey(3), (16, 12)))
    dirs /= np.linalg.norm(dirs, axis=0, keepdims=True)
    ours = np.sort(np.asarray(x).reshape(-1, 16) @ dirs, axis=0)
    theirs = numpy_quantiles(np.sort(np.asarray(painting).reshape(-1, 16) @ dirs, axis=0), ours.shape[0])
    reference = np.mean((ours - theirs) ** 2) / np.mean(theirs ** 2)
    target = loss.stack([loss.painting_target(painting)])
    value = jax.jit(loss.layer_loss, static_argnums=3)(x, target, jnp.ones(1), "relative")
    assert float(value) == pytest.approx(reference, rel=1e-5)
    at_painting = loss.layer_loss(painting, target, jnp.ones(1), "relative")
    assert abs(float(at_painting)) < 1e-10


def test_histogram_loss_matches_a_numpy_reference_and_is_zero_at_the_painting():
    loss = losses.Histogram(weight=0.5)
    x, painting = features(2), features(4, (10, 10, 16))
    f, p = np.asarray(x).reshape(-1, 16), np.asarray(painting).reshape(-1, 16)
    remapped = np.empty_like(f)
    for c in range(16):  # exact histogram matching: each value becomes the painting's value of its rank
        remapped[np.argsort(f[:, c], kind="stable"), c] = numpy_quantiles(np.sort(p[:, c])[:, None], f.shape[0])[:, 0]
    gram = lambda a: a.T @ a / a.shape[0]
    gram_term = np.sum((gram(f) - gram(p)) ** 2) / np.sum(gram(p) ** 2)
    hist_term = np.mean((f - remapped) ** 2) / np.mean(remapped ** 2)
    target = loss.stack([loss.painting_target(painting)])
    value = loss.layer_loss(x, target, jnp.ones(1), "relative")
    assert float(value) == pytest.approx(gram_term + 0.5 * hist_term, rel=1e-4)
    assert abs(float(loss.layer_loss(painting, target, jnp.ones(1), "relative"))) < 1e-10


@pytest.mark.parametrize("loss", [losses.SlicedWasserstein(), losses.Histogram()], ids=["sliced", "histogram"])
def test_gradients_match_central_differences(loss):
    """Between changes of rank (sorting is piecewise linear), both losses are smooth: a small step
    along a random direction changes no rank and central differences are exact to rounding."""
    x, painting = features(5), features(6)
    target = loss.stack([loss.painting_target(painting)])
    f = lambda y: loss.layer_loss(y, target, jnp.ones(1), "relative")
    direction = jax.random.normal(jax.random.PRNGKey(7), x.shape)
    eps = 1e-4
    grad = jax.grad(f)(x)
    numeric = (f(x + eps * direction) - f(x - eps * direction)) / (2 * eps)
    assert float(jnp.vdot(grad, direction)) == pytest.approx(float(numeric), rel=2e-2)


@pytest.mark.parametrize("name", ["sliced", "histogram"])
def test_the_new_losses_run_from_the_api_the_cli_and_a_batch(tmp_path, capsys, name):
    config = StyleConfig(style_loss=name, **SHALLOW)
    # the histogram loss's target moves as ranks change, so its first steps need not descend: 12 do
    result = jaxstyle.stylize(smooth_image(24, 32), stripes(32, 32), config.replace(steps=12))
    assert np.isfinite(result.terms["style"]) and result.history[-1] < 0.5 * result.history[0]
    out = tmp_path / "o.png"
    argv = [str(ROOT / "jaxstyle/examples/chelsea.jpg"), str(ROOT / "jaxstyle/examples/starry_night.jpg"), "-o",
            str(out), "--style-loss", name, "--size", "32", "--steps", "2", "--style-layers", "relu1_1",
            "--content-layers", "relu1_1", "--quiet"]
    assert cli.main(argv) == 0 and json.loads((tmp_path / "o.png.json").read_text())["config"]["style_loss"] == name
    jobs = [Job(smooth_image(24, 32, k), (stripes(32, 32), stripes(20, 20)), config.replace(seed=k)) for k in range(2)]
    alone = jaxstyle.stylize(jobs[1].content, jobs[1].styles, jobs[1].config)
    batch = stylize_batch(jobs, batch_size=2)  # paintings of different sizes: targets of different lengths
    np.testing.assert_allclose(batch[1].image, alone.image, atol=2e-3)


def test_a_loss_that_needs_the_whole_layer_refuses_tiles_in_one_line():
    config = StyleConfig(style_loss="sliced", tile=16, **SHALLOW)
    with pytest.raises(JaxstyleError, match="'sliced' needs each layer whole: it cannot be evaluated in tiles"):
        jaxstyle.stylize(smooth_image(24, 32), stripes(32, 32), config)
    with pytest.raises(JaxstyleError, match="region masks work with a style loss that has guided statistics"):
        StyleConfig(style_loss="histogram", content_mask=str(ROOT / "notebooks/figures/tubingen_sky.png"))


@dataclasses.dataclass(frozen=True)
class NaNLoss(losses.StyleLoss):
    def statistic(self, features):
        return jnp.mean(features, axis=(0, 1))

    def distance(self, statistic, target, normalization):
        return jnp.sum(statistic - target) * jnp.nan


@dataclasses.dataclass(frozen=True)
class WrongShape(losses.StyleLoss):
    def statistic(self, features):
        return features

    def distance(self, statistic, target, normalization):
        return statistic - target  # not a scalar


@pytest.mark.parametrize("loss, expect", [(NaNLoss(), "returned nan on test features"),
                                          (WrongShape(), "distance must return a scalar")])
def test_a_broken_loss_of_ones_own_is_one_line_before_the_run(loss, expect):
    with pytest.raises(JaxstyleError, match=f"style loss '(NaNLoss|WrongShape)'.*{expect}"):
        jaxstyle.stylize(smooth_image(24, 32), stripes(32, 32), StyleConfig(style_loss=loss, **SHALLOW))


def test_a_registered_loss_of_ones_own_works_by_name_in_a_sweep(tmp_path):
    @losses.register
    @dataclasses.dataclass(frozen=True)
    class MeanOnly(losses.StyleLoss):
        name = "test-mean-only"

        def statistic(self, features):
            return jnp.mean(features, axis=(0, 1))

        def distance(self, statistic, target, normalization):
            return jnp.sum(jnp.square(statistic - target)) / (jnp.sum(jnp.square(target)) + 1e-8)

    try:
        from jaxstyle.io import image
        from jaxstyle.run.sweep import run_sweep

        image.save_image(smooth_image(24, 32), tmp_path / "c.png")
        image.save_image(stripes(32, 32), tmp_path / "s.png")
        (tmp_path / "spec.toml").write_text('[base]\nsize = 32\nsteps = 2\nstyle_layers = ["relu1_1"]\ncontent_layers = '
                                            '["relu1_1"]\nstyle_loss = "test-mean-only"\n[grid]\ncontent = ["c.png"]\n'
                                            'style = ["s.png"]\nseed = [0, 1]\n')
        counts = run_sweep(tmp_path / "spec.toml", tmp_path / "out")
        assert (counts["done"], counts["failed"]) == (2, 0)
    finally:
        base._REGISTRY.pop("test-mean-only")


def test_the_readme_custom_loss_example_runs_as_a_script(tmp_path):
    """The README's example (the block after <!-- example:custom-loss -->), run on its own in a fresh
    interpreter, writes an image."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- example:custom-loss -->\n```python\n", 1)[1].split("\n```", 1)[0]
    (tmp_path / "example.py").write_text(block)
    result = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    written = list(tmp_path.glob("*.png"))
    assert written and jaxstyle.load_image(written[0]).shape[2] == 3


def test_a_loss_that_declares_it_cannot_be_batched_runs_its_jobs_one_at_a_time(monkeypatch):
    from jaxstyle.run import batch as batching

    @dataclasses.dataclass(frozen=True)
    class Alone(losses.Gram):
        batchable = False

    sizes = []
    real_run = batching.run
    monkeypatch.setattr(batching, "run", lambda jobs, **kw: sizes.append(len(jobs)) or real_run(jobs, **kw))
    config = StyleConfig(style_loss=Alone(), **SHALLOW)
    stylize_batch([Job(smooth_image(24, 32, k), (stripes(32, 32),), config.replace(seed=k)) for k in range(3)],
                  batch_size=3)
    assert sizes == [1, 1, 1]
