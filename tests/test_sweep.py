"""Sweeps: batched = sequential, sharded over 4 host devices, kill -9 and resume, spec errors."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxstyle
from jaxstyle import StyleConfig, cli
from jaxstyle.io import image
from jaxstyle.run.batch import Job, stylize_batch
from jaxstyle.run.sweep import MANIFEST, expand, load_spec, run_sweep

from .conftest import smooth_image, stripes, write_sweep_images

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def images(tmp_path):
    return write_sweep_images(tmp_path)


def write_spec(folder, text, name="spec.toml"):
    (folder / name).write_text(text)
    return folder / name


SPEC = """
[base]
size = 44
steps = {steps}
init = "noise"
[grid]
content = ["c.png"]
style = ["s.png", ["s.png", "s2.png"]]
style_weight = [1.0, 10.0]
[zip]
seed = [0, 1]
content_weight = [1.0, 0.5]
"""


def test_batched_runs_match_sequential_runs():
    c, s = smooth_image(33, 44), stripes(40, 40)
    cfg = jaxstyle.StyleConfig(size=44, steps=6, init="noise")
    configs = [cfg.replace(style_weight=w, seed=k, lr=lr) for w, k, lr in [(1.0, 0, 1.0), (10.0, 1, 0.5), (3.0, 2, 1.0)]]
    batched = stylize_batch([Job(c, (s,), k) for k in configs])
    for r, k in zip(batched, configs):
        seq = jaxstyle.stylize(c, s, k)
        # Tolerance: a batch of three and a batch of one sum convolutions in a different order, and
        # L-BFGS amplifies the rounding (measured on the third job: at most 0.02 at one pixel, mean
        # 1.4e-3); the losses agree to 1e-3 all along.
        np.testing.assert_allclose(r.history, seq.history, rtol=1e-3)
        assert np.abs(r.image - seq.image).mean() < 5e-3 and np.abs(r.image - seq.image).max() < 0.05


def test_a_batch_stops_once_every_job_has_settled():
    from jaxstyle.run.transfer import settled

    c, s = smooth_image(33, 44), stripes(40, 40)
    cfg = jaxstyle.StyleConfig(size=44, steps=200, chunk=5, tolerance=0.2)
    results = stylize_batch([Job(c, (s,), cfg.replace(style_weight=w)) for w in (1.0, 30.0)])
    n = len(results[0].history)
    assert len(results[1].history) == n < 200 and [r.evaluations for r in results] == [n, n]
    together = np.stack([r.history for r in results], 1)
    assert settled(list(together), 0.2) and not settled(list(together[:-5]), 0.2)
    assert results[0].terms != results[1].terms


def test_a_group_in_two_batches_compiles_each_program_once(caplog):
    """Per-job options (chunk, colour, seed, weights of the loss) do not split a group, and a group
    run as two batches compiles every program once: the batches have one shape (the second is
    padded) and every jitted function is defined once, at module level."""
    import collections

    from jaxstyle.run.batch import group_jobs

    c, s = smooth_image(33, 44), stripes(40, 40)
    cfg = jaxstyle.StyleConfig(size=44, steps=3, init="noise", style_layers=("relu1_1", "relu2_1"),
                               content_layers=("relu2_2",))
    configs = [cfg, cfg.replace(chunk=1, seed=1), cfg.replace(color="luminance", style_weight=3.0)]
    jobs = [Job(c, (s,), k) for k in configs]
    assert group_jobs(jobs) == [[0, 1, 2]]
    mark = lambda i, result: logging.getLogger("jax").warning("finished job %d", i)
    with jax.log_compiles(True), caplog.at_level(logging.WARNING, logger="jax"):
        caplog.clear()
        results = stylize_batch(jobs, batch_size=2, on_result=mark)
    messages = [r.getMessage() for r in caplog.records]
    second_batch = messages[messages.index("finished job 1") + 1:]
    assert "finished job 2" in second_batch and not [m for m in second_batch if m.startswith("Compiling")]
    compiled = collections.Counter(m.split(" with ")[0] for m in messages if m.startswith("Compiling"))
    assert compiled["Compiling jit(step)"] == 1 and compiled["Compiling jit(_batched_terms)"] == 1, compiled
    assert {r.timings["batch_size"] for r in results} == {2}
    alone = jaxstyle.stylize(c, s, configs[2])
    np.testing.assert_allclose(results[2].image, alone.image, atol=1e-4)  # the padded batch's real job


def test_sweep_compiles_once_per_group_and_writes_everything(images, caplog):
    spec = write_spec(images, SPEC.format(steps=3))
    with jax.log_compiles(True), caplog.at_level(logging.WARNING, logger="jax"):
        counts = run_sweep(spec, images / "out", batch_size=8)
    steps_compiled = [r for r in caplog.records if r.getMessage().startswith("Compiling jit(step)")]
    # Two groups (one style; a two-style blend), all 4 jobs of each in one batch: one compilation each.
    assert counts == {"total": 8, "skipped": 0, "done": 8, "failed": 0, "groups": 2}
    assert len(steps_compiled) == 2
    entries = [json.loads(line) for line in (images / "out" / MANIFEST).read_text().splitlines()]
    assert len(entries) == 8 and all(e["status"] == "ok" for e in entries)
    assert all(e["weights_sha256"] == jaxstyle.model.weights.BUNDLED_SHA256 for e in entries)
    assert {e["batch_size"] for e in entries} == {4}
    sheet = image.load_image(images / "out" / "contact_sheet.png")
    assert sheet.shape[0] > 4 * 100  # four labelled rows of results
    again = run_sweep(spec, images / "out")
    assert again["skipped"] == 8 and again["done"] == 0


def test_sharded_over_four_host_devices_matches_one_device(images):
    spec = write_spec(images, SPEC.format(steps=3))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "jaxstyle", "sweep", str(spec), "-o", str(images / "four"),
                           "--batch", "4", "--quiet"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    run_sweep(spec, images / "one", batch_size=4)
    four = {json.loads(l)["id"]: json.loads(l) for l in (images / "four" / MANIFEST).read_text().splitlines()}
    one = {json.loads(l)["id"]: json.loads(l) for l in (images / "one" / MANIFEST).read_text().splitlines()}
    assert set(four) == set(one) and len(four) == 8
    assert {e["devices"] for e in four.values()} == {4} and {e["devices"] for e in one.values()} == {1}
    for job_id in four:
        a = image.load_image(images / "four" / four[job_id]["image"])
        b = image.load_image(images / "one" / one[job_id]["image"])
        np.testing.assert_allclose(a, b, atol=2 / 255)  # 8-bit files; sharded sums may round differently


def test_kill_minus_9_then_resume_loses_and_repeats_nothing(images):
    spec = write_spec(images, SPEC.format(steps=15))
    out = images / "out"
    proc = subprocess.Popen([sys.executable, "-m", "jaxstyle", "sweep", str(spec), "-o", str(out), "--batch", "1", "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / MANIFEST
    deadline = time.time() + 300
    while time.time() < deadline:
        if manifest.is_file() and len(manifest.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {json.loads(l)["id"]: json.loads(l) for l in manifest.read_text().splitlines() if l.endswith("}")}
    assert 2 <= len(before) < 8, "the kill should land mid-sweep"
    mtimes = {i: (out / e["image"]).stat().st_mtime_ns for i, e in before.items()}
    counts = run_sweep(spec, out, batch_size=1)
    assert counts["skipped"] == len(before) and counts["done"] == 8 - len(before)
    lines = [json.loads(l) for l in manifest.read_text().splitlines() if l.endswith("}")]
    assert sorted(e["id"] for e in lines) == sorted({e["id"] for e in lines})  # nothing recomputed
    assert all((out / e["image"]).stat().st_mtime_ns == mtimes[i] for i, e in before.items())
    for e in lines:
        assert image.load_image(out / e["image"]).shape == (33, 44, 3)  # every file complete
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("[base]\nsize = 44\ncolour = 'x'\n[grid]\ncontent=['c.png']\nstyle=['s.png']", "unknown key 'colour' in [base]"),
        ("[grid]\ncontent=['c.png', 'gone.png']\nstyle=['s.png']", "content image 'gone.png' does not exist"),
        ("[base]\nsize = 44\n[grid]\ncontent=['c.png']\nstyle=['s.png']\nstyle_weight=[1.0, -2.0]", "style_weight"),
        ("[base]\ncontent='c.png'\nstyle='s.png'\n[zip]\nseed=[1,2]\ntv_weight=[0.1]", "different lengths"),
        ("[base]\ncontent='c.png'\nstyle='s.png'\n[extra]\nx=1", "unknown section [extra]"),
        ("[base\n", "cannot parse sweep spec"),
    ],
)
def test_bad_spec_fails_before_any_work_with_one_line(images, capsys, text, message):
    spec = write_spec(images, text)
    assert cli.main(["sweep", str(spec), "-o", str(images / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaxstyle: error: ") and message in err and "\n" not in err
    assert not (images / "out").exists()


def test_an_unreadable_image_fails_its_job_and_the_sweep_goes_on(images):
    (images / "broken.png").write_text("not a png")
    spec = write_spec(images, "[base]\nsize=44\nsteps=2\nstyle='s.png'\n[grid]\ncontent=['c.png', 'broken.png']\n")
    counts = run_sweep(spec, images / "out")
    assert counts["done"] == 1 and counts["failed"] == 1
    failed = [json.loads(l) for l in (images / "out" / MANIFEST).read_text().splitlines() if '"failed"' in l]
    assert "not an image" in failed[0]["reason"]


def test_json_specs_work_too(images):
    spec = write_spec(images, json.dumps({"base": {"size": 44, "content": "c.png", "style": "s.png"},
                                          "grid": {"seed": [1, 2]}}), "spec.json")
    jobs = expand(load_spec(spec), images)
    assert [j.config.seed for j in jobs] == [1, 2] and jobs[0].id != jobs[1].id


def test_sweeps_over_the_mrf_loss_and_region_masks(images):
    """Style losses and masks are options like any other: a zip over an MRF job and a masked Gram
    job is two compiled groups; masks named relative to the spec are found (JSON null: no mask), and
    every job is recorded with its config."""
    labels = np.zeros((33, 44, 3), np.float32)
    labels[:, 22:] = 1.0
    image.save_image(labels, images / "m.png")
    image.save_image(np.zeros((40, 40, 3), np.float32), images / "black.png")
    image.save_image(np.ones((40, 40, 3), np.float32), images / "white.png")
    spec = write_spec(images, json.dumps({
        "base": {"size": 32, "steps": 2, "content": "c.png", "style": ["s.png", "s2.png"]},
        "zip": {"style_loss": ["mrf", "gram"], "content_mask": [None, "m.png"],
                "style_masks": [None, ["black.png", "white.png"]]},
    }), "spec.json")
    assert run_sweep(spec, images / "out") == {"total": 2, "skipped": 0, "done": 2, "failed": 0, "groups": 2}
    entries = {e["config"]["style_loss"]: e for e in map(json.loads, (images / "out" / MANIFEST).read_text().splitlines())}
    assert entries["mrf"]["config"]["content_mask"] is None
    assert entries["gram"]["config"]["content_mask"] == str(images / "m.png")
    assert all(e["status"] == "ok" and np.isfinite(e["terms"]["style"]) for e in entries.values())


def test_a_batch_the_allocator_refuses_is_retried_smaller(monkeypatch, recwarn):
    """XLA's RESOURCE_EXHAUSTED for a batch of 4: the same jobs run 2 at a time, then 1, each result the
    one it would have had; a single job that does not fit is not retried (the error stands)."""
    from jaxstyle.run import batch as batching

    real_run = batching.run
    sizes = []

    def tight(jobs, **kwargs):
        sizes.append(len(jobs))
        if len(jobs) > 1 and len(sizes) <= 2:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1234 bytes.")
        return real_run(jobs, **kwargs)

    monkeypatch.setattr(batching, "run", tight)
    cfg = StyleConfig(size=32, steps=2, style_layers=("relu1_1",), content_layers=("relu1_1",))
    jobs = [Job(smooth_image(24, 32, k), (stripes(32, 32),), cfg.replace(seed=k)) for k in range(4)]
    results = stylize_batch(jobs, batch_size=4)
    assert sizes[:3] == [4, 2, 1] and len(results) == 4 and all(r is not None for r in results)
    assert any("retrying 2 at a time" in str(w.message) for w in recwarn)
    monkeypatch.setattr(batching, "run", lambda jobs, **kw: (_ for _ in ()).throw(RuntimeError("RESOURCE_EXHAUSTED")))
    with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED"):
        stylize_batch(jobs[:1], batch_size=1)
