"""``jaxstyle sweep``: run or resume a sweep spec, alone or as one of several processes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import JaxstyleError
from ..model.hub import DEFAULT as DEFAULT_WEIGHTS
from ..model.hub import load as load_weights
from ..run import cluster
from ..run import sweep as sweeps
from .endings import Bar, resumable

SOME_JOBS_FAILED = 3  # the sweep ran; some jobs' inputs failed (1 stays jaxstyle's own bugs, 2 bad input)


def add_parsers(sub) -> None:
    """The ``sweep`` command."""
    s = sub.add_parser("sweep", prog="jaxstyle sweep", help="run or resume a sweep spec",
                       description="Run or resume a sweep spec (TOML or JSON); see jaxstyle/run/sweep.py.")
    s.add_argument("spec", help="sweep spec file (.toml or .json)")
    s.add_argument("-o", "--output", required=True, help="output folder (created; rerunning resumes)")
    s.add_argument("--batch", type=int, default=None, help="jobs per compiled batch (default: what fits in memory)")
    s.add_argument("--weights", default=DEFAULT_WEIGHTS, help="as for the main command")
    s.add_argument("--distributed", action="store_true",
                   help="one of several processes (jax.distributed): take this process's share of the jobs; under "
                        "SLURM, Open MPI or a Cloud TPU slice JAX finds the others, else give the next three")
    s.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="process 0's address (every process)")
    s.add_argument("--num-processes", type=int, default=None, metavar="N", help="how many processes")
    s.add_argument("--process-id", type=int, default=None, metavar="I", help="this process: 0 … N-1")
    s.add_argument("--coordinator-timeout", type=int, default=300, metavar="S",
                   help="seconds to wait for the coordinator and the other processes")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(run=run_sweep)


def run_sweep(args: argparse.Namespace, argv) -> int:
    """``jaxstyle sweep``: run or resume a sweep spec; exit :data:`SOME_JOBS_FAILED` if a job failed."""
    if args.batch is not None and args.batch < 1:
        raise JaxstyleError(f"--batch (={args.batch}) must be a positive number of jobs")
    manual = (args.coordinator, args.num_processes, args.process_id)
    if any(v is not None for v in manual) and not args.distributed:
        raise JaxstyleError("--coordinator, --num-processes and --process-id belong to --distributed; add it")
    processes = cluster.ALONE
    if args.distributed:
        processes = cluster.start(args.coordinator, args.num_processes, args.process_id, args.coordinator_timeout)
    bar = Bar(args.quiet, unit="job", desc="sweep")  # appears once the spec and the folder have been checked

    def kept() -> int:
        return len(sweeps.done_ids(Path(args.output))) if Path(args.output).is_dir() else 0

    with bar, resumable(kept, "job", args.output):
        counts = sweeps.run_sweep(args.spec, args.output, batch_size=args.batch, weights=load_weights(args.weights),
                                  progress=bar.show, processes=processes)
    who = f" (process {processes.index} of {processes.count})" if processes.count > 1 else ""
    print(f"sweep{who}: {counts['done']} done, {counts['skipped']} already done, {counts['failed']} failed, "
          f"{counts['groups']} compiled group(s); results in {args.output}"
          + (f"; contact sheet {sweeps.SHEET}" if processes.index == 0 and (Path(args.output) / sweeps.SHEET).is_file() else ""),
          file=sys.stderr)
    if counts["failed"]:
        print(f"jaxstyle: {counts['failed']} job(s) failed; their reasons are the \"failed\" lines of "
              f"{Path(args.output) / sweeps.MANIFEST}", file=sys.stderr)
        return SOME_JOBS_FAILED
    return 0
