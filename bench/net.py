"""The feed-forward network (jaxstyle.net) against PyTorch's TransformerNet and against one stylize step.

    python bench/net.py --torch torchenv/bin/python                 # the CPU table
    python bench/net.py --sizes 512 --train-steps 3                 # quicker, jaxstyle only

For each size (long side, 4:3 photos): seconds of one forward pass of a width-32 network (median of 3
after compilation) and the process's peak RSS, each size in a fresh process; the same for PyTorch's
TransformerNet (bench/torch_net.py, same weights: the outputs are compared); and the seconds of one
``stylize`` step (L-BFGS, defaults) at that size. Then training throughput: images/s at 256 px, batch
4, jaxstyle's train step against PyTorch's loop on the same objective. ``--device gpu`` runs jaxstyle
on a GPU (with ``JAX_PLATFORMS`` unset where JAX finds one; PyTorch with ``--torch-device cuda``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def one_apply(size: int, net_path: str) -> dict:
    import jax

    from jaxstyle import net
    from jaxstyle.net import bands

    network = net.load(net_path)
    photo = np.random.default_rng(0).uniform(size=(size * 3 // 4, size, 3)).astype(np.float32)
    params = jax.device_put(network.params)
    x = jax.numpy.asarray(bands.padded(photo))
    t = time.perf_counter()
    jax.block_until_ready(bands.whole_on_device(params, x))
    compile_s = time.perf_counter() - t
    times = []
    for _ in range(3):
        t = time.perf_counter()
        jax.block_until_ready(bands.whole_on_device(params, x))
        times.append(time.perf_counter() - t)
    return {"size": size, "apply_s": statistics.median(times), "compile_s": compile_s, "peak_rss_gb": peak_rss_gb(),
            "device": str(jax.devices()[0].platform)}


def one_step(size: int) -> dict:
    import jaxstyle
    from jaxstyle.examples import CONTENT, STYLE

    steps = 4
    r = jaxstyle.stylize(CONTENT, STYLE, jaxstyle.StyleConfig(size=size, steps=steps, chunk=1, scales=1))
    t = r.timings
    return {"size": size, "step_s": (t["optimize"] - t["first_step"]) / (steps - 1), "peak_rss_gb": peak_rss_gb()}


def train_throughput(steps: int, crop: int, batch: int) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    from jaxstyle import net
    from jaxstyle.examples import STYLE
    from jaxstyle.model.weights import load_bundled
    from jaxstyle.net import training, transformer
    from jaxstyle.evaluate import objective
    from jaxstyle.run import problem as problem_lib

    config = net.TrainConfig(crop=crop, batch=batch)
    vgg = problem_lib.network(config.style, load_bundled())
    from jaxstyle.io.image import load_image

    one = training.painting_problem(vgg, [load_image(STYLE)], config.style, crop)
    problem = objective.Problem(vgg, jax.tree.map(lambda a: a[None], one.targets),
                                jax.tree.map(lambda a: a[None], one.coef), one.spec)
    params = jax.vmap(lambda k: transformer.init(k))(jax.random.key(0)[None])
    adam = jax.vmap(optax.scale_by_adam().init)(params)
    rng = np.random.default_rng(0)
    lr = jnp.float32(1e-3)
    for _ in range(2):  # compile, warm up
        params, adam, terms = training.train_step(params, adam, jnp.asarray(rng.uniform(size=(batch, crop, crop, 3)),
                                                                              jnp.float32), problem, lr)
    jax.block_until_ready(terms)
    t0 = time.perf_counter()
    for _ in range(steps):
        params, adam, terms = training.train_step(params, adam, jnp.asarray(rng.uniform(size=(batch, crop, crop, 3)),
                                                                              jnp.float32), problem, lr)
    jax.block_until_ready(terms)
    seconds = time.perf_counter() - t0
    return {"train_images_per_s": steps * batch / seconds, "crop": crop, "batch": batch, "steps": steps,
            "peak_rss_gb": peak_rss_gb()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[512, 1024, 2048])
    ap.add_argument("--torch", help="an interpreter with torch (bench/torch_net.py)")
    ap.add_argument("--torch-device", default="cpu")
    ap.add_argument("--train-steps", type=int, default=5)
    ap.add_argument("--no-step", action="store_true", help="skip the stylize step column")
    ap.add_argument("--child", nargs=3, metavar=("KIND", "SIZE", "NET"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, size, net_path = args.child
        result = {"apply": lambda: one_apply(int(size), net_path), "step": lambda: one_step(int(size)),
                  "train": lambda: train_throughput(int(size), 256, 4)}[kind]()
        print(json.dumps(result))
        return 0

    import jax

    from jaxstyle.net import store, transformer

    work = Path(tempfile.mkdtemp(prefix="jaxstyle-bench-net-"))
    net_path = work / "random.safetensors"
    store.save(net_path, store.Network(jax.device_get(transformer.init(jax.random.key(0))), {}))
    rows = []
    for size in args.sizes:
        row = {"size": size, **{f"jax_{k}": v for k, v in _child(["--child", "apply", str(size), str(net_path)]).items()}}
        if not args.no_step:
            row.update({f"step_{k}": v for k, v in _child(["--child", "step", str(size), "-"]).items()})
        if args.torch:
            out = subprocess.run([args.torch, str(ROOT / "bench" / "torch_net.py"), "--net", str(net_path), "--apply",
                                  str(size), "--device", args.torch_device], capture_output=True, text=True,
                                 check=True).stdout
            row.update({f"torch_{k}": v for k, v in json.loads(out.strip().splitlines()[-1]).items()})
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.torch:  # the same weights give the same image
        from jaxstyle import net
        from jaxstyle.examples import CONTENT
        from jaxstyle.io.image import load_image

        photo = load_image(CONTENT, 256)
        photo = photo[: photo.shape[0] // 4 * 4, : photo.shape[1] // 4 * 4]
        np.save(work / "photo.npy", photo)
        subprocess.run([args.torch, str(ROOT / "bench" / "torch_net.py"), "--net", str(net_path), "--image",
                        str(work / "photo.npy"), "--out", str(work / "torch.npy"), "--device", args.torch_device],
                       check=True)
        diff = float(np.abs(np.load(work / "torch.npy") - net.apply(net.load(net_path), photo)).max())
        print(f"same weights, same photo ({photo.shape[1]}x{photo.shape[0]}): max |jaxstyle - PyTorch| = {diff:.2e}")
    train = _child(["--child", "train", str(args.train_steps), "-"])
    print(json.dumps({"jaxstyle_train": train}), flush=True)
    torch_train = None
    if args.torch:
        out = subprocess.run([args.torch, str(ROOT / "bench" / "torch_net.py"), "--train", str(args.train_steps),
                              "--device", args.torch_device], capture_output=True, text=True, check=True).stdout
        torch_train = json.loads(out.strip().splitlines()[-1])
        print(json.dumps({"torch_train": torch_train}), flush=True)
    print("\n| long side (4:3) | jaxstyle apply s (peak RSS GB) | PyTorch apply s (peak RSS GB) | x PyTorch | "
          "one stylize step s (peak RSS GB) | stylize step / apply |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        torch_cell = f"{r['torch_apply_s']:.3f} ({r['torch_peak_rss_gb']:.2f})" if "torch_apply_s" in r else "-"
        ratio = f"{r['jax_apply_s'] / r['torch_apply_s']:.2f}x" if "torch_apply_s" in r else "-"
        step = f"{r['step_step_s']:.2f} ({r['step_peak_rss_gb']:.2f})" if "step_step_s" in r else "-"
        per = f"{r['step_step_s'] / r['jax_apply_s']:.1f}" if "step_step_s" in r else "-"
        print(f"| {r['size']} | {r['jax_apply_s']:.3f} ({r['jax_peak_rss_gb']:.2f}) | {torch_cell} | {ratio} | {step} | {per} |")
    line = f"\ntraining, 256 px, batch 4: jaxstyle {train['train_images_per_s']:.2f} images/s"
    if torch_train:
        line += (f", PyTorch {torch_train['train_images_per_s']:.2f} images/s "
                 f"({train['train_images_per_s'] / torch_train['train_images_per_s']:.2f}x PyTorch's rate)")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
