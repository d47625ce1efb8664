"""Where one loss-and-gradient evaluation spends its time: XLA's ops, timed by jax.profiler. Prints a table.

    python bench/eval_profile.py                    # 512x384, tubingen x starry_night (or the bundled pair)
    python bench/eval_profile.py --size 256 --top 30

Runs the jitted ``value_and_grad(objective.total_loss)`` of bench/speed.py a few times under
``jax.profiler.trace``, reads the trace back (``jax.profiler.ProfileData``), and sums the time of
each compiled op (convolutions, fusions, dots) over the traced evaluations. Each op is labelled with
its kind and output shape from the compiled HLO, and convolutions and dots with their FLOPs and
GFLOP/s, so the gap between the FLOP count and the wall time has names. On the CPU it first times a
4096x4096 matrix product in jax and NumPy: the machine's rate now, which the convolutions' rates are
read against (these shared machines vary from day to day).
"""

from __future__ import annotations

import argparse
import collections
import math
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from timing import seconds  # noqa: E402


_INSTR = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = \w+\[([\d,]*)\]\S* ([\w\-]+)\((.*)$")


def _flops(opcode: str, shape: tuple, rest: str, shapes: dict) -> int:
    """FLOPs of a convolution or dot instruction (2 per multiply-add), from its operands' shapes."""
    operands = re.findall(r"%([\w.\-]+)", rest.split(")")[0])
    if opcode == "convolution" and len(operands) > 1 and operands[1] in shapes:
        labels = re.search(r"dim_labels=\w+_(\w+)->", rest)
        rhs = shapes[operands[1]]
        out_features = rhs[labels.group(1).index("o")] if labels else 1
        return 2 * math.prod(shape) * math.prod(rhs) // out_features
    if opcode == "dot" and operands and operands[0] in shapes:
        contract = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", rest)
        k = math.prod(shapes[operands[0]][int(d)] for d in contract.group(1).split(",") if d) if contract else 1
        return 2 * math.prod(shape) * k
    return 0


def hlo_ops(text: str) -> dict:
    """{instruction name: (kind, output shape, FLOPs)} for the entry computation of compiled HLO text.

    A fusion's kind is its fusion kind (``ynn_fusion`` wraps XNNPACK/YNNPACK convolutions and dots) and
    its FLOPs those of the convolutions and dots inside the computation it calls.
    """
    shapes, flops_in, entry = {}, {}, []
    computation = None
    for line in text.splitlines():
        head = re.match(r"^(ENTRY )?%([\w.\-]+) .*\{$", line)
        if head:
            computation = "ENTRY" if head.group(1) else head.group(2)
            continue
        m = _INSTR.match(line)
        if not m or computation is None:
            continue
        name, dims, opcode, rest = m.groups()
        shape = tuple(int(d) for d in dims.split(",") if d)
        shapes[name] = shape
        f = _flops(opcode, shape, rest, shapes)
        if computation == "ENTRY":
            entry.append((name, opcode, shape, rest, f))
        else:
            flops_in[computation] = flops_in.get(computation, 0) + f
    ops = {}
    for name, opcode, shape, rest, f in entry:
        called = re.search(r"calls=%([\w.\-]+)", rest)
        kind = re.sub(r"\.\d+$", "", name) if opcode == "fusion" else opcode
        ops[name] = (kind, shape, f + (flops_in.get(called.group(1), 0) if called else 0))
    return ops


def matmul_rate(n: int = 4096, repeats: int = 5) -> dict:
    """This machine's float32 matrix-multiply rate (GFLOP/s, median of ``repeats``) in jax and NumPy:
    the ceiling to read the convolutions' rates against."""
    import jax
    import numpy as np

    a = np.random.default_rng(0).random((n, n), np.float32)
    x = jax.device_put(a)
    product = jax.jit(lambda m: m @ m)
    runs = {"jax": lambda: jax.block_until_ready(product(x)), "numpy": lambda: a @ a}
    rates = {}
    for name, run in runs.items():
        run()
        rates[name] = 2 * n**3 / statistics.median(seconds(lambda _: run(), repeats)) / 1e9
    return rates


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--images", nargs=2, metavar=("CONTENT", "STYLE"), help="default: as bench/speed.py")
    ap.add_argument("--plain-kernels", action="store_true",
                    help="without the precomputed backward kernels (vgg.with_backward_kernels): XLA copies each")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp

    from speed import images
    from jaxstyle import StyleConfig, load_bundled
    from jaxstyle.evaluate import objective
    from jaxstyle.run import problem

    content, style = args.images or images()
    cfg = StyleConfig(size=args.size)
    c, styles = problem.prepare(content, style, cfg)
    weights = load_bundled() if args.plain_kernels else problem.network(cfg, load_bundled())
    data = problem.make_problem(weights, c, problem.styles_at(styles, cfg.size, cfg), cfg)
    vg = jax.jit(jax.value_and_grad(objective.total_loss))
    x0 = jnp.asarray(c)
    ops = hlo_ops(vg.lower(x0, data).compile().as_text())
    jax.block_until_ready(vg(x0, data))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with jax.profiler.trace(tmp):
            for i in range(args.repeats):
                jax.block_until_ready(vg(x0 + 1e-3 * i, data))
        wall = (time.perf_counter() - t0) / args.repeats
        (path,) = Path(tmp).rglob("*.xplane.pb")
        prof = jax.profiler.ProfileData.from_file(str(path))
    totals = collections.Counter()
    for plane in prof.planes:
        for line in plane.lines:
            for event in line.events:
                if event.name in ops:
                    totals[event.name] += event.duration_ns / 1e9 / args.repeats
    traced = sum(totals.values())
    by_kind = collections.Counter()
    for name, s in totals.items():
        by_kind[ops[name][0]] += s
    flops = sum(f for _, _, f in ops.values())
    conv_s = sum(s for name, s in totals.items() if ops[name][2])
    print(f"{c.shape[1]}x{c.shape[0]}: {wall:.3f} s per evaluation (wall, traced), ops sum {traced:.3f} s "
          f"(ops may overlap on 2 threads); {flops / 1e9:.1f} GFLOP in convolutions and dots "
          f"-> {flops / 1e9 / wall:.0f} GFLOP/s overall, {flops / 1e9 / max(conv_s, 1e-9):.0f} GFLOP/s in the ops "
          f"that hold them ({conv_s:.3f} s)")
    if jax.default_backend() == "cpu":
        rates = matmul_rate()
        print(f"ceiling: a 4096x4096 float32 matrix product runs at {rates['jax']:.0f} GFLOP/s in jax, "
              f"{rates['numpy']:.0f} in NumPy on this machine now; this evaluation at that rate: "
              f"{flops / 1e9 / max(rates.values()):.2f} s")
    print("\n| kind | s | share |\n|---|---|---|")
    for kind, s in by_kind.most_common():
        print(f"| {kind} | {s:.3f} | {s / max(traced, 1e-9):.0%} |")
    print("\n| op | kind | output shape | s | GFLOP | GFLOP/s |\n|---|---|---|---|---|---|")
    for name, s in totals.most_common(args.top):
        opcode, shape, f = ops[name]
        rate = f"{f / 1e9 / s:.0f}" if f and s else ""
        print(f"| {name} | {opcode} | {'x'.join(map(str, shape))} | {s:.4f} | {f / 1e9:.2f} | {rate} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
