"""Video (jaxstyle.video, Ruder et al. 2016): optical flow, warping and the consistency mask on a clip
with known motion; the temporal term in the objective (whole and tiled); flicker measured with and
without it; kill -9 and resume; bad inputs."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle import JaxstyleError, StyleConfig, cli, losses
from jaxstyle.evaluate import bands, objective, tiling
from jaxstyle.io import flow, frames, image
from jaxstyle.run import video
from jaxstyle.examples import moving_square
from jaxstyle.run.problem import Temporal, make_problem

from .conftest import smooth_image, stripes

ROOT = Path(__file__).resolve().parent.parent
STEP = 3  # px the square moves per frame


@pytest.fixture(scope="module")
def clip():
    return moving_square(step=STEP)


def true_backward(shape, corner, square=40) -> np.ndarray:
    """The exact flow from frame t to t-1: the square's pixels came from STEP px to the left."""
    f = np.zeros(shape[:2] + (2,), np.float32)
    top, left = corner
    f[top:top + square, left:left + square, 0] = -STEP
    return f


def true_forward(shape, corner, square=40) -> np.ndarray:
    f = np.zeros(shape[:2] + (2,), np.float32)
    top, left = corner
    f[top:top + square, left:left + square, 0] = STEP
    return f


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_flow_recovers_the_motion_within_a_pixel(clip, method):
    shots, corners = clip
    for t in (2, 5):
        backward = flow.flow(shots[t], shots[t - 1], method)
        top, left = corners[t]
        inside = backward[top + 4:top + 36, left + 4:left + 36]
        assert np.abs(inside - np.asarray([-STEP, 0], np.float32)).max() < 1.0
        still = np.ones(backward.shape[:2], bool)
        still[top - 8:top + 48, left - 12:left + 48] = False
        assert np.percentile(np.abs(backward[still]), 99) < 1.0


def test_warping_by_the_true_flow_gives_the_next_frame_outside_the_disoccluded_band(clip):
    shots, corners = clip
    t = 4
    top, left = corners[t]
    warped = flow.warp(shots[t - 1], true_backward(shots[t].shape, corners[t]))
    error = np.abs(warped - shots[t]).max(axis=-1)
    band = np.zeros(error.shape, bool)
    band[top:top + 40, left - STEP:left] = True  # uncovered by the square's move: frame t-1 shows the square there
    assert error[~band].max() < 1e-5
    assert error[band].mean() > 0.05


def test_consistency_marks_the_disoccluded_band(clip):
    shots, corners = clip
    t = 4
    top, left = corners[t]
    shape = shots[t].shape
    exact = flow.consistency(true_forward(shape, corners[t - 1]), true_backward(shape, corners[t]))
    assert (exact[top:top + 40, left - STEP:left] == 0).all()  # the band
    assert (exact[top + 2:top + 38, left + 2:left + 38] == 1).all()  # the square's inside
    assert (exact[:, :left - STEP - 2] == 1).all() and (exact[:, left + 42:] == 1).all()  # the still ground
    # The estimated flows (DIS) mark the band's neighbourhood and little else.
    for t in range(2, 8):
        top, left = corners[t]
        c = flow.consistency(flow.flow(shots[t - 1], shots[t]), flow.flow(shots[t], shots[t - 1]))
        assert (c[top + 2:top + 38, left - 6:left + 3] == 0).mean() > 0.2
        far = np.ones(c.shape, bool)
        far[top - 6:top + 46, left - 12:left + 48] = False
        assert (c[far] == 0).mean() < 0.05


def test_what_a_pan_brings_in_at_the_edge_is_not_trusted():
    from jaxstyle.examples import pan

    shots = pan(smooth_image(40, 80), 3, 32, 60, step=3)
    backward = np.zeros((32, 60, 2), np.float32)
    backward[..., 0] = 3.0  # frame t's pixel x was at x + 3 in frame t-1
    np.testing.assert_allclose(flow.warp(shots[1], backward)[:, :-3], shots[2][:, :-3], atol=1e-5)
    c = flow.consistency(-backward, backward)
    assert (c[:, -3:] == 0).all() and (c[:, :-3] == 1).all()


def test_the_temporal_term_is_ruders_and_tiles_exactly(weights):
    h, w = 90, 107
    cfg = StyleConfig(size=w, style_layers=("relu1_1", "relu2_1", "relu3_1"), content_layers=("relu3_2",))
    target = smooth_image(h, w, 2.0)
    mask = (np.arange(w)[None, :] < 60).astype(np.float32) * np.ones((h, 1), np.float32)
    temporal = Temporal(target, mask, 50.0)
    data = make_problem(weights, smooth_image(h, w), [stripes(60, 60)], cfg, temporal=temporal)
    plain = make_problem(weights, smooth_image(h, w), [stripes(60, 60)], cfg)
    x = jnp.asarray(smooth_image(h, w, 0.5))
    terms = objective.loss_terms(x, data)
    expected = 50.0 * np.sum(mask[..., None] * (np.asarray(x) - target) ** 2) / x.size
    assert float(terms["temporal"]) == pytest.approx(expected, rel=1e-5)
    assert float(terms["total"]) == pytest.approx(float(objective.total_loss(x, plain)) + expected, rel=1e-5)
    assert float(losses.temporal_loss(jnp.asarray(target), jnp.asarray(target), jnp.asarray(mask))) == 0.0
    value, grad = jax.jit(jax.value_and_grad(objective.total_loss))(x, data)
    for plan in (tiling.make_plan(h, w, 32, data.spec.layers), bands.make_plan(h, w, 32, data.spec.layers)):
        tiled = make_problem(weights, smooth_image(h, w), [stripes(60, 60)], cfg, plan, temporal=temporal)
        tiled_value, tiled_grad = plan.value_and_grad(x, tiled)
        assert abs(float(tiled_value - value)) / float(value) < 1e-5
        assert float(jnp.linalg.norm(tiled_grad - grad) / jnp.linalg.norm(grad)) < 1e-5
    # At a coarser scale the warped frame and the mask are resized with the photo.
    small = make_problem(weights, smooth_image(45, 53), [stripes(60, 60)], cfg, temporal=temporal)
    assert small.temporal["target"].shape == (45, 53, 3) and small.temporal["mask"].shape == (45, 53)


def test_the_temporal_loss_cuts_the_flicker_and_compiles_once(tmp_path, clip, caplog):
    shots, _ = clip
    shots = shots[:5]
    (tmp_path / "in").mkdir()
    for t, shot in enumerate(shots):
        image.save_image(shot, tmp_path / "in" / f"{t:03d}.png")
    image.save_image(stripes(40, 40), tmp_path / "s.png")
    config = StyleConfig(size=64, steps=15)
    results = {}
    with jax.log_compiles(True), caplog.at_level(logging.WARNING, logger="jax"):
        for name, options in (("independent", video.VideoOptions(temporal_weight=0.0, warp_start=False)),
                              ("temporal", video.VideoOptions())):
            summary = video.stylize_video(tmp_path / "in", [str(tmp_path / "s.png")], tmp_path / name, config, options)
            assert summary["done"] == 5 and summary["skipped"] == 0
            results[name] = [image.load_image(tmp_path / name / video.frame_name(t)) for t in range(5)]
    # The temporal weight is traced (0 for the independent frames and every first frame): one program
    # for all ten frames.
    assert len([r for r in caplog.records if r.getMessage().startswith("Compiling jit(step)")]) == 1
    small = [image.resize_exact(s, results["temporal"][0].shape[:2]) for s in shots]
    independent, temporal = flow.flicker(small, results["independent"]), flow.flicker(small, results["temporal"])
    assert temporal * 4 < independent, (temporal, independent)
    # The first frame is a plain image run: the same either way.
    np.testing.assert_allclose(results["temporal"][0], results["independent"][0], atol=2 / 255)


def _run_cli(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "jaxstyle", "video", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_kill_minus_9_then_rerun_does_every_frame_once(tmp_path, clip):
    shots, _ = clip
    frames.write([image.save_image(s, tmp_path / f"in{t}.png") for t, s in enumerate(shots)], tmp_path / "clip.mp4", 12)
    image.save_image(stripes(40, 40), tmp_path / "s.png")
    out = tmp_path / "out.mp4"
    args = [str(tmp_path / "clip.mp4"), str(tmp_path / "s.png"), "-o", str(out), "--size", "48", "--steps", "4",
            "--scales", "2", "--quiet"]
    manifest = tmp_path / "out.mp4.frames" / video.MANIFEST
    first = _run_cli(args)
    deadline = time.time() + 240
    while time.time() < deadline and first.poll() is None:
        if manifest.is_file() and len(manifest.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    assert first.poll() is None, first.communicate()[1]
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    killed_at = len(manifest.read_text().splitlines())
    assert 3 <= killed_at < 8 and not out.exists()
    second = _run_cli(args)
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert f"{8 - killed_at} stylised now, {killed_at} already done" in err
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert sorted(e["frame"] for e in entries) == list(range(8))  # each frame done once
    source = frames.open_source(out)
    assert source.count == 8 and source.fps == pytest.approx(12)
    decoded = [f for _, f in frames.read(source, 48)]
    stored = [image.load_image(tmp_path / "out.mp4.frames" / video.frame_name(t)) for t in range(8)]
    for t, frame in enumerate(decoded):  # in order: each decoded frame is nearest its own stored frame
        errors = [np.abs(frame - s).mean() for s in stored]
        assert int(np.argmin(errors)) == t and errors[t] < 0.08  # H.264 4:2:0 on 48x36 px of brush strokes
    # A third run finds everything done and only assembles the video again.
    third = _run_cli(args)
    _, err = third.communicate(timeout=300)
    assert third.returncode == 0 and "0 stylised now, 8 already done" in err


def _one_line_error(capsys, argv, expect: str) -> str:
    assert cli.main(["video", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and len(err.splitlines()) == 1, err
    return err


def test_bad_inputs_end_with_one_line(tmp_path, capsys, monkeypatch):
    image.save_image(stripes(40, 40), tmp_path / "s.png")
    style = str(tmp_path / "s.png")
    (tmp_path / "text.mp4").write_text("not a video")
    _one_line_error(capsys, [str(tmp_path / "text.mp4"), style, "-o", str(tmp_path / "o.mp4")], "cannot read video")
    av = pytest.importorskip("av")
    with av.open(str(tmp_path / "empty.mp4"), "w") as container:  # sound only: zero video frames
        stream = container.add_stream("aac", rate=44100)
        sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        sound.sample_rate = 44100
        for packet in [*stream.encode(sound), *stream.encode()]:
            container.mux(packet)
    _one_line_error(capsys, [str(tmp_path / "empty.mp4"), style, "-o", str(tmp_path / "o.mp4")], "has no frames")
    (tmp_path / "frames").mkdir()
    for t in range(3):
        image.save_image(smooth_image(24, 32, t), tmp_path / "frames" / f"{t}.png")
    good = [str(tmp_path / "frames"), style]
    _one_line_error(capsys, good + ["-o", str(tmp_path / "o.mp4"), "--frames", "5:9"], "selects no frame")
    _one_line_error(capsys, good + ["-o", str(tmp_path / "o.mp4"), "--frames", "x"], "--frames")
    _one_line_error(capsys, good + ["-o", str(tmp_path / "o.png")], "is an image")
    _one_line_error(capsys, good + ["-o", str(tmp_path / "o.mp4"), "--temporal-weight", "-1"], "--temporal-weight")
    _one_line_error(capsys, good + ["-o", str(tmp_path / "frames")], "is the input folder")
    (tmp_path / "mine").mkdir()
    image.save_image(smooth_image(8, 8), tmp_path / "mine" / video.frame_name(0))  # someone's own file
    _one_line_error(capsys, good + ["-o", str(tmp_path / "mine")], "holds files jaxstyle video did not write")
    _one_line_error(capsys, [str(tmp_path / "missing.mp4"), style, "-o", str(tmp_path / "o.mp4")], "does not exist")
    monkeypatch.setitem(sys.modules, "cv2", None)  # as if the video extra were not installed
    _one_line_error(capsys, good + ["-o", str(tmp_path / "o.mp4")], "pip install 'jaxstyle[video]'")
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "o.mp4.frames").exists()


def test_another_videos_frames_are_refused_not_mixed(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for t in range(2):
        image.save_image(smooth_image(24, 32, t), tmp_path / "in" / f"{t}.png")
    image.save_image(stripes(40, 40), tmp_path / "s.png")
    common = [str(tmp_path / "in"), str(tmp_path / "s.png"), "-o", str(tmp_path / "out"), "--size", "32", "--steps", "2",
              "--quiet"]
    assert cli.main(["video", *common]) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("frame_*.png")) == [video.frame_name(0), video.frame_name(1)]
    assert "2 stylised now" in capsys.readouterr().err
    assert cli.main(["video", *common, "--frames", ":1"]) == 0  # a shorter range: the done frames within it
    assert "(1 frame(s): 0 stylised now, 1 already done" in capsys.readouterr().err
    _one_line_error(capsys, common + ["--style-weight", "3"], "other settings")
    # Fewer iterations for the frames after the first, recorded per frame.
    fewer = common[:3] + [str(tmp_path / "fewer")] + common[4:] + ["--frame-steps", "1"]
    assert cli.main(["video", *fewer]) == 0 and "2 stylised now" in capsys.readouterr().err
    steps = [json.loads(line)["steps"] for line in (tmp_path / "fewer" / video.MANIFEST).read_text().splitlines()]
    assert steps == [2, 1]
    _one_line_error(capsys, fewer + ["--frame-steps", "0"], "--frame-steps")
    with pytest.raises(JaxstyleError, match="other settings"):
        video.finished(tmp_path / "out", "another key", 0)
