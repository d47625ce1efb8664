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


_HELLO = "jaxstyle-rendezvous 1"  # what a process says to process 0 before JAX is started, with its place


def _line(sock: socket.socket, deadline: float) -> str | None:
    """One line from ``sock`` (without its newline), or ``None`` at EOF, a timeout or 200 bytes."""
    data = b""
    while not data.endswith(b"\n") and len(data) < 200:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(200 - len(data))
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return data.decode(errors="replace").strip() if data.endswith(b"\n") else None


def _host_rendezvous(port: int, count: int, timeout: float) -> None:
    """Process 0: listen on the coordinator's port until the other ``count - 1`` processes have said
    hello, then let them go on (and free the port for JAX's coordinator). JAX itself would wait the
    whole timeout for a process that never starts and then abort; here it is one line, naming who
    is missing, and a process started with another count is refused at once."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind(("", port))
        except OSError:
            raise JaxstyleError(f"port {port} of the coordinator is in use on this machine; choose another "
                                f"--coordinator port (the same in every process)") from None
        server.listen(count)
        arrived: dict[int, socket.socket] = {}
        wrong = None
        try:
            while len(arrived) < count - 1 and wrong is None and time.monotonic() < deadline:
                server.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    client, _ = server.accept()
                except OSError:
                    continue
                words = (_line(client, min(deadline, time.monotonic() + 10)) or "").split()
                if len(words) != 4 or " ".join(words[:2]) != _HELLO or not all(w.isdigit() for w in words[2:]):
                    client.close()  # not one of ours (a port scanner, a health check)
                    continue
                index, their_count = int(words[2]), int(words[3])
                arrived[index] = client
                if their_count != count:
                    wrong = (index, their_count)
            reply = "go" if wrong is None and len(arrived) == count - 1 else f"stop {count}"
            for client in arrived.values():
                try:
                    client.sendall((reply + "\n").encode())
                    _line(client, time.monotonic() + 5)  # wait for them to close first: the port stays free
                except OSError:
                    pass
        finally:
            for client in arrived.values():
                client.close()
    if wrong is not None:
        raise JaxstyleError(f"the processes disagree on their number: process {wrong[0]} was started with "
                            f"--num-processes {wrong[1]}, process 0 with {count}; give every process the same --num-processes")
    if len(arrived) < count - 1:
        missing = sorted(set(range(1, count)) - set(arrived))
        raise JaxstyleError(f"process(es) {', '.join(map(str, missing))} of {count} did not start within {timeout:g} s: "
                            "start every process with the same --coordinator, or raise --coordinator-timeout")


def _join_rendezvous(host: str, port: int, index: int, count: int, timeout: float, coordinator: str) -> None:
    """Processes 1 … N-1: say hello to process 0 and wait until every process has (see
    :func:`_host_rendezvous`)."""
    deadline = time.monotonic() + timeout
    if not _reachable(host, port, timeout):
        raise JaxstyleError(f"cannot reach the coordinator at {coordinator} within {timeout:g} s: start process 0 "
                            "(it hosts the coordinator), and check the address and that the port is open")
    try:
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(f"{_HELLO} {index} {count}\n".encode())
            reply = _line(sock, deadline + 5)
    except OSError:
        reply = None
    if reply == "go":
        return
    if reply is not None and reply.startswith("stop "):
        theirs = reply.split()[1]
        if theirs != str(count):
            raise JaxstyleError(f"the processes disagree on their number: process 0 was started with --num-processes "
                                f"{theirs}, this one ({index}) with {count}; give every process the same --num-processes")
        raise JaxstyleError("process 0 gave up waiting for the other processes within its --coordinator-timeout; "
                            "start every process, then run the same command again")
    if reply is None and time.monotonic() >= deadline:  # process 0 is still waiting for another process
        raise JaxstyleError(f"process 0 at {coordinator} did not let the processes start within {timeout:g} s: it "
                            "waits for every process; start them all with the same --coordinator, or raise "
                            "--coordinator-timeout")
    raise JaxstyleError(f"the server at {coordinator} is not process 0 of a jaxstyle sweep (it did not answer its "
                        "hello): give process 0's address and the port its --coordinator names")


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


def start(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
          timeout: int = 300) -> Processes:
    """``jax.distributed.initialize`` with one-line errors; returns this process's place.

    With no arguments JAX detects the cluster (SLURM, Open MPI, a Cloud TPU slice). With
    ``coordinator`` (process 0's ``HOST:PORT``), ``num_processes`` and ``process_id`` given, the
    processes are started by hand (several on one machine, or any launcher); they meet first on the
    coordinator's port (process 0 listens, the others say hello with their place and count), because
    JAX aborts the process on what that finds: a busy port, a process that never starts, an address
    that is not process 0, another process count. Checked after JAX starts, for launchers JAX
    detects: every process counts the same processes.
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
        if process_id == 0:
            _host_rendezvous(port, num_processes, timeout)
        else:
            _join_rendezvous(host, port, process_id, num_processes, timeout, coordinator)
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
