"""PyTorch's fast_neural_style TransformerNet (pytorch/examples), for bench/net.py to race jaxstyle.net against.

Not a jaxstyle dependency: run it with the interpreter of an environment that has torch, numpy and
safetensors (``python -m venv torchenv && torchenv/bin/pip install torch==2.13.0 safetensors numpy pillow``).

The layers are pytorch/examples' (ConvLayer with reflection padding, InstanceNorm2d(affine=True),
ResidualBlock, UpsampleConvLayer: nearest-neighbour interpolation then a convolution); the only change
is jaxstyle's sigmoid on the output, so that the same weights give the same image. ``--net FILE`` loads
a jaxstyle network file into it (HWIO kernels to OIHW).

    --apply 512 1024 2048       seconds per forward pass (median of 3 after a warm-up), peak RSS
    --image IN.npy --out OUT.npy   the network on one (H, W, 3) image, for an equivalence check
    --train STEPS               training images/s at --crop 256, --batch 4: the same objective as
                                jaxstyle's defaults (relative content and Gram errors, relu4_2 and relu1_1..5_1,
                                content 1, style 10), the bundled VGG-19 dequantised, Adam lr 1e-3

Prints one JSON object per measurement.
"""

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch_reference import STYLE, features, gram, load  # noqa: E402


class ConvLayer(torch.nn.Module):
    def __init__(self, cin, cout, kernel, stride=1):
        super().__init__()
        self.pad = torch.nn.ReflectionPad2d(kernel // 2)
        self.conv = torch.nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x):
        return self.conv(self.pad(x))


class Upsample(ConvLayer):
    def forward(self, x):
        return super().forward(F.interpolate(x, scale_factor=2, mode="nearest"))


class TransformerNet(torch.nn.Module):
    def __init__(self, w=32):
        super().__init__()
        norm = lambda c: torch.nn.InstanceNorm2d(c, affine=True)  # noqa: E731
        self.conv1, self.in1 = ConvLayer(3, w, 9), norm(w)
        self.conv2, self.in2 = ConvLayer(w, 2 * w, 3, 2), norm(2 * w)
        self.conv3, self.in3 = ConvLayer(2 * w, 4 * w, 3, 2), norm(4 * w)
        self.res = torch.nn.ModuleList(
            torch.nn.ModuleList([ConvLayer(4 * w, 4 * w, 3), norm(4 * w), ConvLayer(4 * w, 4 * w, 3), norm(4 * w)])
            for _ in range(5))
        self.up1, self.in4 = Upsample(4 * w, 2 * w, 3), norm(2 * w)
        self.up2, self.in5 = Upsample(2 * w, w, 3), norm(w)
        self.out = ConvLayer(w, 3, 9)

    def forward(self, x):
        y = F.relu(self.in1(self.conv1(x)))
        y = F.relu(self.in2(self.conv2(y)))
        y = F.relu(self.in3(self.conv3(y)))
        for c1, n1, c2, n2 in self.res:
            y = y + n2(c2(F.relu(n1(c1(y)))))
        y = F.relu(self.in4(self.up1(y)))
        y = F.relu(self.in5(self.up2(y)))
        return torch.sigmoid(self.out(y))

    def load_jaxstyle(self, path):
        from safetensors.numpy import load_file

        t = load_file(path)

        def conv(layer, name):
            layer.conv.weight.data = torch.from_numpy(np.ascontiguousarray(t[f"{name}/kernel"].transpose(3, 2, 0, 1)))
            layer.conv.bias.data = torch.from_numpy(t[f"{name}/bias"].copy())

        def norm(layer, name):
            layer.weight.data = torch.from_numpy(t[f"{name}_norm/scale"].copy())
            layer.bias.data = torch.from_numpy(t[f"{name}_norm/bias"].copy())

        for layer, n, name in ((self.conv1, self.in1, "conv1"), (self.conv2, self.in2, "conv2"),
                               (self.conv3, self.in3, "conv3"), (self.up1, self.in4, "up1"), (self.up2, self.in5, "up2")):
            conv(layer, name)
            norm(n, name)
        for b, (c1, n1, c2, n2) in enumerate(self.res, 1):
            conv(c1, f"res{b}_1"), norm(n1, f"res{b}_1"), conv(c2, f"res{b}_2"), norm(n2, f"res{b}_2")
        conv(self.out, "out")
        return self


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


DEVICE = torch.device("cpu")


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def as_tensor(rgb01: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb01.transpose(2, 0, 1)[None], np.float32)).to(DEVICE)


def preprocess(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> caffe input (x 255, BGR, ImageNet mean removed), differentiably."""
    mean = torch.tensor([103.939, 116.779, 123.68], device=x.device).reshape(1, 3, 1, 1)
    return x.flip(1) * 255.0 - mean


def train(net, steps, crop, batch):
    params = {k: (w.to(DEVICE), b.to(DEVICE)) for k, (w, b) in load().items()}
    rng = np.random.default_rng(0)
    style = preprocess(as_tensor(rng.uniform(size=(crop, crop, 3)).astype(np.float32)))
    with torch.no_grad():
        targets = {k: gram(v) for k, v in features(params, style).items() if k in STYLE}
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step():
        photos = torch.from_numpy(rng.uniform(size=(batch, 3, crop, crop)).astype(np.float32)).to(DEVICE)
        with torch.no_grad():
            content = features(params, preprocess(photos), "relu4_2")["relu4_2"]
        out = features(params, preprocess(net(photos)))
        loss = 0.0
        for i in range(batch):  # per photo, as jaxstyle: relative errors, layer weights 1/5
            c = ((out["relu4_2"][i] - content[i]) ** 2).sum() / (content[i] ** 2).sum()
            s = sum(((gram(out[k][i:i + 1]) - targets[k]) ** 2).sum() / (targets[k] ** 2).sum() for k in STYLE) / 5
            loss = loss + (c + 10.0 * s) / batch
        opt.zero_grad()
        loss.backward()
        opt.step()

    step(), step()  # warm-up
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = time.perf_counter() - t0
    return {"train_images_per_s": steps * batch / seconds, "crop": crop, "batch": batch, "steps": steps,
            "threads": torch.get_num_threads(), "torch": torch.__version__, "peak_rss_gb": peak_rss_gb()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", help="a jaxstyle network file (default: random weights)")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--apply", nargs="*", type=int, default=[], metavar="PX")
    ap.add_argument("--image")
    ap.add_argument("--out")
    ap.add_argument("--train", type=int, default=0, metavar="STEPS")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # full float32, as jaxstyle's
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    net = TransformerNet(args.width)
    if args.net:
        net.load_jaxstyle(args.net)
    net = net.to(DEVICE)
    if args.image:
        with torch.no_grad():
            out = net(as_tensor(np.load(args.image)))[0].cpu().numpy().transpose(1, 2, 0)
        np.save(args.out, out)
    for size in args.apply:
        x = as_tensor(np.random.default_rng(0).uniform(size=(size * 3 // 4, size, 3)).astype(np.float32))
        times = []
        with torch.no_grad():
            net(x)
            for _ in range(3):
                sync()
                t = time.perf_counter()
                net(x)
                sync()
                times.append(time.perf_counter() - t)
        print(json.dumps({"size": size, "apply_s": statistics.median(times), "peak_rss_gb": peak_rss_gb(),
                          "threads": torch.get_num_threads()}), flush=True)
    if args.train:
        print(json.dumps(train(net, args.train, args.crop, args.batch)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
