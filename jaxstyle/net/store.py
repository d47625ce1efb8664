"""Network and checkpoint files: safetensors tensors with a JSON header, written atomically, never pickle.

A network file holds the parameters under their paths (``conv1/kernel``, ``res1_1_norm/scale``) and
one metadata entry, ``jaxstyle``: a JSON object with ``format``, ``architecture``, ``width`` and how
the network was trained (the training options, the painting's SHA-256). A training checkpoint is the
same kind of file with more tensors (optimizer state, loss history) and its ``kind`` ``checkpoint``.
Reading checks the header and every tensor against the architecture, and names what is wrong.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from ..errors import JaxstyleError
from ..io.files import atomic_write
from . import transformer

FORMAT = "jaxstyle.net/1"
KEY = "jaxstyle"  # the metadata entry holding the JSON header


@dataclass(frozen=True)
class Network:
    """A trained network: its parameters (a pytree for :func:`jaxstyle.net.transformer.forward`) and header."""

    params: dict
    header: dict = field(default_factory=dict)

    @property
    def width(self) -> int:
        return transformer.width_of(self.params)

    def fingerprint(self) -> str:
        """SHA-256 of the parameters (names, shapes and values): what an output depends on."""
        import hashlib

        digest = hashlib.sha256()
        for name, value in sorted(flatten(self.params).items()):
            digest.update(f"{name}{value.shape}".encode())
            digest.update(np.ascontiguousarray(value, np.float32).tobytes())
        return digest.hexdigest()

    @property
    def training(self) -> dict:
        """The options it was trained with (``{}`` if unknown)."""
        return self.header.get("training", {})


def flatten(tree: dict, prefix: str = "", leaf=np.asarray) -> dict:
    """``{"a/b": leaf(array)}`` of a nested dict of arrays."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}/", leaf))
        else:
            out[f"{prefix}{k}"] = leaf(v)
    return out


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    """The nested dict of :func:`flatten`'s output."""
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def write(path: str | os.PathLike, tensors: dict[str, np.ndarray], header: dict) -> None:
    """Write ``tensors`` and the JSON ``header`` to ``path`` as safetensors, atomically."""
    from safetensors.numpy import save_file

    meta = {KEY: json.dumps({"format": FORMAT, **header}, sort_keys=True)}
    contiguous = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(contiguous, tmp, metadata=meta))


def read(path: str | os.PathLike, what: str = "network file") -> tuple[dict[str, np.ndarray], dict]:
    """The tensors and JSON header of a file :func:`write` wrote; one line naming the problem otherwise."""
    path = Path(path)
    if path.is_dir():
        raise JaxstyleError(f"{what} {str(path)!r} is a folder; name a .safetensors file written by jaxstyle train")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise JaxstyleError(f"{what} {str(path)!r} does not exist; check the path, or train one with jaxstyle train") from None
    except OSError as e:
        raise JaxstyleError(f"cannot read {what} {str(path)!r} ({e.strerror}); check its permissions") from None
    if head[:1] == b"\x80" or head[:2] == b"PK":
        raise JaxstyleError(f"{what} {str(path)!r} is a pickle (or a PyTorch checkpoint), which can run code when "
                            "loaded: jaxstyle reads only the safetensors networks that jaxstyle train writes")
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise JaxstyleError(f"{what} {str(path)!r} is not a complete safetensors file ({str(e).splitlines()[0]}): "
                            "truncated or damaged; copy it again or train it again") from None
    try:
        header = json.loads(meta[KEY])
        assert isinstance(header, dict)
    except (KeyError, ValueError, AssertionError):
        raise JaxstyleError(f"{what} {str(path)!r} is a safetensors file without jaxstyle's header: not a network "
                            "written by jaxstyle train") from None
    if header.get("format") != FORMAT:
        raise JaxstyleError(f"{what} {str(path)!r} has format {header.get('format')!r}; this jaxstyle reads "
                            f"{FORMAT!r}: upgrade jaxstyle, or train the network again")
    return tensors, header


def check_params(tensors: dict[str, np.ndarray], header: dict, where: str) -> dict:
    """The parameter tree of ``tensors``, checked against the architecture and width ``header`` names."""
    arch, width = header.get("architecture"), header.get("width")
    if arch != transformer.ARCHITECTURE:
        raise JaxstyleError(f"{where} holds a network of architecture {arch!r}; this jaxstyle runs "
                            f"{transformer.ARCHITECTURE!r} networks only")
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise JaxstyleError(f"{where} has no valid width in its header ({width!r}); train the network again")
    expected = flatten(jax.eval_shape(lambda: transformer.init(jax.random.key(0), width)), leaf=lambda v: v)
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if tuple(tensors[k].shape) != tuple(expected[k].shape))
    if missing or extra or wrong:
        parts = ([f"missing {', '.join(missing[:3])}"] if missing else []) + \
                ([f"unexpected {', '.join(extra[:3])}"] if extra else []) + \
                [f"{k} is {tuple(tensors[k].shape)}, not {tuple(expected[k].shape)}" for k in wrong[:2]]
        raise JaxstyleError(f"{where}'s tensors do not match a {arch} network of width {width} ({'; '.join(parts)}); "
                            "the file is damaged or was not written by jaxstyle train")
    return unflatten({k: np.asarray(v, np.float32) for k, v in tensors.items()})


def save(path: str | os.PathLike, network: Network) -> None:
    """Write ``network`` to ``path`` (safetensors with a JSON header), atomically."""
    header = {**network.header, "kind": "network", "architecture": transformer.ARCHITECTURE, "width": network.width}
    write(path, flatten(network.params), header)


def load(path: str | os.PathLike) -> Network:
    """The network in ``path`` (written by :func:`save` or ``jaxstyle train``), checked.

    A file that is missing, a pickle, truncated, of another architecture or width, or a checkpoint
    instead of a network raises :class:`jaxstyle.errors.JaxstyleError`, one line naming the problem.
    """
    tensors, header = read(path)
    if header.get("kind") != "network":
        raise JaxstyleError(f"{str(path)!r} is a training {header.get('kind', 'file')}, not a finished network; "
                            "pass the -o file of jaxstyle train (rerun it to finish training)")
    return Network(check_params(tensors, header, repr(str(path))), header)
