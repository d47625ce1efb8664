"""The tiled evaluation (jaxstyle.tiling) is exact, its memory is flat, and its plan is the documented one;
runs too large to evaluate whole (streamed in bands, or tiled for MRF) give the untiled image."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstyle
from jaxstyle import JaxstyleError, StyleConfig
from jaxstyle.evaluate import bands, memory, objective, planner, tiling
from jaxstyle.evaluate.parts import crop_parts, layer_stride, receptive_radius
from jaxstyle.run import transfer
from jaxstyle.run.problem import make_problem

from .conftest import smooth_image, stripes

H, W = 171, 203  # sides that are multiples of neither the stride (8 or 16) nor the tile
LAYERS_4 = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


def problem(weights, kind, pooling, style_layers, content_layers=("relu3_2",), tiles=None, **changes):
    cfg = StyleConfig(size=W, style_loss=kind, pooling=pooling, style_layers=style_layers,
                      content_layers=content_layers, tv_weight=0.3, style_blend_weights=(0.3, 0.7), **changes)
    styles = [stripes(120, 90), smooth_image(100, 130, 1.0)]
    return make_problem(weights, smooth_image(H, W), styles, cfg, tiles)


def relative(a, b) -> float:
    return float(jnp.linalg.norm(jnp.ravel(a - b)) / jnp.linalg.norm(jnp.ravel(b)))


def untiled(x, problem):
    return jax.block_until_ready(jax.jit(jax.value_and_grad(objective.total_loss))(x, problem))


def test_receptive_radius_and_stride_follow_the_network():
    # Each 3x3 conv adds the current stride, each 2x2 pooling adds it and doubles it:
    # relu1_1: 1; relu3_1: 2 + 1 + 4 + 2 + 4 = 13; relu5_1: 85 (stride 16).
    assert receptive_radius(["relu1_1"]) == 1
    assert receptive_radius(["relu3_1", "relu1_1"]) == 13
    assert receptive_radius(StyleConfig().style_layers) == 85
    assert layer_stride("relu5_1") == 16 and layer_stride("pool2") == 4


def test_plan_cores_partition_the_image_and_crops_share_one_shape():
    plan = tiling.make_plan(1000, 700, 200, StyleConfig().style_layers)
    assert plan.tile == 192 and plan.halo == 85 + 16  # rounded down to the stride; radius + stride
    assert plan.grid == (6, 4)
    covered = np.zeros((1000, 700), int)
    for cy, cx, y0, y1, x0, x1 in plan.tiles:
        covered[y0:y1, x0:x1] += 1
        assert cy % 16 == 0 and cx % 16 == 0  # pooling windows line up with the whole image's
        assert 0 <= cy and cy + plan.crop[0] <= 1000 and 0 <= cx and cx + plan.crop[1] <= 700
        # Every core has the halo inside its crop, or reaches the image edge on that side.
        assert cy == 0 or y0 - cy >= plan.halo
        assert cy + plan.crop[0] == 1000 or cy + plan.crop[0] - y1 >= plan.halo
        assert cx == 0 or x0 - cx >= plan.halo
        assert cx + plan.crop[1] == 700 or cx + plan.crop[1] - x1 >= plan.halo
    assert (covered == 1).all()
    # Crop length congruent to the image's modulo the stride: the last crop is flush with the edge.
    assert (1000 - plan.crop[0]) % 16 == 0 and (700 - plan.crop[1]) % 16 == 0


@pytest.mark.parametrize("kind, pooling", [("gram", "max"), ("gram", "avg"), ("wasserstein", "max")])
def test_tiled_loss_and_gradient_equal_untiled(weights, kind, pooling):
    data = problem(weights, kind, pooling, LAYERS_4)
    x = jnp.asarray(smooth_image(H, W, 0.5))
    plan = tiling.make_plan(H, W, 40, data.spec.layers)
    assert plan.grid[0] >= 2 and plan.grid[1] >= 2
    assert_matches_untiled(x, data, plan, untiled(x, data), 1e-4)


def assert_matches_untiled(x, data, plan, expected, tolerance: float) -> None:
    """``plan``'s loss, gradient and forward-only terms at ``x`` equal the untiled ``expected``."""
    value, grad = expected
    planned_value, planned_grad = plan.value_and_grad(x, data)
    assert abs(float(planned_value - value)) / float(value) < tolerance
    assert relative(planned_grad, grad) < tolerance
    terms = plan.loss_terms(x, data)
    assert abs(float(terms["total"]) - float(value)) / float(value) < tolerance


def test_tiled_wasserstein_moments_merge_to_the_whole_images(weights):
    """The W2 parts: per-tile count, mean and centred moment, merged, give the whole map's mean and
    covariance (Chan et al.'s merge), on a map cut into unequal tiles."""
    from jaxstyle import losses

    image = jnp.asarray(smooth_image(H, W))
    f = objective.image_features(weights, image, ["relu2_1"], "max")["relu2_1"]  # (85, 101, 128)
    whole = losses.feature_stats(f)
    cores = [(0, 40, 0, W), (40, H, 0, 120), (40, H, 120, W)]  # pixels; they partition the image
    parts = [crop_parts(image, np.zeros(2, np.int32), np.asarray(core, np.int32), weights, {},
                               ("relu2_1",), losses.Wasserstein(), "max")["style"]["relu2_1"] for core in cores]
    assert sum(float(p["n"]) for p in parts) == f.shape[0] * f.shape[1]
    merged = losses.Wasserstein().combine(jax.tree.map(lambda *xs: jnp.stack(xs), *parts), f.shape[0] * f.shape[1])
    assert relative(merged["mean"], whole["mean"]) < 1e-5
    assert relative(merged["cov"], whole["cov"]) < 1e-4


def test_a_halo_smaller_than_the_receptive_field_is_visibly_wrong(weights):
    data = problem(weights, "gram", "max", LAYERS_4)
    x = jnp.asarray(smooth_image(H, W, 0.5))
    value, grad = untiled(x, data)
    plan = tiling.make_plan(H, W, 40, data.spec.layers, halo=16)
    tiled_value, tiled_grad = tiling.value_and_grad(x, data, plan)
    assert relative(tiled_grad, grad) > 1e-2


def test_tiled_targets_equal_untiled(weights):
    whole = problem(weights, "gram", "max", LAYERS_4[:3]).targets
    tiled = problem(weights, "gram", "max", LAYERS_4[:3], tiles=tiling.make_plan(H, W, 16, LAYERS_4[:3])).targets
    for layer in whole.content:
        assert relative(tiled.content[layer], whole.content[layer]) < 1e-5
    for a, b in zip(jax.tree.leaves(tiled.style), jax.tree.leaves(whole.style)):
        assert relative(a, b) < 1e-4


def test_choose_plan_picks_untiled_when_it_fits_else_the_largest_tile_that_fits():
    layers = StyleConfig().style_layers + ("relu4_2",)
    assert planner.choose_plan(384, 512, layers, max_memory=4 << 30) is None  # ~1.3 GB untiled
    budget = 8 << 30
    plan = planner.choose_plan(3072, 4096, layers, max_memory=budget)
    assert memory.untiled_bytes(3072, 4096) > budget  # ~40 GB
    assert memory.tiled_bytes(plan) <= budget
    larger = [t for t in memory.TILE_CHOICES if t > plan.tile]
    assert all(memory.tiled_bytes(tiling.make_plan(3072, 4096, t, layers)) > budget for t in larger)
    # The documented estimate: base + crop activations + image-sized state.
    assert memory.tiled_bytes(plan) == (memory.BASE_BYTES + memory.CROP_BYTES_PER_PIXEL * plan.crop[0] * plan.crop[1]
                                        + memory.STATE_BYTES_PER_PIXEL["bfloat16"] * 3072 * 4096)
    assert planner.choose_plan(3072, 4096, layers, tile=0, max_memory=64 << 30) is None  # never tile, if asked
    with pytest.raises(JaxstyleError, match="drop --tile 0"):  # ... unless it cannot fit any machine's memory
        planner.choose_plan(30000, 40000, layers, tile=0, max_memory=64 << 30)
    assert planner.choose_plan(300, 400, layers, tile=64).tile == 64
    with pytest.raises(JaxstyleError, match="max-memory") as refused:
        planner.choose_plan(3072, 4096, layers, max_memory=1 << 30)
    largest = int(str(refused.value).split("at most ")[1].split(" px")[0])  # the size it suggests fits, one more does not
    fits = lambda side: memory.tiled_bytes(tiling.make_plan(round(3072 * side / 4096), side, 256, layers)) <= 1 << 30
    assert fits(largest) and not fits(largest + 1)


@pytest.mark.parametrize("style_loss", ["gram", "wasserstein"])
def test_a_tiled_run_gives_the_untiled_image(style_loss):
    content, style = smooth_image(H, W), stripes(60, 60)
    # Adam: a smooth trajectory (L-BFGS on a 6-step toy amplifies rounding into different steps). Adam
    # still divides by the gradient's size, so a pixel whose gradient is ~0 may move by a step either
    # way: compare the mean pixel, the terms and the loss history, not the worst pixel.
    cfg = StyleConfig(size=W, steps=6, optimizer="adam", style_layers=LAYERS_4[:3], content_layers=("relu3_2",),
                      scales=1, style_loss=style_loss)
    whole = jaxstyle.stylize(content, style, cfg.replace(tile=0))
    seen, said = [], []
    tiled = jaxstyle.stylize(content, style, cfg.replace(tile=32, chunk=3), callback=seen.append, log=said.append)
    assert said == [seen[0].tiling] == [f"streamed: {W}x{H} in 6 bands of 32 rows (exact)"]
    # W2's gradient passes through an eigendecomposition whose float32 rounding depends on the
    # summation order (1e-5 relative between streamed and whole, test_bands): a looser bound.
    assert float(np.abs(tiled.image - whole.image).mean()) < (1e-5 if style_loss == "gram" else 1e-4)
    assert abs(tiled.terms["total"] - whole.terms["total"]) < 1e-4 * whole.terms["total"]
    np.testing.assert_allclose(tiled.history, whole.history, rtol=1e-4)


def test_line_searches_refuse_to_run_tiled():
    with pytest.raises(JaxstyleError, match="linesearch none"):
        jaxstyle.stylize(smooth_image(40, 40), stripes(40, 40), StyleConfig(size=40, steps=1, tile=16, linesearch="zoom"))


def test_automatic_scales_spend_most_steps_coarse():
    assert StyleConfig(size=4096).schedule() == [(512, 300), (1024, 100), (2048, 33), (4096, 11)]
    assert StyleConfig(size=1024).schedule() == [(1024, 300)]
    assert StyleConfig(size=1500, steps=30).schedule() == [(750, 30), (1500, 10)]
    assert StyleConfig(size=4096, scales=1).schedule() == [(4096, 300)]


MEASURE = """
import json, resource, sys
import jax, jax.numpy as jnp
from jaxstyle import StyleConfig, load_bundled
from jaxstyle.run import problem
from jaxstyle.evaluate import tiling
size = int(sys.argv[1])
# Shallow layers keep the test quick; what grows with the image is the same for any layers.
cfg = StyleConfig(size=size, style_layers=("relu1_1", "relu2_1"), content_layers=("relu3_1",))
h, w = size * 3 // 4, size
content = jnp.linspace(0, 1, h * w * 3, dtype=jnp.float32).reshape(h, w, 3)
style = jnp.flip(content[: h // 2, : w // 2], 0)
plan = tiling.make_plan(h, w, 128, problem.objective_spec(cfg).layers)
data = problem.make_problem(load_bundled(), content, [style], cfg, plan)
value, grad = tiling.value_and_grad(0.9 * content, data, plan)
jax.block_until_ready(grad)
print(json.dumps({"rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "pixels": h * w,
                  "crop": plan.crop, "tiles": len(plan.tiles)}))
"""


def test_tiled_memory_does_not_grow_with_the_image():
    runs = [json.loads(subprocess.run([sys.executable, "-c", MEASURE, str(size)], capture_output=True, text=True,
                                      check=True).stdout.strip().splitlines()[-1]) for size in (512, 1024)]
    small, large = runs
    assert small["crop"] == large["crop"] and large["tiles"] > small["tiles"]
    extra_pixels = large["pixels"] - small["pixels"]
    # Untiled, about 1.5 KB per extra pixel for these layers (0.9 GB here). Tiled, only image-sized
    # buffers grow: the image and its gradient (12 B/px each), the photo, the start image, the
    # relu3_1 target (256 channels / 16 px = 64 B/px) and transient copies of them: under
    # STATE_BYTES_PER_PIXEL (which also covers the L-BFGS memory), plus 64 MB of allocator slack.
    growth = large["rss"] - small["rss"]
    assert growth < memory.STATE_BYTES_PER_PIXEL["bfloat16"] * extra_pixels + (64 << 20), (growth, extra_pixels)


def test_a_batch_of_jobs_too_large_to_evaluate_whole_runs_each_job_tiled():
    from jaxstyle.run.batch import Job, stylize_batch

    cfg = StyleConfig(size=96, steps=3, optimizer="adam", style_layers=LAYERS_4[:2], content_layers=("relu2_2",),
                      tile=32)
    jobs = [Job(smooth_image(72, 96), (stripes(40, 40),), cfg),
            Job(smooth_image(72, 96, 1.0), (stripes(40, 40),), cfg.replace(style_weight=100.0))]
    seen = []
    results = stylize_batch(jobs, on_result=lambda i, r: seen.append(i))
    assert seen == [0, 1]
    for job, result in zip(jobs, results):
        alone = jaxstyle.stylize(job.content, list(job.styles), job.config)
        np.testing.assert_array_equal(result.image, alone.image)  # the same (tiled) path, job by job
    assert results[1].terms["style"] != results[0].terms["style"]


def test_cli_says_when_it_tiles_and_writes_the_image(tmp_path, capsys):
    from jaxstyle import cli
    from jaxstyle.io import image

    image.save_image(smooth_image(60, 80), tmp_path / "c.png")
    image.save_image(stripes(40, 40), tmp_path / "s.png")
    out = tmp_path / "out.png"
    assert cli.main([str(tmp_path / "c.png"), str(tmp_path / "s.png"), "-o", str(out), "--size", "80", "--steps", "2",
                     "--style-layers", "relu1_1,relu2_1", "--content-layers", "relu2_2", "--tile", "32"]) == 0
    err = capsys.readouterr().err
    layers = ("relu1_1", "relu2_1", "relu2_2")
    assert f"jaxstyle: {bands.make_plan(60, 80, 32, layers).describe()}" in err and "streamed: 80x60 in 3 bands" in err
    assert image.load_image(out).shape == (60, 80, 3)


def test_coarse_scales_whole_then_the_final_scale_tiled(monkeypatch):
    """Automatic multi-scale runs of huge images evaluate the coarse scales whole and the fine ones
    tiled: the image passes from the batched layout to the tiled one between scales."""
    real = transfer.tile_plan

    def only_the_final_scale(shape, config):
        return real(shape, config.replace(tile=32)) if max(shape[:2]) >= 96 else None

    monkeypatch.setattr(transfer, "tile_plan", only_the_final_scale)
    cfg = StyleConfig(size=96, steps=3, scales=2, scale_ratio=2.0, optimizer="adam", style_layers=LAYERS_4[:2],
                      content_layers=("relu2_2",))
    seen = []
    result = jaxstyle.stylize(smooth_image(72, 96), stripes(40, 40), cfg, callback=lambda p: seen.append(p.tiling))
    assert result.image.shape == (72, 96, 3) and len(result.history) == 6 and np.isfinite(result.terms["total"])
    assert seen[0] == "" and seen[-1].startswith("streamed")
