"""A corpus of hostile inputs, one class per test: each is generated in a temp folder, and the exact
behaviour is asserted — exit code, one line naming the problem, no traceback, no output file,
nothing else in the folder changed — or, where the input is legitimate, the right result."""

import functools
import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxstyle import JaxstyleError, StyleConfig, cli
from jaxstyle.io import files, image
from jaxstyle.optim import optimize
from jaxstyle.run import problem, transfer
from jaxstyle.model import weights as W
from jaxstyle.run.sweep import MANIFEST, expand, read_manifest, run_sweep

from .conftest import smooth_image, stripes

SHALLOW = ["--size", "32", "--steps", "2", "--style-layers", "relu1_1,relu2_1", "--content-layers", "relu2_1", "--quiet"]


@pytest.fixture
def folder(tmp_path):
    image.save_image(smooth_image(30, 40), tmp_path / "c.png")
    image.save_image(stripes(36, 36), tmp_path / "s.png")
    return tmp_path


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` (hidden ones too) with its SHA-256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def refused(capsys, argv, folder: Path, expect: str, code: int = 2) -> str:
    """Run the CLI; assert exit ``code``, one line on stderr containing ``expect``, no traceback, and
    ``folder`` exactly as before."""
    before = snapshot(folder)
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors end the process (one line, exit 2) from the parser
        rc = e.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == code, err
    assert len(lines) == 1 and lines[0].startswith("jaxstyle"), err
    assert expect in lines[0], lines[0]
    assert "Traceback" not in err
    assert snapshot(folder) == before
    return lines[0]


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb's calling card)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + 3 * 8))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


# --- data that must never be lost --------------------------------------------------------------


def test_plot_on_the_output_path_is_refused(capsys, folder):
    refused(capsys, [folder / "c.png", folder / "s.png", "-o", folder / "o.png", "--plot-loss", folder / "o.png"],
            folder, "--plot-loss and -o are the same file")


@pytest.mark.parametrize("target", ["c.png", "s.png", "start.png", "o_0001.png"])
def test_an_output_on_an_input_image_is_refused(capsys, folder, target):
    image.save_image(smooth_image(30, 40, 1.0), folder / "start.png")
    image.save_image(smooth_image(30, 40, 2.0), folder / "o_0001.png")
    if target == "o_0001.png":  # an intermediate of --save-every would land on the content image
        argv = [folder / "o_0001.png", folder / "s.png", "-o", folder / "o.png", "--save-every", "1", *SHALLOW]
        expect = "is the content image"
    else:
        argv = [folder / "c.png", folder / "s.png", "-o", folder / target, "--init", folder / "start.png", *SHALLOW]
        expect = {"c.png": "is the content image", "s.png": "is the style image 1", "start.png": "is the --init image"}[target]
    refused(capsys, argv, folder, expect)


def test_paper_commands_refuse_writing_over_their_input(capsys, folder):
    refused(capsys, ["texture", folder / "s.png", "-o", folder / "s.png"], folder, "is the input image")
    refused(capsys, ["reconstruct", folder / "c.png", "-o", folder / "o.png", "--plot-loss", folder / "o.png"],
            folder, "same file")


def test_unwritable_outputs_are_refused_before_any_work(capsys, folder, monkeypatch):
    (folder / "dir.png").mkdir()
    refused(capsys, [folder / "c.png", folder / "s.png", "-o", folder / "dir.png"], folder, "is an existing folder")
    (folder / "o.png.json").mkdir()
    refused(capsys, [folder / "c.png", folder / "s.png", "-o", folder / "o.png"], folder,
            "the sidecar")
    (folder / "ro").mkdir()
    real_access = os.access
    # This suite runs as root, for whom every folder is writable: make the permission check see the
    # folder as a non-root user would (0o555), through the same os.access call.
    (folder / "ro").chmod(0o555)
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == folder / "ro" else real_access(p, mode))
    refused(capsys, [folder / "c.png", folder / "s.png", "-o", folder / "ro" / "o.png"], folder, "is not writable")
    refused(capsys, [folder / "c.png", folder / "s.png", "-o", folder / "o.png", "--plot-loss", folder / "ro" / "p.png"],
            folder, "is not writable")


def test_temp_files_cleaned_are_only_our_own_from_dead_writers(folder):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    ours_stale = folder / f".o.png{files.TEMP_TAG}{dead_pid}-abc.tmp"
    ours_live = folder / f".o.png{files.TEMP_TAG}{os.getppid()}-def.tmp"  # a live writer (pytest's parent)
    users = [folder / ".notes.tmp", folder / ".o.png.tmp", folder / ".o.png.x.tmp"]
    for p in [ours_stale, ours_live, *users]:
        p.write_bytes(b"")
    image.save_image(smooth_image(8, 8), folder / "o.png")
    assert not ours_stale.exists()
    assert ours_live.exists() and all(p.exists() for p in users)


# --- sweeps ------------------------------------------------------------------------------------


def write(folder: Path, name: str, data) -> Path:
    path = folder / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


@pytest.mark.parametrize("name, data, expect", [
    ("latin1.toml", "[base]\nsize = 32 # caf\xe9\n".encode("latin-1"), "is not UTF-8"),
    ("empty.json", "[]", "must be a table of sections"),
    ("number.json", "42", "must be a table of sections"),
    ("list_section.json", '{"grid": [1, 2]}', "[grid] in sweep spec"),
    ("deep.json", "[" * 100000 + "]" * 100000, "cannot parse sweep spec"),
    ("bad.toml", "[base\nsize=", "cannot parse sweep spec"),
])
def test_broken_sweep_specs(capsys, folder, name, data, expect):
    spec = write(folder, name, data)
    refused(capsys, ["sweep", spec, "-o", folder / "out"], folder, expect)


def test_sweep_into_a_file_and_distributed_without_a_coordinator(capsys, folder, monkeypatch):
    spec = write(folder, "spec.toml", '[base]\ncontent = "c.png"\nstyle = "s.png"\nsize = 32\nsteps = 1\n')
    write(folder, "out", "a file")
    refused(capsys, ["sweep", spec, "-o", folder / "out"], folder, "is a file, not a folder")
    for var in ("SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri", "JAX_COORDINATOR_ADDRESS", "TPU_WORKER_HOSTNAMES"):
        monkeypatch.delenv(var, raising=False)
    refused(capsys, ["sweep", spec, "-o", folder / "out2", "--distributed"], folder, "cannot start jax.distributed")


def test_sweep_spec_values_init_seeds_and_layers(folder):
    (folder / "sub").mkdir()
    image.save_image(smooth_image(30, 40, 3.0), folder / "sub" / "start.png")
    spec = {"base": {"content": "c.png", "style": "s.png", "init": "sub/start.png", "style_layers": "relu1_1,relu2_1"},
            "grid": {"seed": [0, 0, 1]}}
    jobs = expand(spec, folder)
    assert len(jobs) == 2 and len({j.id for j in jobs}) == 2  # seed 0 listed twice is one job
    assert jobs[0].config.init == str(folder / "sub" / "start.png")  # relative to the spec, not the cwd
    assert jobs[0].config.style_layers == ("relu1_1", "relu2_1")  # a string is names, not letters
    with pytest.raises(JaxstyleError, match="init image 'missing.png' does not exist"):
        expand({"base": {"content": "c.png", "style": "s.png", "init": "missing.png"}}, folder)
    with pytest.raises(JaxstyleError, match="at most 64 bits"):
        expand({"base": {"content": "c.png", "style": "s.png", "seed": 2**70}}, folder)


def test_a_sweep_survives_bad_images_torn_manifests_and_keeps_user_files(folder):
    """One tiny real sweep: a bomb, a too-small photo and a good one; a torn manifest line from a
    crash; a user's own .tmp file. The good job runs, each bad one fails alone naming its file, the
    torn line stays one bad line and every new line is valid JSON, and the user's file is kept."""
    png_header_only(folder / "bomb.png", 30000, 30000)
    image.save_image(smooth_image(1, 60), folder / "strip.png")  # 32x1 at size 32: too small for relu2_1
    spec = write(folder, "spec.json", json.dumps({
        "base": {"style": "s.png", "size": 32, "steps": 2, "style_layers": ["relu1_1", "relu2_1"],
                 "content_layers": ["relu2_1"]},
        "grid": {"content": ["c.png", "bomb.png", "strip.png"]}}))
    out = folder / "out"
    out.mkdir()
    write(out, ".my-notes.tmp", "mine")
    write(out, MANIFEST, '{"id": "0123456789abcdef", "status": "ok", "ima')  # killed mid-append
    counts = run_sweep(spec, out)
    assert (counts["done"], counts["failed"]) == (1, 2)
    assert (out / ".my-notes.tmp").read_text() == "mine"
    lines = (out / MANIFEST).read_text().splitlines()
    assert lines[0].startswith('{"id": "0123456789abcdef"') and len(lines) == 4
    entries = [json.loads(line) for line in lines[1:]]  # every line after the torn one is whole
    reasons = {Path(e["content"]).name: e.get("reason", "") for e in entries}
    assert "more pixels than Pillow decodes safely" in reasons["bomb.png"] and "bomb.png" in reasons["bomb.png"]
    assert "too small" in reasons["strip.png"] and "strip.png" in reasons["strip.png"]
    assert [e["status"] for e in entries if Path(e["content"]).name == "c.png"] == ["ok"]
    assert len(read_manifest(out)) == 3


# --- images: bombs, huge, absurd sizes -----------------------------------------------------------


def test_decompression_bombs_are_one_line_everywhere(capsys, folder):
    bomb = png_header_only(folder / "bomb.png", 30000, 30000)
    c, s = folder / "c.png", folder / "s.png"
    for argv in ([bomb, s, "-o", folder / "o.png"], [c, bomb, "-o", folder / "o.png"],
                 [c, s, "-o", folder / "o.png", "--init", bomb], ["reconstruct", bomb, "-o", folder / "o.png"]):
        refused(capsys, argv, folder, "more pixels than Pillow decodes safely")
    with pytest.raises(JaxstyleError, match="downscale the file first"):
        image.load_image(bomb)


def test_a_huge_but_legal_image_warns_once_in_our_words(folder, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a 40x30 file stands for a 90-megapixel one
    image._WARNED.clear()
    with pytest.warns(image.JaxstyleWarning, match="megapixels\\): decoding it takes a lot of memory") as record:
        a = image.load_image(folder / "c.png")
        b = image.load_image(folder / "c.png")
    assert len(record) == 1 and np.array_equal(a, b)


@pytest.mark.parametrize("extra, expect", [
    (["--seed", str(2**64)], "at most 64 bits"),
    (["--size", "100000"], "use at most 65536 px"),
    (["--size", "30000"], "needs about"),
    (["--style-scale", "1000"], "--style-scale 1000"),
    (["--size", "5000", "--tile", "0"], "untiled, more than this machine has"),
    (["--tile", "99999999999999999999"], "from 1 to 65536"),
    (["--style-weight", "1e39"], "too large for float32"),
    (["--lr", "1e300"], "must be a positive number"),
    (["--tolerance", "1"], "must be in [0, 1)"),
])
def test_absurd_numbers_are_refused_with_the_fix(capsys, folder, extra, expect):
    line = refused(capsys, [folder / "c.png", folder / "s.png", "-o", folder / "o.png", *extra], folder, expect)
    if "needs about" in expect:
        assert "at most" in line  # names the largest size that fits


def test_texture_with_no_layers_names_its_own_flag(capsys, folder):
    line = refused(capsys, ["texture", folder / "s.png", "-o", folder / "o.png", "--layers", ""], folder, "--layers")
    assert "--style-layers" not in line


# --- weights -------------------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXSTYLE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def full_npz(path: Path, **changes) -> Path:
    params = W.load_bundled().params
    arrays = {f"{k}.{p}": np.asarray(v[p]) for k, v in params.items() for p in ("kernel", "bias")}
    arrays.update(changes)
    np.savez(path, **arrays)
    return path


def test_damaged_weight_files_and_registries(capsys, folder, cache, monkeypatch):
    good = full_npz(folder / "good.npz")
    write(folder, "trunc.npz", good.read_bytes()[:5000])
    np.save(folder / "single.npy", np.zeros(3))
    (folder / "single.npy").rename(folder / "single.npz")
    nan_kernel = np.asarray(W.load_bundled().params["conv3_1"]["kernel"]).copy()
    nan_kernel[0, 0, 0, 0] = np.nan
    full_npz(folder / "nan.npz", **{"conv3_1.kernel": nan_kernel})
    c, s, o = folder / "c.png", folder / "s.png", folder / "o.png"
    refused(capsys, [c, s, "-o", o, "--weights", folder / "trunc.npz"], folder, "damaged, truncated or not an .npz")
    refused(capsys, [c, s, "-o", o, "--weights", folder / "single.npz"], folder, "holds a single array (.npy)")
    refused(capsys, [c, s, "-o", o, "--weights", folder / "nan.npz"], folder, "conv3_1 holds NaN")
    refused(capsys, ["weights", "convert", good, folder / "missing" / "x.safetensors"], folder, "does not exist; create it first")
    cache.mkdir()
    write(cache, "known_hashes.json", "{not json")
    refused(capsys, [c, s, "-o", o, "--weights", good], folder, "hash registry")
    (cache / "known_hashes.json").unlink()
    cache.rmdir()
    write(folder, "cachefile", "x")
    monkeypatch.setenv("JAXSTYLE_CACHE", str(folder / "cachefile"))
    refused(capsys, [c, s, "-o", o, "--weights", good], folder, "JAXSTYLE_CACHE")


def test_trust_on_first_use_records_only_complete_files(capsys, folder, cache):
    good = full_npz(folder / "vgg.npz")
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])  # a truncated download
    with pytest.raises(JaxstyleError, match="truncated"):
        W.load_file(good)
    assert W.recorded_hashes() == {}  # not trusted
    good.write_bytes(data)  # the complete file now loads
    assert W.load_file(good).sha256 == W.recorded_hashes()[str(good.resolve())]
    full_npz(good, **{"conv1_1.bias": np.ones(64, np.float32)})  # changed on purpose
    refused(capsys, [folder / "c.png", folder / "s.png", "-o", folder / "o.png", "--weights", good], folder,
            f"jaxstyle weights trust {good}")
    assert cli.main(["weights", "trust", str(good)]) == 0
    assert W.load_file(good).sha256 == W.sha256_file(good)


# --- the API -------------------------------------------------------------------------------------


def test_api_arrays_of_every_kind():
    base = smooth_image(30, 40)
    as_uint8 = image.to_uint8(base)
    assert np.allclose(image.image_array(as_uint8), as_uint8 / 255.0)  # converted, not washed out
    assert image.image_array(base[..., 0]).shape == (30, 40, 3)  # greyscale to RGB
    for bad, match in [(base * 255, "divide by 255"), (base - 0.5, "values in"), (np.full((4, 4, 3), np.nan), "NaN"),
                       (np.zeros((0, 0, 3)), "shape"), (np.zeros((4, 4, 4)), "shape"), ("x" * 3, "shape")]:
        with pytest.raises(JaxstyleError, match=match):
            image.image_array(np.asarray(bad) if not isinstance(bad, str) else np.asarray([bad]))
    config = StyleConfig(size=32, steps=1, style_layers="relu1_1", content_layers="relu1_1")
    c8, _ = problem.prepare(as_uint8, stripes(32, 32), config)
    cf, _ = problem.prepare(as_uint8 / 255.0, stripes(32, 32), config)
    assert np.allclose(c8, cf)
    with pytest.raises(JaxstyleError, match="must be a jaxstyle.StyleConfig"):
        problem.prepare(base, base, None)


def test_api_paths_and_saving(folder):
    from jaxstyle.examples import CONTENT

    assert np.array_equal(image.load_image(os.fsencode(CONTENT)), image.load_image(CONTENT))  # bytes path
    pixels = image.to_uint8(smooth_image(10, 12))
    image.save_image(pixels, folder / "u8.png")  # a uint8 array is 0-255, not "all above 1"
    assert np.array_equal(np.asarray(Image.open(folder / "u8.png")), pixels)
    with pytest.raises(JaxstyleError, match="shape"):
        image.save_image(np.zeros((4, 4, 4), np.float32), folder / "rgba.jpg")
    with pytest.raises(JaxstyleError, match="file path"):
        image.load_image(42)
    assert not (folder / "rgba.jpg").exists()


def test_config_is_checked_at_construction_and_coerces_strings():
    assert StyleConfig(content_layers="relu4_2").content_layers == ("relu4_2",)
    assert StyleConfig(style_layers=["relu1_1", "relu2_1"]).style_layers == ("relu1_1", "relu2_1")
    assert hash(StyleConfig(style_layer_weights=[0.5, 0.5], style_layers="relu1_1,relu2_1"))  # hashable: static key
    for bad, match in [(dict(size=0), "size"), (dict(steps=True), "steps"), (dict(seed=-(2**64)), "64 bits"),
                       (dict(content_weight=float("nan")), "finite"), (dict(style_layers=(1, 2)), "layer names"),
                       (dict(init=None), "init"), (dict(style_weight=1e30), "float32")]:
        with pytest.raises(JaxstyleError, match=match):
            StyleConfig(**bad)


def test_a_non_finite_loss_stops_the_run_at_its_step():
    """A loss that overflows (here by construction: exp of a large sum) stops the loop with the step,
    instead of finishing with a black image and exit 0."""
    step = functools.partial(optimize.step, loss_fn=lambda x, data: jnp.exp(jnp.sum(x) * data), kind="adam")
    x = jnp.full((4, 4, 3), 0.5)
    state = optimize.init_state(x, kind="adam")
    config = StyleConfig(chunk=3)
    with pytest.raises(JaxstyleError, match="by step 3: the optimisation diverged"):
        transfer.run_steps(step, x, state, jnp.float32(0.1), jnp.float32(100.0), 5, config, offset=0)


# --- internal errors and signals -----------------------------------------------------------------


def test_an_internal_error_is_one_line_and_debug_shows_the_traceback(capsys, folder, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("injected fault\nsecond line")

    monkeypatch.setattr(problem, "prepare", broken)
    argv = [folder / "c.png", folder / "s.png", "-o", folder / "o.png"]
    line = refused(capsys, argv, folder, "internal error: RuntimeError: injected fault", code=1)
    assert "--debug" in line and "second line" not in line
    assert cli.main([str(a) for a in argv] + ["--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("fault", [MemoryError(), RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 17179869184 bytes")])
def test_running_out_of_memory_is_one_line_with_the_fix(capsys, folder, monkeypatch, fault):
    def exhausted(*args, **kwargs):
        raise fault

    monkeypatch.setattr(problem, "prepare", exhausted)
    refused(capsys, [folder / "c.png", folder / "s.png", "-o", folder / "o.png"], folder,
            "out of memory; lower --size (or --style-scale), or set --max-memory")


def test_sigterm_during_a_sweep_keeps_the_finished_jobs(folder):
    spec = write(folder, "spec.json", json.dumps({
        "base": {"content": "c.png", "style": "s.png", "size": 32, "steps": 300000, "chunk": 1,
                 "style_layers": ["relu1_1"], "content_layers": ["relu1_1"]},
        "grid": {"style_weight": [1.0, 2.0]}}))
    spec_done = write(folder, "done.json", json.dumps({
        "base": {"content": "c.png", "style": "s.png", "size": 32, "steps": 2,
                 "style_layers": ["relu1_1"], "content_layers": ["relu1_1"]}}))
    out = folder / "out"
    assert cli.main(["sweep", str(spec_done), "-o", str(out), "--quiet"]) == 0  # one job finished earlier
    proc = subprocess.Popen([sys.executable, "-m", "jaxstyle", "sweep", str(spec), "-o", str(out), "--quiet"],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(8)  # inside the long batch
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err
    assert last == f"jaxstyle: interrupted; kept 1 finished job(s) in {out} (run the same command again to resume)"


def _start(folder: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jaxstyle", str(folder / "c.png"), str(folder / "s.png"),
                             "-o", str(folder / "o.png"), "--size", "48", "--steps", "100000", *extra],
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("delay", [0.1, 0.6, 2.0])
def test_ctrl_c_at_start_up_and_during_jax_initialisation(folder, delay):
    proc = _start(folder, "--quiet")
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("jaxstyle: interrupted")
    assert not (folder / "o.png").exists()


def test_sigterm_mid_run_says_what_was_kept(folder):
    proc = _start(folder, "--save-every", "1", "--quiet")
    deadline = time.time() + 180
    while not (folder / "o_0002.png").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("jaxstyle: interrupted; kept ")
    assert "o_0001.png" in last and not (folder / "o.png").exists()
    assert not list(folder.glob(".*.tmp"))
    kept = sorted(folder.glob("o_*.png"))
    assert kept and all(Image.open(p).size == (48, 36) for p in kept)
    assert kept[-1].name in last


def test_an_interrupted_command_ends_without_the_interpreters_teardown(monkeypatch):
    """Interrupted, the console script ends with os._exit after flushing its one line: tearing the
    interpreter down while XLA's threads were still compiling crashed the process (SIGABRT, SIGSEGV)
    in 2 of 18 sweeps sent SIGTERM on an empty compilation cache. Other endings return as usual."""
    from jaxstyle.cli import entry

    ended = []
    monkeypatch.setattr(entry.os, "_exit", ended.append)
    for code in (143, 130, 2, 0):
        monkeypatch.setattr(entry, "_main", lambda argv, code=code: code)
        assert entry.main([]) == code
    assert ended == [143, 130]


def test_interrupt_is_not_lost_when_swallowed():
    """An interrupt whose exception some callback swallowed still stops the loop at the next step.
    (In a child process: signals are the main thread's, and a test runner's worker may not be.)"""
    code = """
import os, signal, time
from jaxstyle import interrupt
with interrupt.installed():
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)
    except KeyboardInterrupt:
        pass  # swallowed, as a JAX or tqdm callback might
    try:
        interrupt.check()
    except interrupt.Interrupted as e:
        print("raised again", e.exit_code)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "raised again 130", proc.stderr


# --- the operating system says no ----------------------------------------------------------------

def test_odd_names_and_links_are_one_line_before_any_work(capsys, folder):
    (folder / "loop.png").symlink_to(folder / "loop.png")
    refused(capsys, [folder / "loop.png", folder / "s.png", "-o", folder / "o.png", *SHALLOW], folder,
            "is a loop of symbolic links")
    refused(capsys, [folder / "c.png", folder / "s.png", "-o", folder / ("a" * 300 + ".png"), *SHALLOW], folder,
            "304 bytes long, more than the 255")
    # 251 bytes is a legal name, but its sidecar's (OUT.png.json) is not
    refused(capsys, [folder / "c.png", folder / "s.png", "-o", folder / ("a" * 247 + ".png"), *SHALLOW], folder,
            "the sidecar file name is 256 bytes long")


def test_a_legal_long_name_is_written_with_a_short_enough_temporary_name(capsys, folder):
    """A 240-byte name: its temporary sibling (.NAME.jaxstyle-PID-….tmp) would pass 255 bytes, so it
    carries a hash of the name instead; the image and its sidecar arrive, no temporary file stays."""
    out = folder / ("b" * 236 + ".png")
    assert cli.main([str(folder / "c.png"), str(folder / "s.png"), "-o", str(out), *SHALLOW]) == 0
    assert out.is_file() and (folder / (out.name + ".json")).is_file()
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_outputs_honour_the_umask_and_keep_an_existing_files_mode(folder):
    previous = os.umask(0o022)
    try:
        image.save_image(smooth_image(8, 8), folder / "new.png")
        assert (folder / "new.png").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        image.save_image(smooth_image(8, 8), folder / "private.png")
        assert (folder / "private.png").stat().st_mode & 0o777 == 0o600
        (folder / "new.png").chmod(0o640)
        image.save_image(smooth_image(8, 8, 1.0), folder / "new.png")  # replaced: its mode stays
        assert (folder / "new.png").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(previous)


def test_a_full_disk_is_one_line_and_replaces_neither_image_nor_sidecar(capsys, folder, monkeypatch):
    """ENOSPC while writing the sidecar (after the image's temporary file is complete): exit 2, one
    line naming the file and the fix, the previous image and sidecar untouched, no temporary file."""
    out = folder / "o.png"
    assert cli.main([str(folder / "c.png"), str(folder / "s.png"), "-o", str(out), *SHALLOW]) == 0
    capsys.readouterr()
    real_write_text = Path.write_text

    def full(self, text, *args, **kwargs):
        if self.name.startswith(".o.png.json"):
            real_write_text(self, text[: len(text) // 2], *args, **kwargs)  # half of it fits, then the disk is full
            raise OSError(28, "No space left on device")
        return real_write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    line = refused(capsys, [folder / "c.png", folder / "s.png", "-o", out, *SHALLOW, "--seed", "3"], folder,
                   "no space left on the device")
    assert "'o.png.json'" in line and "free space or write elsewhere" in line


def test_a_full_disk_during_a_sweep_stops_it_in_one_line_keeping_finished_jobs(capsys, folder, monkeypatch):
    spec = write(folder, "spec.toml", '[base]\nsize = 32\nsteps = 2\nstyle_layers = ["relu1_1"]\n'
                 'content_layers = ["relu1_1"]\n[grid]\ncontent = ["c.png"]\nstyle = ["s.png"]\nseed = [0, 1, 2]\n')
    real_save = image.image_writer
    saved = []

    def full_after_one(img, path, bit_depth=8):
        if saved:
            def write(tmp):
                raise OSError(28, "No space left on device")
            return write
        saved.append(path)
        return real_save(img, path, bit_depth)

    monkeypatch.setattr(image, "image_writer", full_after_one)
    rc = cli.main(["sweep", str(spec), "-o", str(folder / "out"), "--quiet", "--batch", "1"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "no space left on the device" in lines[0], err
    assert not [p for p in (folder / "out").iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()  # space freed: the same command finishes the sweep, keeping the job done before
    assert cli.main(["sweep", str(spec), "-o", str(folder / "out"), "--quiet", "--batch", "1"]) == 0
    assert "2 done, 1 already done, 0 failed" in capsys.readouterr().err
    assert len(read_manifest(folder / "out")) == 3


def test_save_every_checks_the_pattern_not_every_path(capsys, folder):
    """A billion steps with --save-every 5: the names are checked by their pattern (the run would
    otherwise build 2e8 paths first); an input that one of them would overwrite is refused."""
    (folder / "o_0010.png").write_bytes((folder / "c.png").read_bytes())
    refused(capsys, [folder / "o_0010.png", folder / "s.png", "-o", folder / "o.png", *SHALLOW, "--steps", "12",
                     "--save-every", "5"],
            folder, "--save-every 5 would overwrite the content image")
    start = time.perf_counter()
    refused(capsys, [folder / "c.png", folder / "s.png", "-o", folder / "o.png", "--steps", "1000000000",
                     "--save-every", "5", "--size", "8"], folder, "`size` (=8) is too small")
    assert time.perf_counter() - start < 5


def test_a_sweep_with_failed_jobs_has_its_own_exit_status_and_says_where_they_are(capsys, folder):
    image.save_image(smooth_image(1, 60), folder / "strip.png")  # too small for the layers: that job fails
    spec = write(folder, "spec.toml", '[base]\nsize = 32\nsteps = 2\nstyle = "s.png"\nstyle_layers = ["relu1_1", '
                 '"relu2_1"]\ncontent_layers = ["relu2_1"]\n[grid]\ncontent = ["c.png", "strip.png"]\n')
    rc = cli.main(["sweep", str(spec), "-o", str(folder / "out"), "--quiet"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 3 and rc not in (0, 1, 2)  # 1 is kept for jaxstyle's own bugs, 2 for bad input
    assert "1 done, 0 already done, 1 failed" in lines[-2]
    assert lines[-1] == f'jaxstyle: 1 job(s) failed; their reasons are the "failed" lines of {folder / "out" / MANIFEST}'


def test_converting_a_weight_file_onto_itself_is_one_line(capsys, folder, cache):
    (folder / "w.safetensors").write_bytes(b"")  # any file: the check is on identity, before reading
    (folder / "link.safetensors").symlink_to(folder / "w.safetensors")
    for target in ("w.safetensors", "link.safetensors"):
        refused(capsys, ["weights", "convert", folder / "w.safetensors", folder / target], folder, "is the source file")


def test_fetching_without_a_network_is_one_line_at_once(capsys, folder, cache, monkeypatch):
    import socket

    def no_dns(host, *args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.perf_counter()
    line = refused(capsys, ["weights", "fetch", "torchvision"], folder, "offline or unreachable")
    assert "Name or service not known" in line and time.perf_counter() - start < 5  # no retries first


# --- video: the user's files and frames ----------------------------------------------------------

def test_video_never_overwrites_files_it_did_not_write(capsys, folder):
    frames = folder / "frames"
    frames.mkdir()
    for k in range(2):
        image.save_image(smooth_image(24, 32, k * 0.3), frames / f"f{k}.png")
    out = folder / "styled"
    out.mkdir()
    (out / "settings.json").write_text('{"my": "own settings"}\n')
    refused(capsys, ["video", frames, folder / "s.png", "-o", out, *SHALLOW], folder,
            "holds files jaxstyle video did not write (settings.json)")


def test_a_read_only_frames_folder_is_refused_before_any_frame(capsys, folder, monkeypatch):
    frames = folder / "frames"
    frames.mkdir()
    for k in range(2):
        image.save_image(smooth_image(24, 32, k * 0.3), frames / f"f{k}.png")
    (folder / "styled").mkdir()
    real_access = os.access  # root writes anywhere: see the folder as a non-root user would (0o555)
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == folder / "styled" else real_access(p, mode))
    refused(capsys, ["video", frames, folder / "s.png", "-o", folder / "styled", *SHALLOW], folder,
            "the frames folder")


def test_video_frames_of_different_sizes_are_refused_up_front(capsys, folder):
    frames = folder / "frames"
    frames.mkdir()
    image.save_image(smooth_image(24, 32), frames / "f0.png")
    image.save_image(smooth_image(30, 32), frames / "f1.png")
    refused(capsys, ["video", frames, folder / "s.png", "-o", folder / "styled", *SHALLOW], folder,
            "frame 'f1.png' is 32x30 px but 'f0.png' is 32x24")


def test_rerun_finds_moved_inputs_beside_the_sidecar_and_refuses_changed_ones(capsys, folder, monkeypatch):
    """Relative paths recorded from one folder are found again from any other (beside the sidecar);
    an input whose bytes changed is named, and --force renders from it anyway."""
    monkeypatch.chdir(folder)
    assert cli.main(["c.png", "s.png", "-o", "o.png", *SHALLOW]) == 0
    meta = json.loads((folder / "o.png.json").read_text())
    assert meta["inputs"]["content image"]["sha256"] == hashlib.sha256((folder / "c.png").read_bytes()).hexdigest()
    moved = folder / "elsewhere"
    moved.mkdir()
    for name in ("c.png", "s.png", "o.png", "o.png.json"):
        (folder / name).rename(moved / name)
    monkeypatch.chdir(folder.parent)
    assert cli.main(["rerun", str(moved / "o.png.json"), "--quiet"]) == 0
    assert (moved / "o_rerun.png").read_bytes() == (moved / "o.png").read_bytes()
    capsys.readouterr()
    image.save_image(stripes(36, 36)[::-1], moved / "s.png")  # the painting changed
    line = refused(capsys, ["rerun", moved / "o.png.json", "-o", moved / "new.png", "--quiet"], folder,
                   "the style image 1")
    assert "changed since the image was made" in line and "--force" in line
    assert cli.main(["rerun", str(moved / "o.png.json"), "-o", str(moved / "new.png"), "--quiet", "--force"]) == 0


@pytest.mark.parametrize("extra, expect", [
    (["--coordinator", "127.0.0.1:99999", "--num-processes", "2", "--process-id", "1"], "a port from 1 to 65535"),
    (["--coordinator", "127.0.0.1:8476", "--num-processes", "2", "--process-id", "1", "--coordinator-timeout", "-1"],
     "--coordinator-timeout (=-1) must be a positive number"),
])
def test_impossible_coordinator_addresses_and_timeouts_are_refused_before_jax(capsys, folder, extra, expect):
    spec = write(folder, "spec.toml", '[base]\nsize = 32\n[grid]\ncontent = ["c.png"]\nstyle = ["s.png"]\n')
    refused(capsys, ["sweep", spec, "-o", folder / "out", "--distributed", *extra], folder, expect)
