"""Winograd F(2x2, 3x3) convolutions against XLA:CPU's direct ones, at VGG-19's layer shapes.

    python bench/winograd.py

Tried for issue 12 (a faster evaluation on the CPU): Winograd's minimal filtering computes a 3x3
convolution with 2.25x fewer multiplications (16 per 2x2 output tile instead of 36) as 16 batched
matrix products between transforms of the input and output. The script checks it against
``lax.conv_general_dilated`` (relative error ~1e-6) and times both, jitted, at the shapes of a
512x384 evaluation. Measured on the 2-core CPU (one run):

| layer shape | direct | Winograd | ratio |
|---|---|---|---|
| 384x512, 64 -> 64 (conv1_2) | 155 ms (93 GFLOP/s) | 403 ms | 2.60 |
| 192x256, 128 -> 128 (conv2_2) | 198 ms | 263 ms | 1.33 |
| 96x128, 256 -> 256 (conv3_x) | 200 ms | 185 ms | 0.92 |
| 48x64, 512 -> 512 (conv4_x) | 142 ms | 108 ms | 0.76 |
| 24x32, 512 -> 512 (conv5_1) | 36 ms | 26 ms | 0.71 |

The transforms are memory-bound (the input and output transforms move 4x each layer's input and
output), and on two cores they cost more than the multiplications saved wherever the maps are
large; only the 512-channel layers gain, too little of an evaluation (about 10% at best) to be worth
a second convolution path. Not adopted.
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import seconds  # noqa: E402

G = jnp.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], jnp.float32)  # kernel transform


def transform_kernel(k: jax.Array) -> jax.Array:
    """(3, 3, Cin, Cout) HWIO -> (16, Cin, Cout): ``G k G^T`` per input/output channel pair."""
    u = jnp.einsum("xa,yb,abio->xyio", G, G, k, precision=jax.lax.Precision.HIGHEST)
    return u.reshape(16, k.shape[2], k.shape[3])


def _input_transform(d0, d1, d2, d3):
    """``B^T d`` along one axis, for four rows (or columns) of 4x4 windows."""
    return (d0 - d2, d1 + d2, d2 - d1, d1 - d3)


def winograd_valid(xp: jax.Array, u: jax.Array) -> jax.Array:
    """Unpadded 3x3 convolution of ``xp`` (Hp, Wp, Cin; Hp - 2 and Wp - 2 even) by the transformed
    kernel ``u``: 4x4 windows every 2 pixels, transformed, multiplied, transformed back to 2x2."""
    hp, wp, cin = xp.shape
    th, tw = (hp - 2) // 2, (wp - 2) // 2
    rows = _input_transform(*(xp[a:a + 2 * th:2] for a in range(4)))  # each (th, Wp, Cin)
    v = [t for r in rows for t in _input_transform(*(r[:, b:b + 2 * tw:2] for b in range(4)))]  # (th, tw, Cin)
    m = jnp.einsum("ktc,kcd->ktd", jnp.stack(v).reshape(16, th * tw, cin), u).reshape(4, 4, th, tw, -1)
    p0, p1 = m[0] + m[1] + m[2], m[1] - m[2] - m[3]  # A^T m A, rows then columns
    y = jnp.stack([jnp.stack([p[0] + p[1] + p[2], p[1] - p[2] - p[3]], axis=2) for p in (p0, p1)], axis=1)
    return y.reshape(2 * th, 2 * tw, -1)  # (th, 2, tw, 2, Cout) interleaved


def winograd_same(x: jax.Array, u: jax.Array) -> jax.Array:
    h, w, _ = x.shape
    return winograd_valid(jnp.pad(x, ((1, 1 + h % 2), (1, 1 + w % 2), (0, 0))), u)[:h, :w]


def direct(x: jax.Array, k: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(x[None], k, (1, 1), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]

def main() -> int:
    rng = np.random.default_rng(0)
    for (h, w, cin, cout) in [(384, 512, 64, 64), (192, 256, 128, 128), (96, 128, 256, 256), (48, 64, 512, 512),
                              (24, 32, 512, 512), (95, 127, 256, 256)]:
        x = jnp.asarray(rng.standard_normal((h, w, cin)), jnp.float32)
        k = jnp.asarray(rng.standard_normal((3, 3, cin, cout)) / np.sqrt(9 * cin), jnp.float32)
        u = transform_kernel(k)
        fd, fw = jax.jit(direct), jax.jit(winograd_same)
        a, b = fd(x, k).block_until_ready(), fw(x, u).block_until_ready()
        err = float(jnp.linalg.norm(a - b) / jnp.linalg.norm(a))
        td, tw = best_time(fd, x, k), best_time(fw, x, u)
        gflop = 2 * h * w * cin * cout * 9 / 1e9
        print(f"{h}x{w} {cin}->{cout}: error {err:.1e}, direct {td * 1e3:.1f} ms ({gflop / td:.0f} GFLOP/s), "
              f"Winograd {tw * 1e3:.1f} ms, ratio {tw / td:.2f}", flush=True)
    return 0


def best_time(f, *args, repeats: int = 5) -> float:
    return min(seconds(lambda _: f(*args).block_until_ready(), repeats))


if __name__ == "__main__":
    raise SystemExit(main())
