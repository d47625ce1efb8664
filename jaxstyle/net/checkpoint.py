"""A training's files beside its network: the resumable checkpoint, the preview, the loss curve.

``OUTPUT.checkpoint`` holds the parameters, Adam's state and the loss history of every network being
trained, with the training's key (``jaxstyle.net.training.training_key``) and step in its header;
written atomically (``jaxstyle.net.store``), so a kill leaves the previous one whole.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import JaxstyleError
from ..io import image as image_io
from ..io.files import atomic_write
from ..io.sheet import loss_plot
from . import store

TERMS = ("total", "content", "style", "tv")  # the loss terms recorded per step, in this order


def file_of(output: str | os.PathLike) -> Path:
    """Where the training of ``output`` keeps its checkpoint: ``OUTPUT.checkpoint``."""
    return Path(str(output) + ".checkpoint")


def preview_path(output: str | os.PathLike) -> Path:
    """Where the preview of ``output`` goes: ``OUTPUT.preview.png`` (the suffix replaced)."""
    return Path(output).with_suffix(".preview.png")


def curve_path(output: str | os.PathLike) -> Path:
    """Where the loss curve of ``output`` goes: ``OUTPUT.losses.csv`` (the suffix replaced)."""
    return Path(output).with_suffix(".losses.csv")


def save(path: Path, key: str, step: int, params, adam_state, history: list, header: dict) -> None:
    """Write the checkpoint of ``key`` at ``step``: parameters and Adam's state (leading axis: the
    networks), the loss history ``(steps, networks, len(TERMS))``; atomically."""
    tensors = {f"params/{k}": v for k, v in store.flatten(jax.device_get(params)).items()}
    for i, leaf in enumerate(jax.tree.leaves(jax.device_get(adam_state))):
        tensors[f"adam/{i}"] = np.asarray(leaf)
    tensors["history"] = np.asarray(history, np.float32).reshape(len(history), -1, len(TERMS))
    store.write(path, tensors, {**header, "kind": "checkpoint", "key": key, "step": step})


def load(path: Path, key: str, params, adam_state):
    """``(step, params, adam_state, history)`` from ``path`` if it holds this training's checkpoint."""
    if not path.exists():
        return None
    tensors, header = store.read(path, "checkpoint")
    if header.get("kind") != "checkpoint" or header.get("key") != key:
        raise JaxstyleError(f"{str(path)!r} is the checkpoint of another training (other painting, photos or "
                            "options); delete it to start this one, or rerun the command that made it")
    flat = store.flatten(jax.device_get(params))
    leaves, tree = jax.tree.flatten(adam_state)
    try:
        restored = store.unflatten({k: tensors[f"params/{k}"] for k in flat})
        adam = jax.tree.unflatten(tree, [tensors[f"adam/{i}"] for i in range(len(leaves))])
        history = tensors["history"]
    except KeyError as e:
        raise JaxstyleError(f"the checkpoint {str(path)!r} lacks {e.args[0]}: damaged; delete it to start again") from None
    return int(header["step"]), jax.tree.map(jnp.asarray, restored), jax.tree.map(jnp.asarray, adam), list(history)


def write_curve(path: Path, history: list) -> None:
    """The first network's loss terms per step: ``path`` (CSV) and beside it the plot (``.png``)."""
    lines = ["step," + ",".join(TERMS)] + [f"{t + 1}," + ",".join(f"{v:.6g}" for v in row[0])
                                          for t, row in enumerate(history)]
    atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
    terms = np.asarray(history, np.float64)[:, 0]  # (steps, terms)
    plot = loss_plot({k: terms[:, i] for i, k in enumerate(TERMS) if np.any(terms[:, i] > 0)},
                     title="training loss (batch means) per step")
    image_io.save_pil(plot, path.with_suffix(".png"))
