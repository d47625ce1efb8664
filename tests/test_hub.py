"""Weight sets beyond the bundled one: a local huggingface_hub cache (no network), naming schemes,
hash checks, refusals and conversion."""

import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from jaxstyle import JaxstyleError
from jaxstyle.model import convert, hub, vgg
from jaxstyle.model import weights as W

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("JAXSTYLE_CACHE", str(tmp_path_factory.mktemp("jaxstyle_cache")))


def synthetic_torchvision(seed=0, dtype=np.float16):
    """VGG-19-shaped random tensors in torchvision naming (OIHW), He-scaled so activations stay O(1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (kh, kw, cin, cout) in W.CONV_SHAPES.items():
        i = W.TORCHVISION_INDEX[name]
        out[f"features.{i}.weight"] = (rng.normal(size=(cout, cin, kh, kw)) * np.sqrt(2 / (9 * cin))).astype(dtype)
        out[f"features.{i}.bias"] = (0.01 * rng.normal(size=cout)).astype(dtype)
    out["head.fc.weight"] = np.zeros((2, 2), dtype)  # classifier tensors exist in real files and are skipped
    return out


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """A huggingface_hub cache holding timm/vgg19.tv_in1k@main, laid out as the hub lays it out."""
    root = tmp_path_factory.mktemp("hf") / "hub"
    repo = root / "models--timm--vgg19.tv_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "blobs").mkdir()
    tensors = synthetic_torchvision()
    save_file(tensors, str(repo / "blobs" / "model"))
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    os.symlink(repo / "blobs" / "model", snap / "model.safetensors")
    return root, tensors


def test_hub_set_loads_from_the_cache_with_torchvision_names_and_preprocessing(hub_cache):
    root, tensors = hub_cache
    weights = hub.load("torchvision", cache_dir=root)
    assert weights.preprocessing is W.TORCHVISION
    # conv1_1 at one pixel, computed in NumPy from the OIHW tensors and torchvision's preprocessing.
    rng = np.random.default_rng(1)
    image = rng.uniform(size=(8, 8, 3)).astype(np.float32)
    x = (image - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    k, b = tensors["features.0.weight"].astype(np.float64), tensors["features.0.bias"].astype(np.float64)
    expected = np.einsum("hwc,ochw->o", x[4:7, 2:5], k) + b  # output pixel (5, 3), zero padding irrelevant
    got = vgg.features(weights.params, weights.preprocessing(jnp.asarray(image)), ["conv1_1"])["conv1_1"][5, 3]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_tampered_cached_file_is_refused_naming_both_hashes(hub_cache, tmp_path):
    root, tensors = hub_cache
    first = hub.load("torchvision", cache_dir=root).sha256  # trust on first use: records the hash
    blob = root / "models--timm--vgg19.tv_in1k" / "blobs" / "model"
    original = blob.read_bytes()
    try:
        data = bytearray(original)
        data[-1] ^= 0xFF
        blob.write_bytes(bytes(data))
        with pytest.raises(JaxstyleError) as e:
            hub.load("torchvision", cache_dir=root)
        message = str(e.value)
        assert f"{first} was recorded on first use for hub:timm/vgg19.tv_in1k@main" in message
        assert f"has SHA-256 {W.sha256_file(blob)}" in message and "jaxstyle weights fetch torchvision --force" in message
    finally:
        blob.write_bytes(original)


def test_offline_and_not_cached_fails_at_once_with_the_fetch_command(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty"), "JAXSTYLE_CACHE": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "jaxstyle", "weights", "verify", "torchvision"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "jaxstyle: error: weights 'torchvision' are not in the local huggingface_hub cache; "
        "fetch it once with `jaxstyle weights fetch torchvision` on a machine with network access")


def test_hf_environment_is_honoured_through_the_real_hub_code_path(hub_cache, tmp_path):
    root, _ = hub_cache
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(root), "JAXSTYLE_CACHE": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "jaxstyle", "weights", "verify", "torchvision"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("torchvision: ok, sha256 ")
    proc = subprocess.run([sys.executable, "-m", "jaxstyle", "weights", "list"], capture_output=True, text=True, env=env, timeout=120)
    assert str(root) in proc.stdout and "not cached" not in proc.stdout


def _save(tmp_path, tensors, name="w.safetensors"):
    path = tmp_path / name
    save_file(tensors, str(path))
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.pop("features.34.weight"), r"lacks features.34.weight \(layer conv5_4\)"),
        (lambda t: t.update({"features.0.weight": np.zeros((64, 3, 5, 5), np.float32)}), r"conv1_1 kernel has shape \(5, 5, 3, 64\)"),
        (lambda t: t.update({"features.2.bias": np.zeros(64, np.int32)}), "conv1_2 bias has dtype int32"),
        (lambda t: [t.pop(k) for k in list(t) if k.startswith("features.0.")], "no VGG-19 conv1_1 tensor"),
    ],
)
def test_bad_weight_files_are_refused_naming_the_layer(tmp_path, change, message):
    tensors = synthetic_torchvision(dtype=np.float32)
    change(tensors)
    with pytest.raises(JaxstyleError, match=message):
        hub.load(str(_save(tmp_path, tensors)))


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin", ".ckpt"])
def test_pickle_files_are_refused_with_how_to_convert(tmp_path, suffix):
    path = tmp_path / f"vgg{suffix}"
    path.write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(JaxstyleError, match="pickle-based.*safetensors.torch.save_file"):
        hub.load(str(path))


def test_unknown_set_name_lists_the_known_ones():
    with pytest.raises(JaxstyleError, match="choose one of caffe-q8, torchvision"):
        hub.load("vgg16")


def test_npz_in_jaxstyle_naming_loads_with_caffe_preprocessing(tmp_path, weights):
    arrays = {}
    for name, p in weights.params.items():
        arrays[f"{name}.kernel"], arrays[f"{name}.bias"] = np.asarray(p["kernel"]), np.asarray(p["bias"])
    np.savez(tmp_path / "w.npz", **arrays)
    loaded = hub.load(str(tmp_path / "w.npz"))
    assert loaded.preprocessing is W.CAFFE
    np.testing.assert_array_equal(loaded.params["conv5_4"]["kernel"], weights.params["conv5_4"]["kernel"])


def test_convert_round_trip_and_quantisation_error(tmp_path):
    src = _save(tmp_path, synthetic_torchvision(dtype=np.float32))
    exact = convert.convert(src, tmp_path / "full.safetensors")
    assert max(exact.values()) < 1e-6  # float32 copy: identical features
    full = hub.load(str(tmp_path / "full.safetensors"))
    assert full.preprocessing is W.TORCHVISION  # carried in the file's metadata
    q = convert.convert(src, tmp_path / "q.safetensors", quantize=True)
    # 8-bit k-means on Gaussian weights: about 1.8% weight error per layer, growing with depth.
    assert q["relu1_1"] < 0.03 and max(q.values()) < 0.2, q
    assert (tmp_path / "q.safetensors").stat().st_size < 0.3 * (tmp_path / "full.safetensors").stat().st_size


def test_kmeans_is_exact_on_already_quantised_values(weights):
    kernel = np.asarray(weights.params["conv2_1"]["kernel"])
    codes, table = convert.kmeans_1d(kernel)
    np.testing.assert_array_equal(table[codes], kernel)


def test_cli_runs_with_a_weights_file_and_records_its_hash(tmp_path, weights):
    import json

    from jaxstyle import cli
    from jaxstyle.io import image
    from jaxstyle.examples import CONTENT, STYLE

    arrays = {}
    for name, p in weights.params.items():
        arrays[f"{name}.kernel"], arrays[f"{name}.bias"] = np.asarray(p["kernel"]), np.asarray(p["bias"])
    save_file(arrays, str(tmp_path / "mine.safetensors"), metadata={"preprocessing": "caffe"})
    out = tmp_path / "o.png"
    argv = [str(CONTENT), str(STYLE), "-o", str(out), "--size", "32", "--steps", "2", "--quiet",
            "--weights", str(tmp_path / "mine.safetensors")]
    assert cli.main(argv) == 0
    meta = json.loads((tmp_path / "o.png.json").read_text())
    assert meta["weights_sha256"] == W.sha256_file(tmp_path / "mine.safetensors")
    # Same weights as the bundled set, so the same image.
    bundled = tmp_path / "b.png"
    assert cli.main([str(CONTENT), str(STYLE), "-o", str(bundled), "--size", "32", "--steps", "2", "--quiet"]) == 0
    np.testing.assert_array_equal(image.load_image(out), image.load_image(bundled))
