"""The feed-forward network (jaxstyle.net): training lowers the loss, apply is the training forward,
banded apply is exact, a killed training resumes to the same network, bad files and folders are one line."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxstyle import net
from jaxstyle.cli import main
from jaxstyle.examples import CONTENT, STYLE
from jaxstyle.net import bands, data, store, transformer

TINY = dict(crop=64, batch=2, width=8, preview_size=64, checkpoint_every=0, preview_every=0)


def photos(folder: Path, n: int = 5, seed: int = 0) -> Path:
    """``n`` smooth random photos, 96x72 px (low-resolution noise, bicubic-upscaled)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        small = (rng.uniform(size=(6, 8, 3)) * 255).astype(np.uint8)
        Image.fromarray(small).resize((96, 72), Image.BICUBIC).save(folder / f"photo{i}.png")
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A width-8 network trained for 40 steps at 64 px, and its loss at every step."""
    root = tmp_path_factory.mktemp("trained")
    seen = []
    config = net.TrainConfig(steps=40, learning_rate=3e-3, **TINY)
    network = net.train(STYLE, photos(root / "photos"), root / "net.safetensors", config, preview=CONTENT,
                        progress=seen.append)
    return root, network, seen


def test_training_halves_the_loss_and_writes_its_files(trained):
    root, network, seen = trained
    losses = [p.loss for p in seen]
    assert [p.step for p in seen] == list(range(1, 41))
    # the mean of the last five steps at most half the first step's loss (random network: ~6.9)
    assert np.mean(losses[-5:]) <= 0.5 * losses[0], losses
    assert network.width == 8 and network.training["steps"] == 40 and network.training["photos"] == 5
    loaded = net.load(root / "net.safetensors")
    assert jax.tree.all(jax.tree.map(np.array_equal, loaded.params, network.params))
    assert loaded.header["architecture"] == "johnson2016" and loaded.header["width"] == 8
    assert len(loaded.training["style_sha256"][0]) == 64
    curve = (root / "net.losses.csv").read_text().splitlines()
    assert curve[0] == "step,total,content,style,tv" and len(curve) == 41
    assert float(curve[-1].split(",")[1]) == pytest.approx(losses[-1], rel=1e-5)
    assert Image.open(root / "net.losses.png").size == (640, 400)
    assert Image.open(root / "net.preview.png").size == (64, 43)  # the bundled photo, long side 64
    assert not (root / "net.safetensors.checkpoint").exists()  # removed once the network is written


def test_apply_is_deterministic_and_the_training_forward(trained):
    _, network, _ = trained
    photo = np.asarray(Image.open(CONTENT).convert("RGB").resize((64, 44)), np.float32) / 255  # 44: not /4
    a, b = net.apply(network, photo), net.apply(network, photo)
    assert a.shape == photo.shape and np.array_equal(a, b)
    # the training step's forward: jitted, on a batch (here the photo and its mirror image), float rounding apart
    batch = jnp.stack([bands.padded(photo), bands.padded(photo)[:, ::-1]])
    forward = jax.jit(transformer.forward)(network.params, batch)[0, :44]
    np.testing.assert_allclose(a, np.asarray(forward), atol=1e-5)
    assert float(np.std(a - photo)) > 0.02  # it changed the photo


def test_banded_apply_equals_whole_and_the_halo_is_needed(monkeypatch):
    params = transformer.init(jax.random.key(1), 4)
    image = np.random.default_rng(0).uniform(size=(301, 40, 3)).astype(np.float32)
    whole = bands.whole(params, image)
    banded = bands.apply_banded(params, image, rows=16)  # 19 bands, each read with 64 rows of halo
    assert len(bands.plan(304, 16)) == 19
    np.testing.assert_allclose(banded, whole, atol=2e-6)
    monkeypatch.setattr(bands, "RECEPTIVE_RADIUS", 32)  # less than the network's 57 rows: wrong
    assert np.abs(bands.apply_banded(params, image, rows=16) - whole).max() > 1e-3


def test_fast_forms_are_the_plain_network():
    """Blocks, sub-pixel upsampling, summed taps and row chunks compute the plain convolutions' function:
    the same outputs and parameter gradients as pad-then-convolve, layer by layer as written."""
    params = transformer.init(jax.random.key(3), 4)
    x = jax.random.uniform(jax.random.key(4), (2, 36, 44, 3))
    plain = transformer.forward(params, x, fast=False)
    np.testing.assert_allclose(transformer.forward(params, x), plain, atol=1e-5)
    # chunks of 40 positions: several per layer, a ragged last one (inference's form)
    np.testing.assert_allclose(transformer.forward(params, x, chunk=40), plain, atol=1e-5)

    def loss(p, fast):
        return jnp.sum(jnp.square(transformer.forward(p, x, fast=fast) - 0.5))

    fast, plain = jax.grad(loss)(params, True), jax.grad(loss)(params, False)
    for name, g in store.flatten(fast).items():
        np.testing.assert_allclose(g, store.flatten(plain)[name], rtol=1e-3, atol=1e-4, err_msg=name)


def test_receptive_radius_bounds_the_network():
    """Which input rows one output row depends on (stats fixed): at most RECEPTIVE_RADIUS each side."""
    params = transformer.init(jax.random.key(0), 4)
    x = jax.random.uniform(jax.random.key(2), (1, 256, 8, 3))
    stats = []
    for k in range(len(transformer.NORMS)):
        y = transformer.forward(params, x, stats, upto=k)[0]
        stats.append(jnp.stack([y.mean((0, 1)), y.var((0, 1))]))
    reach = []
    for row in (128, 129, 130, 131):
        grad = jax.grad(lambda x: transformer.forward(params, x, stats)[0, row].sum())(x)[0]
        rows = np.nonzero(np.abs(np.asarray(grad)).sum((1, 2)))[0]
        reach += [row - rows.min(), rows.max() - row]
    assert 50 <= max(reach) <= transformer.RECEPTIVE_RADIUS, reach  # 57 measured


def test_apply_bands_when_memory_is_short(trained):
    _, network, _ = trained
    photo = np.random.default_rng(1).uniform(size=(400, 64, 3)).astype(np.float32)
    budget = bands.whole_bytes(photo.shape, 8) / 2 / 2**30  # half of what the whole photo needs
    from jaxstyle.net.inference import band_rows

    assert band_rows(photo.shape, 8, budget * 2**30) is not None
    np.testing.assert_allclose(net.apply(network, photo, max_memory=budget), net.apply(network, photo), atol=2e-6)


def test_two_networks_train_as_one_program(tmp_path, trained):
    """train_many: two style weights in one vmapped program. Each network's training is its own: the
    first ends the same whatever its partner, and starts at the loss it has when trained alone
    (the runs then part by float rounding, which Adam's normalised first steps amplify)."""
    root = trained[0]
    config = net.TrainConfig(steps=3, learning_rate=3e-3, **TINY)
    alone = []
    net.train(STYLE, root / "photos", tmp_path / "alone.safetensors", config, preview=CONTENT,
              progress=lambda p: alone.append(p.loss))
    runs = {}
    for partner in (100.0, 1000.0):
        seen = []
        variants = [net.Variant((STYLE,), config.style, tmp_path / f"a{partner}.safetensors"),
                    net.Variant((STYLE,), config.style.replace(style_weight=partner), tmp_path / f"b{partner}.safetensors")]
        runs[partner] = (net.train_many(variants, root / "photos", config, preview=CONTENT, progress=seen.append), seen)
    (a1, b1), seen = runs[100.0]
    (a2, b2), _ = runs[1000.0]
    assert jax.tree.all(jax.tree.map(np.array_equal, a1.params, a2.params))
    assert seen[0].loss == pytest.approx(alone[0], rel=1e-6)
    assert b1.training["style"]["style_weight"] == 100.0 and net.load(tmp_path / "b100.0.safetensors").width == 8
    photo = np.asarray(Image.open(CONTENT).convert("RGB").resize((64, 44)), np.float32) / 255
    assert np.abs(net.apply(b1, photo) - net.apply(a1, photo)).max() > 1e-3


def _cli(*args, cwd=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jaxstyle", *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _checkpoint_step(path: Path) -> int:
    try:
        return store.read(path, "checkpoint")[1]["step"]
    except Exception:  # noqa: BLE001: absent, or being replaced
        return 0


def test_killed_training_resumes_to_the_same_network(tmp_path):
    folder = photos(tmp_path / "photos", 4, seed=3)
    common = [STYLE, "--photos", folder, "--crop", 64, "--batch", 2, "--width", 8, "--steps", 16,
              "--checkpoint-every", 3, "--preview-size", 64, "--quiet"]
    whole = _cli("train", *common, "-o", tmp_path / "whole.safetensors")
    assert whole.wait(timeout=600) == 0, whole.stderr.read()
    out = tmp_path / "net.safetensors"
    ckpt = tmp_path / "net.safetensors.checkpoint"
    for signum, after in ((signal.SIGKILL, 3), (signal.SIGINT, 9)):
        proc = _cli("train", *common, "-o", out)
        deadline = time.time() + 300
        while _checkpoint_step(ckpt) < after and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read()  # stopped before the end
        proc.send_signal(signum)
        code = proc.wait(timeout=60)
        if signum == signal.SIGINT:
            assert code == 130 and "checkpoint at step" in proc.stderr.read()
        assert not out.exists() and 0 < _checkpoint_step(ckpt) < 16
    at = common.index("--steps") + 1
    short = _cli("train", *common[:at], 4, *common[at + 1:], "-o", out)  # --steps 4: behind the checkpoint
    assert short.wait(timeout=120) == 2 and "past --steps 4" in short.stderr.read()
    last = _cli("train", *common, "-o", out)
    assert last.wait(timeout=600) == 0, last.stderr.read()
    a, b = net.load(out), net.load(tmp_path / "whole.safetensors")
    assert jax.tree.all(jax.tree.map(np.array_equal, a.params, b.params))
    assert (tmp_path / "net.losses.csv").read_text() == (tmp_path / "whole.losses.csv").read_text()


def _one_line(capsys, *argv) -> str:
    assert main([str(a) for a in argv], handle_signals=False) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("jaxstyle: error: ") and "Traceback" not in err, err
    return err


def test_bad_networks_and_folders_are_one_line(tmp_path, capsys, trained):
    root, network, _ = trained
    good = root / "net.safetensors"
    tensors, header = store.read(good)
    store.write(tmp_path / "wide.safetensors", tensors, {**header, "width": 16})
    store.write(tmp_path / "other.safetensors", tensors, {**header, "architecture": "resnet"})
    (tmp_path / "cut.safetensors").write_bytes(good.read_bytes()[:3000])
    import pickle
    (tmp_path / "pickle.safetensors").write_bytes(pickle.dumps(network.params))
    out = tmp_path / "out.png"
    for name, words in (("wide", "width 16"), ("other", "'resnet'"), ("cut", "truncated"), ("pickle", "pickle"),
                        ("missing", "does not exist")):
        assert words in _one_line(capsys, "apply", tmp_path / f"{name}.safetensors", CONTENT, "-o", out)
        assert not out.exists()
    empty, textonly = tmp_path / "empty", tmp_path / "text"
    empty.mkdir()
    textonly.mkdir()
    (textonly / "notes.txt").write_text("not a photo")
    (textonly / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    Image.new("RGB", (20, 20)).save(textonly / "tiny.png")
    net_out = tmp_path / "n.safetensors"
    base = ("train", STYLE, "-o", net_out, "--crop", 64, "--steps", 2, "--width", 8)
    assert "no files" in _one_line(capsys, *base, "--photos", empty)
    assert "3 file(s), 2 unreadable, 1 smaller than 32 px" in _one_line(capsys, *base, "--photos", textonly)
    assert "does not exist" in _one_line(capsys, *base, "--photos", tmp_path / "nowhere")
    assert ".safetensors" in _one_line(capsys, "train", STYLE, "-o", tmp_path / "n.png", "--photos", root / "photos")
    assert "histogram" in _one_line(capsys, *base, "--photos", root / "photos", "--color", "histogram")
    assert not net_out.exists() and not (tmp_path / "n.safetensors.checkpoint").exists()
    # a checkpoint of another training is refused, not mixed in
    store.write(Path(str(net_out) + ".checkpoint"), {"history": np.zeros((1, 1, 4), np.float32)},
                {"kind": "checkpoint", "key": "someone-else", "step": 1})
    assert "another training" in _one_line(capsys, *base, "--photos", root / "photos")
    assert not net_out.exists()


def test_photo_folder_counts_what_it_skips(tmp_path):
    folder = photos(tmp_path / "p", 2)
    (folder / "sub").mkdir()
    Image.new("RGB", (100, 80), "red").save(folder / "sub" / "deep.jpg")
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    Image.new("RGB", (10, 10)).save(folder / "small.png")
    (folder / ".hidden.png").write_bytes(b"")
    found = data.scan(folder, 64)
    assert [p.name for p in found.paths] == ["photo0.png", "photo1.png", "deep.jpg"]
    assert found.skipped == {"unreadable": 1, "tiny": 1}
    a = data.batch(found, 7, 3, 64, seed=5)
    assert a.shape == (3, 64, 64, 3) and np.array_equal(a, data.batch(found, 7, 3, 64, seed=5))
    assert not np.array_equal(a, data.batch(found, 8, 3, 64, seed=5))
    feed = data.Prefetch(found, 2, 5, 3, 64, seed=5)
    got = list(feed)
    assert [s for s, _ in got] == [2, 3, 4] and np.array_equal(got[0][1], data.batch(found, 2, 3, 64, seed=5))


def test_video_with_a_network(tmp_path, trained):
    pytest.importorskip("av")
    root, network, _ = trained
    from jaxstyle.examples import moving_square
    from jaxstyle.io.image import load_image, save_image
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    for i, frame in enumerate(moving_square(3)[0]):
        save_image(frame, frames_dir / f"f{i}.png")
    out = tmp_path / "out"
    assert main(["video", "--net", str(root / "net.safetensors"), str(frames_dir), "-o", str(out), "--size", "128",
                 "--quiet"], handle_signals=False) == 0
    for i in range(3):
        expected = net.apply(network, load_image(frames_dir / f"f{i}.png", 128))
        np.testing.assert_allclose(load_image(out / f"frame_{i:06d}.png"), expected, atol=1 / 255 + 1e-6)
