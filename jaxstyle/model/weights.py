"""VGG-19 weights: weight files → a plain parameter pytree with its preprocessing, checked and hashed.

Accepted files (never a pickle: ``.pth``, ``.pt``, ``.bin``, ``.ckpt`` and ``.pkl`` are refused):

* safetensors or ``.npz`` in one of three naming schemes, per conv layer ``conv1_1`` … ``conv5_4``:

  - ``<layer>.codes`` (uint8, HWIO) + ``<layer>.table`` (256 float32) + ``<layer>.bias``: 8-bit
    k-means quantised (the bundled file; the kernel is ``table[codes]``);
  - ``<layer>.kernel`` (float, HWIO (3, 3, C_in, C_out)) + ``<layer>.bias``: full precision;
  - ``features.<i>.weight`` (float, OIHW) + ``features.<i>.bias``: torchvision's / timm's VGG-19
    (``i`` = 0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34).
* Preprocessing comes from the file's safetensors metadata (``preprocessing``: ``caffe`` or
  ``torchvision``), else from the naming scheme: torchvision names → torchvision preprocessing,
  jaxstyle names → Caffe.

Only the bundled file's SHA-256 is pinned in the code. Other files are trusted on first use: their
hash is recorded in ``known_hashes.json`` in the jaxstyle cache folder and checked on every later load.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import JaxstyleError
from .vgg import CONV_LAYERS

BUNDLED_FILE = "vgg19_caffe_q8.safetensors"
BUNDLED_SHA256 = "5f7ea8b0912b5cf9b0ee47f077fd719f669e5ca18ba36c7657f143df28cff7d2"
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl", ".pickle")
FLOAT_DTYPES = (np.float16, np.float32, np.float64)
_CHANNELS = (3, 64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512)
CONV_SHAPES = {name: (3, 3, cin, cout) for name, cin, cout in zip(CONV_LAYERS, _CHANNELS[:-1], _CHANNELS[1:])}
TORCHVISION_INDEX = dict(zip(CONV_LAYERS, (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)))


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
PREPROCESSINGS = {p.name: p for p in (CAFFE, TORCHVISION)}


@dataclass(frozen=True)
class VGGWeights:
    """VGG-19 parameters as a pytree (``params``, traced) plus their preprocessing (static).

    ``sha256`` is provenance, kept on the object but outside the pytree (neither a leaf nor part of
    the tree structure): two weight sets of the same shapes and preprocessing, such as a file and
    its normalised copy, share every compiled program. Inside a jitted function it reads ``""``.
    """

    params: dict  # {"conv1_1": {"kernel": (3, 3, Cin, Cout), "bias": (Cout,)}, …}
    preprocessing: Preprocessing
    sha256: str = ""


jax.tree_util.register_pytree_with_keys(
    VGGWeights,
    lambda w: (((jax.tree_util.GetAttrKey("params"), w.params),), w.preprocessing),
    lambda preprocessing, children: VGGWeights(children[0], preprocessing),
    flatten_func=lambda w: ((w.params,), w.preprocessing),
)


def bundled_path() -> Path:
    """Path of the bundled weight file: inside an installed wheel, or ``weights/`` in a checkout."""
    packaged = resources.files("jaxstyle") / "_weights" / BUNDLED_FILE
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "weights" / BUNDLED_FILE


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def naming_scheme(keys) -> str:
    """``"quantised"``, ``"jaxstyle"`` or ``"torchvision"``, from the tensor names present."""
    keys = set(keys)
    if "conv1_1.codes" in keys:
        return "quantised"
    if "conv1_1.kernel" in keys:
        return "jaxstyle"
    if "features.0.weight" in keys:
        return "torchvision"
    raise JaxstyleError(
        "weight file has no VGG-19 conv1_1 tensor under any known name (conv1_1.codes, conv1_1.kernel or "
        "features.0.weight); see the naming schemes in jaxstyle/weights.py"
    )


def needed_keys(scheme: str) -> dict[str, tuple[str, ...]]:
    """Tensor names each conv layer needs under ``scheme``."""
    if scheme == "quantised":
        return {n: (f"{n}.codes", f"{n}.table", f"{n}.bias") for n in CONV_LAYERS}
    if scheme == "jaxstyle":
        return {n: (f"{n}.kernel", f"{n}.bias") for n in CONV_LAYERS}
    return {n: (f"features.{i}.weight", f"features.{i}.bias") for n, i in TORCHVISION_INDEX.items()}


def _float(name: str, what: str, array: np.ndarray) -> np.ndarray:
    if array.dtype not in FLOAT_DTYPES and str(array.dtype) != "bfloat16":
        raise JaxstyleError(f"{name} {what} has dtype {array.dtype}; expected a float type (float32, float16 or bfloat16)")
    return np.asarray(array, dtype=np.float32)


def params_from_tensors(tensors: Mapping[str, np.ndarray], scheme: str | None = None) -> dict:
    """``{name: array}`` in any accepted naming scheme → ``{layer: {"kernel": HWIO, "bias"}}`` float32.

    Raises :class:`JaxstyleError` naming the first missing tensor, wrong shape or wrong dtype.
    """
    scheme = scheme or naming_scheme(tensors.keys())
    params = {}
    for name, keys in needed_keys(scheme).items():
        missing = [k for k in keys if k not in tensors]
        if missing:
            raise JaxstyleError(f"weight file lacks {', '.join(missing)} (layer {name}); it is not a complete VGG-19")
        expected = CONV_SHAPES[name]
        if scheme == "quantised":
            codes, table = tensors[keys[0]], tensors[keys[1]]
            if codes.dtype != np.uint8 or tuple(codes.shape) != expected:
                raise JaxstyleError(f"{name} codes are {codes.dtype}{tuple(codes.shape)}; expected uint8{expected}")
            kernel = _float(name, "table", table)[codes]
        else:
            kernel = _float(name, "kernel", tensors[keys[0]])
            if scheme == "torchvision":
                kernel = kernel.transpose(2, 3, 1, 0)  # OIHW → HWIO
        if tuple(kernel.shape) != expected:
            raise JaxstyleError(f"{name} kernel has shape {tuple(kernel.shape)} after conversion to HWIO; expected {expected}")
        bias = _float(name, "bias", tensors[keys[-1]])
        if tuple(bias.shape) != (expected[-1],):
            raise JaxstyleError(f"{name} bias has shape {tuple(bias.shape)}; expected ({expected[-1]},)")
        if not (np.isfinite(kernel).all() and np.isfinite(bias).all()):
            raise JaxstyleError(f"{name} holds NaN or infinite values; the weight file is damaged: fetch or convert it again")
        params[name] = {"kernel": np.ascontiguousarray(kernel), "bias": bias}
    return params


def check_weight_path(path: str | os.PathLike) -> Path:
    """Refuse pickle-based formats (they can run code when loaded), unknown extensions, missing files."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise JaxstyleError(
            f"{path.name} is a pickle-based file ({suffix}), which can run code when loaded, so jaxstyle refuses it; "
            "convert it once to safetensors in a throwaway environment (torch.load, then "
            "safetensors.torch.save_file(state_dict, 'vgg19.safetensors')) and pass that file"
        )
    if suffix not in (".safetensors", ".npz"):
        raise JaxstyleError(f"weight file {path.name} has an unknown extension; use .safetensors or .npz")
    if not path.is_file():
        raise JaxstyleError(f"weight file {str(path)!r} does not exist; check the path")
    return path


def read_tensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read only the VGG-19 conv tensors of a safetensors or ``.npz`` file, and its metadata."""
    path = check_weight_path(path)
    if path.suffix.lower() == ".npz":
        import zipfile

        try:
            z = np.load(path, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise JaxstyleError(f"{path.name} holds a single array (.npy), not an .npz archive of named "
                                    "tensors; save it with numpy.savez(name=array, ...)")
            with z:
                tensors = {k: z[k] for k in z.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise JaxstyleError(f"cannot read {path.name} as .npz without pickle ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                                "the file is damaged, truncated or not an .npz") from None
        scheme = naming_scheme(tensors)
        keep = {k for keys in needed_keys(scheme).values() for k in keys}
        return {k: v for k, v in tensors.items() if k in keep}, {}
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            names = set(f.keys())
            scheme = naming_scheme(names)
            keep = [k for keys in needed_keys(scheme).values() for k in keys if k in names]
            return {k: f.get_tensor(k) for k in keep}, dict(f.metadata() or {})
    except (SafetensorError, OSError) as e:
        raise JaxstyleError(f"cannot read {path.name} as safetensors ({e}); the file is damaged or not safetensors") from None


def cache_dir() -> Path:
    """jaxstyle's own cache folder: ``$JAXSTYLE_CACHE``, else ``$XDG_CACHE_HOME/jaxstyle`` or ``~/.cache/jaxstyle``."""
    if os.environ.get("JAXSTYLE_CACHE"):
        folder = Path(os.environ["JAXSTYLE_CACHE"])
        what = "JAXSTYLE_CACHE"
    else:
        folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jaxstyle"
        what = "jaxstyle's cache folder"
    if folder.exists() and not folder.is_dir():
        raise JaxstyleError(f"{what} {str(folder)!r} is a file, not a folder; point JAXSTYLE_CACHE at a folder")
    return folder


def _hash_registry() -> Path:
    return cache_dir() / "known_hashes.json"


def recorded_hashes() -> dict[str, str]:
    """``{path: sha256}`` of the weight files trusted so far (``known_hashes.json`` in the cache)."""
    path = _hash_registry()
    if not path.is_file():
        return {}
    try:
        hashes = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, OSError) as e:
        raise JaxstyleError(f"the hash registry {str(path)} is damaged ({type(e).__name__}); delete it and re-record "
                            "your files with `jaxstyle weights trust PATH`") from None
    if not isinstance(hashes, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in hashes.items()):
        raise JaxstyleError(f"the hash registry {str(path)} is not a map of names to hashes; delete it and re-record "
                            "your files with `jaxstyle weights trust PATH`")
    return hashes


def record_hash(key: str, digest: str) -> None:
    """Remember ``digest`` for ``key`` (trust on first use), written atomically."""
    from ..io.files import atomic_write

    hashes = recorded_hashes()
    hashes[key] = digest
    path = _hash_registry()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise JaxstyleError(f"cannot create the cache folder {str(path.parent)!r} ({e.strerror}); "
                            "set JAXSTYLE_CACHE to a writable folder") from None
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(hashes, indent=2, sort_keys=True) + "\n"))


def check_hash(key: str, path: str | os.PathLike, *, expected: str | None = None, fix: str = "") -> str:
    """SHA-256 of ``path``, checked against ``expected`` or the hash recorded for ``key``.

    With neither, the hash is to be recorded (trust on first use): the caller records it with
    :func:`record_hash` once the file has loaded completely (a truncated download is never
    trusted). Returns ``(digest, new)``; a mismatch names both hashes and the fix.
    """
    digest = sha256_file(path)
    known = expected or recorded_hashes().get(key)
    if known is not None and digest != known:
        raise JaxstyleError(
            f"{Path(path).name} has SHA-256 {digest}, but {known} was "
            f"{'pinned' if expected else 'recorded on first use'} for {key}; the file changed or is damaged: "
            + (fix or f"if you changed it on purpose, trust the new file with `jaxstyle weights trust {path}`")
        )
    return digest, known is None


def load_file(path: str | os.PathLike, preprocessing: str | None = None, *, key: str | None = None,
              expected_sha256: str | None = None, fix: str = "") -> VGGWeights:
    """Load a weight file (see the module docstring for formats), hash-checked.

    Args:
      path: a safetensors or ``.npz`` file.
      preprocessing: ``"caffe"`` or ``"torchvision"``; default from the file's metadata or naming.
      key: name under which the file's hash is recorded (default: its absolute path).
      expected_sha256: a pinned hash; default trust on first use.
    """
    path = check_weight_path(path)
    key = key or str(path.resolve())
    digest, new = check_hash(key, path, expected=expected_sha256, fix=fix)
    tensors, meta = read_tensors(path)
    scheme = naming_scheme(tensors)
    name = preprocessing or meta.get("preprocessing") or ("torchvision" if scheme == "torchvision" else "caffe")
    if name not in PREPROCESSINGS:
        raise JaxstyleError(f"unknown preprocessing {name!r}; choose one of {', '.join(PREPROCESSINGS)}")
    params = jax.tree.map(jnp.asarray, params_from_tensors(tensors, scheme))
    if new:  # only a file that loaded completely is trusted
        record_hash(key, digest)
    return VGGWeights(params=params, preprocessing=PREPROCESSINGS[name], sha256=digest)


def trust(path: str | os.PathLike, key: str | None = None) -> str:
    """Check that ``path`` loads as VGG-19 weights, then record its SHA-256 (replacing any recorded
    one): the fix when a file was changed on purpose. Returns the hash."""
    path = check_weight_path(path)
    key = key or str(path.resolve())
    tensors, _ = read_tensors(path)
    params_from_tensors(tensors)
    digest = sha256_file(path)
    record_hash(key, digest)
    return digest


@functools.lru_cache(maxsize=None)
def load_bundled() -> VGGWeights:
    """Load (once per process) the bundled quantised Caffe VGG-19, checking its pinned SHA-256."""
    path = bundled_path()
    if not path.is_file():
        raise JaxstyleError(f"bundled weights not found at {path}; reinstall jaxstyle (pip install .)")
    return load_file(path, "caffe", key="bundled", expected_sha256=BUNDLED_SHA256,
                     fix="restore it from the repository or reinstall jaxstyle")
