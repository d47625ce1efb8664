"""The CLI keeps compiled programs on disk (jaxstyle.compile_cache): a second run reads them back."""

import os
import subprocess
import sys

from jaxstyle.io import image

from .conftest import smooth_image, stripes


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}  # the suite's own cache
    env["JAXSTYLE_CACHE"] = str(tmp_path / "cache")
    # Every program is kept, however quick its compilation: with the suite's 0.2 s floor, a program
    # compiled just under it in the first run and just over it in the second (a loaded machine: three
    # workers) was written by the second run alone.
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return env


def _entries(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_a_second_run_compiles_nothing_new(tmp_path):
    image.save_image(smooth_image(24, 32), tmp_path / "c.png")
    image.save_image(stripes(24, 24), tmp_path / "s.png")
    folder = tmp_path / "cache" / "xla"
    seen = []
    for run in range(2):
        out = tmp_path / f"out{run}.png"
        proc = subprocess.run([sys.executable, "-m", "jaxstyle", str(tmp_path / "c.png"), str(tmp_path / "s.png"),
                               "-o", str(out), "--size", "32", "--steps", "3", "--quiet"],
                              env=_env(tmp_path), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert out.is_file()
        seen.append(_entries(folder))
    # The first run wrote its programs (the step among them); the second found every one it needed.
    assert any("step" in name for name in seen[0]), seen[0]
    assert seen[1] == seen[0]


def test_enable_stays_off_where_asked_or_where_it_cannot_write_and_keeps_a_chosen_folder(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    code = f"""
import os
from pathlib import Path
from jaxstyle import compile_cache
os.environ["JAXSTYLE_COMPILE_CACHE"] = "0"
assert compile_cache.enable() is None
del os.environ["JAXSTYLE_COMPILE_CACHE"]
os.environ["JAXSTYLE_CACHE"] = {str(tmp_path / "a_file")!r}  # a file where the folder should be
assert compile_cache.enable() is None
assert compile_cache.enable({str(tmp_path / "a_file" / "xla")!r}) is None
os.environ["JAXSTYLE_CACHE"] = {str(tmp_path / "cache")!r}
assert compile_cache.enable() == Path({str(tmp_path / "cache" / "xla")!r})
assert compile_cache.enable({str(tmp_path / "elsewhere")!r}) == Path({str(tmp_path / "cache" / "xla")!r})
import jax
assert jax.config.jax_compilation_cache_max_size == compile_cache.MAX_BYTES
print("ok")
"""
    env = _env(tmp_path)
    env.pop("JAXSTYLE_CACHE")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert not (tmp_path / "elsewhere").exists()
