"""The same loss-and-gradient evaluation in PyTorch, for bench/speed.py's eval_s column to be compared with.

Not a jaxstyle dependency: run it in an environment that has torch and safetensors, e.g.

    python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 safetensors numpy
    /tmp/torchenv/bin/python bench/torch_reference.py

Same weights (the bundled file, dequantised), same layers (content relu4_2, style relu1_1…relu5_1),
same relative normalisation, max pooling, float32, on the CPU or (``--device cuda``) a GPU, where
TF32 is off so both libraries compute in full float32. ``--lbfgs N`` also times N iterations of
torch's own L-BFGS (no line search: one evaluation per iteration, history 10) at the first size.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = (2, 2, 4, 4, 4)
STYLE = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]


def load():
    t = load_file(ROOT / "weights" / "vgg19_caffe_q8.safetensors")
    params = {}
    for b, n in enumerate(BLOCKS):
        for i in range(n):
            name = f"conv{b + 1}_{i + 1}"
            k = t[f"{name}.table"][t[f"{name}.codes"]].transpose(3, 2, 0, 1)  # HWIO -> OIHW
            params[name] = (torch.from_numpy(np.ascontiguousarray(k)), torch.from_numpy(t[f"{name}.bias"]))
    return params


def features(params, x, last="relu5_1"):
    out = {}
    for b, n in enumerate(BLOCKS):
        for i in range(n):
            name = f"{b + 1}_{i + 1}"
            x = F.relu(F.conv2d(x, *params[f"conv{name}"], padding=1))
            out[f"relu{name}"] = x
            if f"relu{name}" == last:
                return out
        x = F.max_pool2d(x, 2)


def gram(f):
    c = f.shape[1]
    m = f.reshape(c, -1)
    return m @ m.T / m.shape[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", nargs="+", default=["512x384", "256x192"])
    ap.add_argument("--lbfgs", type=int, default=0, metavar="N")
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    params = {k: (w.to(dev), b.to(dev)) for k, (w, b) in load().items()}
    for n, size in enumerate(args.sizes):
        w, h = map(int, size.split("x"))
        g = torch.Generator().manual_seed(0)
        content = (torch.rand(1, 3, h, w, generator=g) * 255 - 120).to(dev)
        style = (torch.rand(1, 3, h, w, generator=g) * 255 - 120).to(dev)
        with torch.no_grad():
            p = features(params, content)["relu4_2"]
            s = {k: gram(v) for k, v in features(params, style).items() if k in STYLE}
        x = content.clone().requires_grad_(True)

        def loss_and_grad():
            x.grad = None
            f = features(params, x)
            loss = ((f["relu4_2"] - p) ** 2).sum() / (p**2).sum()
            for k in STYLE:
                loss = loss + 10 / len(STYLE) * ((gram(f[k]) - s[k]) ** 2).sum() / (s[k] ** 2).sum()
            loss.backward()
            return loss

        for _ in range(3):
            loss_and_grad()
        sync()
        times = []
        for _ in range(10 if dev.type == "cuda" else 5):
            t = time.perf_counter()
            loss_and_grad()
            sync()
            times.append(time.perf_counter() - t)
        where = torch.cuda.get_device_name() if dev.type == "cuda" else f"{torch.get_num_threads()} threads"
        print(f"torch {torch.__version__} {w}x{h}: eval_s {statistics.median(times):.4f} ({where})", flush=True)
        if args.lbfgs and n == 0:
            opt = torch.optim.LBFGS([x], lr=1.0, max_iter=args.lbfgs, max_eval=args.lbfgs, history_size=10,
                                    tolerance_grad=0.0, tolerance_change=0.0, line_search_fn=None)
            evals = [0]

            def closure():
                evals[0] += 1
                return loss_and_grad()

            sync()
            t = time.perf_counter()
            final = opt.step(closure)
            sync()
            print(f"torch L-BFGS {w}x{h}: {args.lbfgs} iterations, {evals[0]} evaluations, "
                  f"{time.perf_counter() - t:.2f} s, first loss {float(final):.4g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
