"""The streamed evaluation (jaxstyle.bands) is exact, its memory does not grow with the image's height,
and the planner picks it, keeping block 4's outputs when the budget allows."""

import json
import subprocess
import sys

import jax.numpy as jnp
import pytest

from jaxstyle import StyleConfig
from jaxstyle.evaluate import bands, memory, planner, tiling
from jaxstyle.optim import lbfgs

from .conftest import smooth_image
from .test_tiling import H, LAYERS_4, W, assert_matches_untiled, problem, relative, untiled

DEFAULT_LAYERS = StyleConfig().style_layers + StyleConfig().content_layers


def test_each_layer_lags_by_its_convolutions_and_odd_poolings():
    # Each 3x3 conv without vertical padding delays its output one row of its own map; a pooling
    # halves the delay, rounding up (an odd delay carries one row): relu1_1: 1; relu1_2: 2 -> pool1: 1;
    # relu2_2: 3 -> pool2: 2; relu3_4: 6 -> pool3: 3; relu4_2: 5; relu4_4: 7 -> pool4: 4; relu5_1: 5.
    steps = {step.name: step for step in bands.schedule(DEFAULT_LAYERS)}
    assert [(steps[n].level, steps[n].delay) for n in ("relu1_1", "pool1", "pool2", "pool3", "relu4_2", "pool4", "relu5_1")] \
        == [(0, 1), (1, 1), (2, 2), (3, 3), (3, 5), (4, 4), (4, 5)]
    assert steps["pool1"].carry == 0 and steps["pool2"].carry == 1 and steps["conv3_1"].carry == 2
    assert list(steps)[-1] == "relu5_1"  # nothing deeper than the deepest layer read


def test_the_plan_flushes_every_row_with_the_shortest_bands():
    plan = bands.make_plan(768, 1024, 200, DEFAULT_LAYERS)
    # relu5_1 delivers its 48 rows 5 rows (80 px) late: 768 + 80 = 848 image rows at least; 5 bands of
    # 192 would do, and no multiple of 16 below 176 does it in 5.
    assert (plan.band, plan.bands) == (176, 5) and plan.band * plan.bands >= 768 + 80
    assert bands.make_plan(768, 1024, 200, DEFAULT_LAYERS, keep=bands.KEEP).keep == bands.KEEP
    assert bands.make_plan(171, 203, 32, LAYERS_4, keep=bands.KEEP).keep == ("conv4_1",)  # only what is computed


# Block 4 recomputed in the backward pass, or kept from the forward one: both with max pooling; the
# pooling's carry does not depend on what a band keeps, nor do W2's statistics, so one each.
@pytest.mark.parametrize("kind, pooling, keeps", [("gram", "max", ((), bands.KEEP)), ("gram", "avg", ((),)),
                                                  ("wasserstein", "avg", (bands.KEEP,))],
                         ids=["gram-max", "gram-avg", "wasserstein-avg"])
def test_streamed_loss_and_gradient_equal_untiled(weights, kind, pooling, keeps):
    # Two paintings, blended: W2 takes one eigendecomposition per painting and layer, in a loop (a
    # batched one hung XLA:CPU, see losses.eigh).
    data = problem(weights, kind, pooling, LAYERS_4 + ("relu5_1",), content_layers=("relu4_2",))
    x = jnp.asarray(smooth_image(H, W, 0.5))
    expected = untiled(x, data)
    for keep in keeps:
        plan = bands.make_plan(H, W, 32, data.spec.layers, keep)
        assert plan.bands >= 5
        assert_matches_untiled(x, data, plan, expected, 1e-5)


def test_too_few_bands_to_flush_the_delayed_rows_is_visibly_wrong(weights):
    data = problem(weights, "gram", "max", LAYERS_4)
    x = jnp.asarray(smooth_image(H, W, 0.5))
    value, grad = untiled(x, data)
    plan = bands.make_plan(H, W, 32, data.spec.layers)
    short = bands.BandPlan(plan.height, plan.width, plan.band, plan.bands - 1)  # the last rows never arrive
    _, short_grad = bands.value_and_grad(x, data, short)
    assert relative(short_grad, grad) > 1e-2


def test_the_planner_streams_when_it_can_and_keeps_block_4_when_that_fits():
    layers = DEFAULT_LAYERS
    assert planner.choose_plan(384, 512, layers, max_memory=4 << 30, streamable=True) is None  # fits whole
    plan = lambda rows, keep: bands.make_plan(3072, 4096, rows, layers, keep)
    # The most rows of BAND_CHOICES that fit keeping block 4 (bands of KEEP_MIN_ROWS or more), else without.
    roomy = planner.choose_plan(3072, 4096, layers, max_memory=memory.banded_bytes(plan(256, bands.KEEP)),
                               streamable=True)
    assert isinstance(roomy, bands.BandPlan) and (roomy.band, roomy.bands, roomy.keep) == (
        plan(256, bands.KEEP).band, plan(256, bands.KEEP).bands, bands.KEEP)
    # Memory is convex in the band's rows: its activations grow with them, the carries (a few rows per
    # band, kept for the backward pass) with the number of bands.
    assert memory.banded_bytes(plan(16, bands.KEEP)) > memory.banded_bytes(plan(64, bands.KEEP))
    keeping = [rows for rows in memory.BAND_CHOICES if rows >= memory.KEEP_MIN_ROWS]
    budget = min(memory.banded_bytes(plan(rows, bands.KEEP)) for rows in keeping) - 1  # no band keeps
    tight = planner.choose_plan(3072, 4096, layers, max_memory=budget, streamable=True)
    assert isinstance(tight, bands.BandPlan) and tight.keep == () and memory.banded_bytes(tight) <= budget
    larger = [rows for rows in memory.BAND_CHOICES if rows > tight.band]
    assert larger and all(memory.banded_bytes(plan(rows, ())) > budget for rows in larger)
    assert memory.banded_bytes(plan(tight.band, ())) == memory.banded_bytes(tight)
    # The documented estimate: base + one band's activations + the carries + image-sized state.
    assert memory.banded_bytes(roomy) == (memory.BASE_BYTES + memory.BAND_BYTES_PER_PIXEL * roomy.band * 4096
                                          + memory.CARRY_BYTES_PER_COLUMN * roomy.bands * 4096
                                          + (memory.STATE_BYTES_PER_PIXEL["bfloat16"] + memory.KEEP_BYTES_PER_PIXEL) * 3072 * 4096)
    # A float32 L-BFGS memory (--lbfgs-history float32) needs 132 B/px more: at roomy's budget the
    # planner then takes fewer rows or keeps nothing.
    f32_memory = lbfgs.Memory(10, "float32")
    assert memory.banded_bytes(roomy, f32_memory) - memory.banded_bytes(roomy) == 132 * 3072 * 4096
    f32 = planner.choose_plan(3072, 4096, layers, max_memory=memory.banded_bytes(roomy), streamable=True,
                             planned=f32_memory)
    assert (f32.band, f32.keep) != (roomy.band, roomy.keep) and memory.banded_bytes(f32, f32_memory) <= memory.banded_bytes(roomy)
    # 50 pairs (--lbfgs-memory 50) hold 40 x 2 images more, in bfloat16: 40 x 2 x 3 x 2 = 480 B/px.
    assert memory.banded_bytes(roomy, lbfgs.Memory(50, "bfloat16")) - memory.banded_bytes(roomy) == 480 * 3072 * 4096
    # Wider than a band of 16 rows can hold: crops with halos, whose memory does not grow at all.
    wide = planner.choose_plan(2000, 60000, layers, max_memory=memory.BASE_BYTES + memory.STATE_BYTES_PER_PIXEL["bfloat16"] * 2000 * 60000
                              + (2 << 30),
                              streamable=True)
    assert isinstance(wide, tiling.TilePlan)
    assert isinstance(planner.choose_plan(3072, 4096, layers, max_memory=8 << 30), tiling.TilePlan)  # MRF: not streamable
    forced = planner.choose_plan(300, 400, layers, tile=64, streamable=True)
    assert isinstance(forced, bands.BandPlan) and forced.band <= 64 and forced.tile == 64
    # a forced size beyond the image is the image's side (a 20-digit one once spun in band planning)
    huge = planner.choose_plan(300, 400, layers, tile=10**20, streamable=True)
    assert isinstance(huge, bands.BandPlan) and huge.band <= 400 and huge.tile == 400


MEASURE = """
import json, resource, sys
import jax, jax.numpy as jnp
from jaxstyle import StyleConfig, load_bundled
from jaxstyle.evaluate import bands
from jaxstyle.run import problem
h, w = int(sys.argv[1]), 384
cfg = StyleConfig(size=max(h, w), style_layers=("relu1_1", "relu2_1"), content_layers=("relu3_1",))
content = jnp.linspace(0, 1, h * w * 3, dtype=jnp.float32).reshape(h, w, 3)
style = jnp.flip(content[:192, :192], 0)
plan = bands.make_plan(h, w, 64, problem.objective_spec(cfg).layers)
data = problem.make_problem(load_bundled(), content, [style], cfg, plan)
value, grad = bands.value_and_grad(0.9 * content, data, plan)
jax.block_until_ready(grad)
print(json.dumps({"rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "pixels": h * w,
                  "band": plan.band, "bands": plan.bands}))
"""


def test_streamed_memory_does_not_grow_with_the_height():
    runs = [json.loads(subprocess.run([sys.executable, "-c", MEASURE, str(h)], capture_output=True, text=True,
                                      check=True).stdout.strip().splitlines()[-1]) for h in (384, 1536)]
    short, tall = runs
    assert short["band"] <= 64 and tall["band"] <= 64 and tall["bands"] > 3 * short["bands"]
    # Untiled, about 1.5 KB per extra pixel for these layers. Streamed, only image-sized buffers grow
    # (the image, its gradient, the photo, the relu3_1 target, the carries: under
    # STATE_BYTES_PER_PIXEL), plus 64 MB of allocator slack.
    growth = tall["rss"] - short["rss"]
    extra = tall["pixels"] - short["pixels"]
    assert growth < memory.STATE_BYTES_PER_PIXEL["bfloat16"] * extra + (64 << 20), (growth, extra)
