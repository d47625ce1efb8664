"""The memory budget is the smallest real limit on the process: cgroups (v1, v2), rlimits, the host."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxstyle import JaxstyleError
from jaxstyle.evaluate import memory

GB = 1 << 30
EXAMPLES = Path(__file__).resolve().parent.parent / "jaxstyle" / "examples"


def fake_proc(tmp_path, cgroup: str, available=20 * GB, total=24 * GB, vm_size=2 * GB, vm_data=1 * GB) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(cgroup)
    (proc / "meminfo").write_text(f"MemTotal:       {total // 1024} kB\nMemFree:  1 kB\nMemAvailable:   {available // 1024} kB\n")
    (proc / "self" / "status").write_text(f"Name:\tpython\nVmSize:\t {vm_size // 1024} kB\nVmData:\t {vm_data // 1024} kB\n")
    return proc


def write(folder: Path, **files) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("__", ".")).write_text(str(text))


def test_without_limits_the_host_memory_is_the_budget(tmp_path):
    proc = fake_proc(tmp_path, "0::/\n")
    limit = memory.memory_limit(proc=proc, cgroup_root=tmp_path / "cgroup", rlimits={}, accelerator=False)
    assert (limit.available, limit.total) == (20 * GB, 24 * GB) and "host" in limit.source
    assert memory.budget(None, limit) == (0.7 * 20 * GB, "70% of the host's available memory")
    assert memory.budget(3 * GB, limit) == (3 * GB, "--max-memory")


def test_cgroup_v2_limit_minus_usage_with_reclaimable_cache_not_counted(tmp_path):
    proc = fake_proc(tmp_path, "0::/user.slice/job42\n")
    root = tmp_path / "cgroup"
    write(root, cgroup__controllers="memory")
    write(root / "user.slice", memory__max="max")
    write(root / "user.slice" / "job42", memory__max=6 * GB, memory__current=3 * GB,
          memory__stat=f"anon {2 * GB}\ninactive_file {GB}\n")
    limit = memory.memory_limit(proc=proc, cgroup_root=root, rlimits={}, accelerator=False)
    assert limit.available == 6 * GB - (3 * GB - GB) and limit.total == 6 * GB
    assert "memory.max (v2" in limit.source and "job42" in limit.source


def test_an_ancestor_cgroup_can_be_the_tighter_limit(tmp_path):
    """A SLURM job's step sits inside the job's cgroup; the job's limit applies to the step too."""
    proc = fake_proc(tmp_path, "0::/slurm/job7/step0\n")
    root = tmp_path / "cgroup"
    write(root, cgroup__controllers="memory")
    write(root / "slurm" / "job7", memory__max=4 * GB, memory__current=GB)
    write(root / "slurm" / "job7" / "step0", memory__max=10 * GB, memory__current=GB)
    limit = memory.memory_limit(proc=proc, cgroup_root=root, rlimits={}, accelerator=False)
    assert (limit.available, limit.total) == (3 * GB, 4 * GB) and "job7 " not in limit.source
    assert limit.source.endswith("job7)")


def test_cgroup_v1_memory_controller_and_its_unlimited_value(tmp_path):
    proc = fake_proc(tmp_path, "5:cpu:/\n4:memory:/docker/abc\n0::/\n")
    root = tmp_path / "cgroup"
    write(root / "memory", memory__limit_in_bytes=9223372036854771712)  # "unlimited"
    write(root / "memory" / "docker" / "abc", memory__limit_in_bytes=2 * GB, memory__usage_in_bytes=GB // 2,
          memory__stat=f"cache {GB}\ntotal_inactive_file {GB // 4}\n")
    limit = memory.memory_limit(proc=proc, cgroup_root=root, rlimits={}, accelerator=False)
    assert limit.available == 2 * GB - (GB // 2 - GB // 4) and limit.total == 2 * GB
    assert "memory.limit_in_bytes (v1" in limit.source


def test_rlimits_count_what_the_process_maps_already(tmp_path):
    proc = fake_proc(tmp_path, "0::/\n", vm_size=3 * GB, vm_data=GB)
    limit = memory.memory_limit(proc=proc, cgroup_root=tmp_path / "none", rlimits={"RLIMIT_AS": 16 * GB},
                                accelerator=False)
    assert (limit.available, limit.total) == (13 * GB, 16 * GB) and "RLIMIT_AS" in limit.source
    limit = memory.memory_limit(proc=proc, cgroup_root=tmp_path / "none", rlimits={"RLIMIT_DATA": 5 * GB},
                                accelerator=False)
    assert limit.available == 4 * GB and "RLIMIT_DATA" in limit.source


def test_max_memory_above_the_hard_limit_is_refused_naming_it(tmp_path):
    proc = fake_proc(tmp_path, "0::/\n")
    limit = memory.memory_limit(proc=proc, cgroup_root=tmp_path / "none", rlimits={"RLIMIT_AS": 8 * GB},
                                accelerator=False)
    memory.check_max_memory(7 * GB, limit)
    with pytest.raises(JaxstyleError, match=r"--max-memory 9 GB is more than this process may use: 8 GB .*RLIMIT_AS"):
        memory.check_max_memory(9 * GB, limit)


BASELINE = """
import jax, jax.numpy as jnp
import jaxstyle.cli.app
jnp.ones(4).block_until_ready()
print([int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmSize:')][0])
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ulimit -v and /proc are Linux's")
def test_under_an_address_space_limit_a_run_streams_to_its_output(tmp_path):
    """A real process capped (ulimit -v) at 1.6 GiB above what a started jaxstyle maps anyway (measured
    first: it differs between environments): the budget follows the cap, not the host's free memory,
    so the 512 px image (whole on this host) streams in bands, the run ends with its output, and the
    sidecar names the limit."""
    baseline_kib = int(subprocess.run([sys.executable, "-c", BASELINE], capture_output=True, text=True,
                                      check=True).stdout.split()[-1])
    cap_kib = baseline_kib + int(1.6 * 1024 * 1024)
    out = tmp_path / "out.png"
    command = (f"ulimit -v {cap_kib} && exec {sys.executable} -m jaxstyle {EXAMPLES / 'chelsea.jpg'} "
               f"{EXAMPLES / 'starry_night.jpg'} -o {out} --size 512 --steps 1 --scales 1 --style-scale 0.5")
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "JAXSTYLE_COMPILE_CACHE": "0"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "streamed" in result.stderr
    budget = json.loads((tmp_path / "out.png.json").read_text())["memory_budget"]
    assert "RLIMIT_AS" in budget["source"] and budget["bytes"] < 0.7 * 1.7 * GB
