"""Several processes, one sweep: starting ``jax.distributed`` with clear errors, sharing the work out
by compiled group, and the few collective steps a sweep needs (a barrier, an agreement).

JAX's runtime does the distributed work (the coordinator, the key-value store, gloo collectives on
CPU); this module only checks what JAX would otherwise abort the process on (an unreachable
coordinator, a busy port) or silently accept (processes started with different counts), and
decides which process runs which jobs.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Sequence

from ..errors import JaxstyleError


@dataclass(frozen=True)
class Processes:
    """This process's place among the sweep's processes."""

    index: int = 0
    count: int = 1

    def barrier(self, name: str) -> None:
        """Wait until every process got here (no-op alone)."""
        if self.count > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(name)

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds in every process (each process passes its own)."""
        return all(self.gathered(int(bool(flag))))

    def gathered(self, value: int) -> list[int]:
        """Every process's ``value``, by process index."""
        if self.count == 1:
            return [int(value)]
        import numpy as np
        from jax.experimental import multihost_utils

        return [int(v) for v in np.ravel(multihost_utils.process_allgather(np.int32(value)))]


ALONE = Processes()


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise JaxstyleError(f"--coordinator (={address!r}) must be HOST:PORT with a port from 1 to 65535, e.g. "
                            "10.0.0.1:8476 (process 0's machine)")
    return host.strip("[]"), int(port)


# HTTP/2's client connection preface and an empty SETTINGS frame: a gRPC server (JAX's coordinator)
# answers with a SETTINGS frame of its own; anything else (a web server) does not.
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _speaks_grpc(host: str, port: int, timeout: float = 10.0) -> bool:
    """Whether the server at ``host:port`` speaks HTTP/2, as JAX's coordinator (gRPC) does."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(_HTTP2_HELLO)
            header = b""
            while len(header) < 9:
                chunk = s.recv(9 - len(header))
                if not chunk:
                    return False
                header += chunk
    except OSError:
        return False
    return header[3] == 4  # the frame's type: SETTINGS


def _reachable(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(2.0, timeout)):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
            return True
        except OSError:
            return False


def start(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
          timeout: int = 300) -> Processes:
    """``jax.distributed.initialize`` with one-line errors; returns this process's place.

    With no arguments JAX detects the cluster (SLURM, Open MPI, a Cloud TPU slice). With
    ``coordinator`` (process 0's ``HOST:PORT``), ``num_processes`` and ``process_id`` given, the
    processes are started by hand (several on one machine, or any launcher). Checked before JAX is
    asked, because JAX aborts the process on them: process 0 can bind the port; the others reach it
    within ``timeout`` seconds. Checked after: every process was started with the same count.
    """
    import jax

    manual = (coordinator, num_processes, process_id)
    if any(v is not None for v in manual) and any(v is None for v in manual):
        raise JaxstyleError("give --coordinator, --num-processes and --process-id together (or none of them, "
                            "under a launcher JAX detects: SLURM, Open MPI, a Cloud TPU slice)")
    if timeout < 1:
        raise JaxstyleError(f"--coordinator-timeout (={timeout}) must be a positive number of seconds, e.g. 300")
    if coordinator is not None:
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise JaxstyleError(f"--process-id (={process_id}) must be in 0..{num_processes - 1} for --num-processes "
                                f"{num_processes}")
        host, port = _split_address(coordinator)
        if process_id == 0 and not _port_free(port):
            raise JaxstyleError(f"port {port} of the coordinator is in use on this machine; choose another "
                                f"--coordinator port (the same in every process)")
        if process_id != 0 and not _reachable(host, port, timeout):
            raise JaxstyleError(f"cannot reach the coordinator at {coordinator} within {timeout} s: start process 0 "
                                "(it hosts the coordinator), and check the address and that the port is open")
        if process_id != 0 and not _speaks_grpc(host, port):
            raise JaxstyleError(f"the server at {coordinator} is not a jax.distributed coordinator (it does not speak "
                                "gRPC): give process 0's address and the port its --coordinator names")
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id,
                                   initialization_timeout=timeout)
    except (ValueError, RuntimeError) as e:
        raise JaxstyleError(
            f"cannot start jax.distributed ({(str(e).splitlines() or [''])[0]}): run every process under a launcher "
            "that JAX detects (SLURM, Open MPI, a Cloud TPU slice), or give --coordinator, --num-processes and "
            "--process-id, or drop --distributed to run on this machine alone") from None
    here = Processes(jax.process_index(), jax.process_count())
    counts = here.gathered(num_processes if num_processes is not None else here.count)
    if len(set(counts)) > 1 or counts[0] != here.count:
        raise JaxstyleError(f"the processes disagree on their number: started with --num-processes "
                            f"{', '.join(map(str, counts))} (by process), the coordinator counts {here.count}; "
                            "give every process the same --num-processes")
    return here


def assign(groups: Sequence[Sequence[int]], processes: int) -> list[list[int]]:
    """The jobs of each process: whole compiled groups where possible, so that a process compiles a
    group only for a share of it worth the compilation.

    Groups larger than an even share (``ceil(jobs / processes)``) are cut into contiguous pieces of
    at most that size; pieces go, largest first, to the process with the fewest jobs so far (ties:
    the lowest index). Deterministic: every process computes the same answer from the same groups.

    Examples:
      >>> assign([[0, 1, 2, 3], [4, 5, 6, 7]], 2)   # two groups: one each, each compiles once
      [[0, 1, 2, 3], [4, 5, 6, 7]]
      >>> assign([[0, 1, 2, 3, 4, 5]], 2)           # one group: halves
      [[0, 1, 2], [3, 4, 5]]
    """
    total = sum(len(g) for g in groups)
    share = max(1, -(-total // processes))
    pieces = [list(g[k:k + share]) for g in groups for k in range(0, len(g), share)]
    pieces.sort(key=len, reverse=True)  # stable: equal sizes keep their order
    out: list[list[int]] = [[] for _ in range(processes)]
    for piece in pieces:
        target = min(range(processes), key=lambda p: (len(out[p]), p))
        out[target].extend(piece)
    return [sorted(jobs) for jobs in out]
