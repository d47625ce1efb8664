"""Sweeps over several processes, for real: `jaxstyle sweep --distributed` started twice on this
machine (jax.distributed on loopback, gloo collectives on the CPU), one shared output folder."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxstyle.run import cluster
from jaxstyle.io import image
from jaxstyle.run.sweep import MANIFEST, run_sweep

from .conftest import write_sweep_images

# Two compiled groups of four jobs: one style, or a blend of two (the number of style images is
# static); style weight and seed are traced.
SPEC = """
[base]
size = 32
steps = {steps}
init = "noise"
style_layers = "relu1_1,relu2_1"
content_layers = "relu2_1"
[grid]
content = ["c.png"]
style = ["s.png", ["s.png", "s2.png"]]
style_weight = [1.0, 10.0]
seed = [0, 1]
"""


@pytest.fixture
def folder(tmp_path):
    return write_sweep_images(tmp_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(folder: Path, out: str, index: int, count: int, port: int, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, JAX_LOG_COMPILES="1")
    return subprocess.Popen(
        [sys.executable, "-m", "jaxstyle", "sweep", str(folder / "spec.toml"), "-o", str(folder / out), "--distributed",
         "--coordinator", f"127.0.0.1:{port}", "--num-processes", str(count), "--process-id", str(index),
         "--coordinator-timeout", "60", "--quiet", *extra],
        stderr=subprocess.PIPE, text=True, env=env)


def finish(procs, timeout=600) -> list[str]:
    errs = [p.communicate(timeout=timeout)[1] for p in procs]
    return errs


def our_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("jaxstyle") or line.startswith("sweep")]


def test_two_processes_share_a_sweep_compile_once_each_and_match_one_process(folder):
    (folder / "spec.toml").write_text(SPEC.format(steps=4))
    run_sweep(folder / "spec.toml", folder / "alone", batch_size=2)  # the single-process reference
    port = free_port()
    procs = [start(folder, "two", i, 2, port, "--batch", "2") for i in range(2)]
    errs = finish(procs)
    assert [p.returncode for p in procs] == [0, 0], errs
    # Work split by compiled group: each process got one whole group and compiled its step once.
    for err in errs:
        assert sum(line.startswith("Compiling jit(step)") for line in err.splitlines()) == 1, err
    summaries = [next(line for line in our_lines(err) if line.startswith("sweep")) for err in errs]
    assert all("4 done, 0 already done, 0 failed, 1 compiled group(s)" in s for s in summaries), summaries
    assert sum("contact sheet" in s for s in summaries) == 1  # drawn once, by process 0
    # One manifest (the per-process ones merged and removed), every line whole, every job once.
    out = folder / "two"
    assert not list(out.glob("manifest.p*.jsonl"))
    entries = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]
    assert len(entries) == 8 and len({e["id"] for e in entries}) == 8 and all(e["status"] == "ok" for e in entries)
    assert sorted(e["process"] for e in entries) == [0] * 4 + [1] * 4
    # The same batches as the single process ran (two of two per group), so the same pixels.
    for e in entries:
        np.testing.assert_array_equal(image.load_image(out / e["image"]), image.load_image(folder / "alone" / e["image"]))
    assert (out / "contact_sheet.png").is_file()


def test_killing_one_process_then_rerunning_resumes_only_its_unfinished_jobs(folder):
    (folder / "spec.toml").write_text(SPEC.format(steps=60))
    port = free_port()
    procs = [start(folder, "out", i, 2, port, "--batch", "1") for i in range(2)]
    out = folder / "out"
    deadline = time.time() + 300

    def ok_lines(index):
        path = out / f"manifest.p{index}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []

    while len(ok_lines(1)) < 1 and time.time() < deadline:
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGKILL)  # process 1 dies with 1 or more of its 4 jobs done
    while len(ok_lines(0)) < 4 and time.time() < deadline:  # process 0 finishes its own, then waits for 1
        time.sleep(0.2)
    procs[0].send_signal(signal.SIGKILL)  # the launch is over (a scheduler would cancel it the same way)
    finish(procs)
    before = {e["id"] for i in range(2) for e in ok_lines(i)}
    first_run_1 = len(ok_lines(1))
    assert 1 <= first_run_1 < 4 and len(ok_lines(0)) == 4

    port = free_port()
    procs = [start(folder, "out", i, 2, port, "--batch", "1") for i in range(2)]
    errs = finish(procs)
    assert [p.returncode for p in procs] == [0, 0], errs
    summaries = [next(line for line in our_lines(err) if line.startswith("sweep")) for err in errs]
    assert "0 done, 4 already done" in summaries[0], summaries
    assert f"{4 - first_run_1} done, {first_run_1} already done" in summaries[1], summaries
    entries = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]
    assert len(entries) == 8 and all(e["status"] == "ok" for e in entries)
    assert before <= {e["id"] for e in entries}


def test_wrong_launches_end_with_one_line(folder):
    (folder / "spec.toml").write_text(SPEC.format(steps=2))
    # No coordinator: process 1 alone waits, then says so (JAX itself would abort the process).
    lone = start(folder, "out", 1, 2, free_port(), "--coordinator-timeout", "2")
    err = finish([lone])[0]
    assert lone.returncode == 2 and our_lines(err)[-1].startswith("jaxstyle: error: cannot reach the coordinator")
    # Each process given its own folder: as if the output folder were not on a shared filesystem.
    port = free_port()
    procs = [start(folder, f"out{i}", i, 2, port) for i in range(2)]
    errs = finish(procs)
    assert [p.returncode for p in procs] == [2, 2]
    assert all("is not shared by the 2 processes" in our_lines(e)[-1] for e in errs), errs
    # An output that process 0 refuses (a file): every process ends, none waits for the others.
    (folder / "a_file").write_text("not a folder")
    port = free_port()
    procs = [start(folder, "a_file", i, 2, port) for i in range(2)]
    errs = finish(procs, timeout=120)
    assert [p.returncode for p in procs] == [2, 2]
    assert "is a file, not a folder" in our_lines(errs[0])[-1] and "process 0 could not" in our_lines(errs[1])[-1]
    # A coordinator address that is some other server (a web server): refused at once, not a JAX abort.
    import http.server
    import threading

    web = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        other = start(folder, "out", 1, 2, web.server_address[1])
        err = finish([other])[0]
    finally:
        web.shutdown()
    assert other.returncode == 2 and "is not process 0 of a jaxstyle sweep" in our_lines(err)[-1], err
    # Process 0 alone, its partner never started: one line naming the missing process (JAX would
    # have waited, then aborted the process).
    alone = start(folder, "out", 0, 2, free_port(), "--coordinator-timeout", "2")
    err = finish([alone])[0]
    assert alone.returncode == 2 and "process(es) 1 of 2 did not start within 2 s" in our_lines(err)[-1], err
    # A process started with another count than the coordinator's.
    port = free_port()
    procs = [start(folder, "out", 0, 2, port), start(folder, "out", 1, 3, port)]
    errs = finish(procs)
    assert [p.returncode for p in procs] == [2, 2]
    assert all("disagree on their number" in our_lines(e)[-1] for e in errs), errs


def test_assign_keeps_groups_whole_and_balances():
    assert cluster.assign([[0, 1, 2, 3], [4, 5, 6, 7]], 2) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert cluster.assign([[0, 1, 2, 3, 4, 5]], 2) == [[0, 1, 2], [3, 4, 5]]
    # Three groups over two processes: the big one alone, the small ones together.
    assert cluster.assign([[0, 1], [2, 3, 4, 5], [6, 7]], 2) == [[2, 3, 4, 5], [0, 1, 6, 7]]
    split = cluster.assign([[0, 1, 2], [3], [4, 5, 6, 7, 8]], 3)
    assert sorted(j for part in split for j in part) == list(range(9)) and [len(p) for p in split] == [3, 3, 3]
    assert cluster.assign([[0]], 4) == [[0], [], [], []]


def test_under_slurm_jax_finds_the_processes_itself(folder):
    """The SLURM recipe (`srun … jaxstyle sweep … --distributed`), as far as one machine allows:
    SLURM's environment simulated for two tasks on this host; no addresses or counts are given,
    JAX derives them (coordinator port from the job id)."""
    (folder / "spec.toml").write_text(SPEC.format(steps=2))
    for job_id in np.random.default_rng(0).permutation(4096):  # JAX's port: 61440 + job id % 4096
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", 61440 + int(job_id)))
                break
            except OSError:
                continue
    procs = []
    for i in range(2):
        env = dict(os.environ, SLURM_JOB_ID=str(job_id), SLURM_STEP_NODELIST="localhost", SLURM_NTASKS="2",
                   SLURM_PROCID=str(i), SLURM_LOCALID=str(i), SLURM_STEP_NUM_NODES="1")
        procs.append(subprocess.Popen([sys.executable, "-m", "jaxstyle", "sweep", str(folder / "spec.toml"), "-o",
                                       str(folder / "out"), "--distributed", "--quiet"],
                                      stderr=subprocess.PIPE, text=True, env=env))
    errs = finish(procs)
    assert [p.returncode for p in procs] == [0, 0], errs
    assert any("process 1 of 2" in line for line in our_lines(errs[1]))
    entries = [json.loads(line) for line in (folder / "out" / MANIFEST).read_text().splitlines()]
    assert len(entries) == 8 and sorted(e["process"] for e in entries) == [0] * 4 + [1] * 4
