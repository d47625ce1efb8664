"""The JSON sidecar written next to every output: everything needed to reproduce the image exactly."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
from pathlib import Path

from ..config import INITS, StyleConfig
from ..errors import JaxstyleError
from ..io.files import atomic_write
from ..model.weights import sha256_file


def sidecar_path(output: str | Path) -> Path:
    """``out.png`` → ``out.png.json`` (keeps outputs of different formats apart)."""
    output = Path(output)
    return output.with_name(output.name + ".json")


def input_files(content, styles, config: StyleConfig) -> dict[str, str]:
    """``{label: path}`` of every input file of a run, labelled as messages name them: ``content
    image``, ``style image 1`` …, and the config's ``--init image``, ``--content-mask`` and
    ``style mask 1`` … when they are files."""
    files = {"content image": content, **{f"style image {i + 1}": s for i, s in enumerate(styles)}}
    if config.init not in INITS:
        files["--init image"] = config.init
    if config.content_mask is not None:
        files["--content-mask"] = config.content_mask
    files.update({f"style mask {i + 1}": m for i, m in enumerate(config.style_masks or ())})
    return {label: str(path) for label, path in files.items() if isinstance(path, (str, os.PathLike))}


def record_inputs(files: dict[str, str]) -> dict[str, dict]:
    """``{role: {"path": as given, "absolute": …, "sha256": …}}``: what a rerun needs to find and check them."""
    return {role: {"path": path, "absolute": os.path.abspath(path), "sha256": sha256_file(path)}
            for role, path in files.items()}


def resolve_inputs(meta: dict, sidecar: str | Path, force: bool = False) -> dict[str, str]:
    """The input files of a sidecar's run, found again: at their absolute path, else as given but
    relative to the sidecar's folder. Raises :class:`JaxstyleError` naming an input that is missing
    or whose SHA-256 changed (unless ``force``)."""
    recorded = meta.get("inputs") or {role: {"path": path} for role, path in
                                       input_files(meta["content"], meta["styles"], meta["config"]).items()}
    found = {}
    for role, entry in recorded.items():
        given = Path(entry["path"])
        candidates = [Path(entry["absolute"])] if entry.get("absolute") else []
        candidates += [given] if given.is_absolute() else [Path(sidecar).parent / given, given]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise JaxstyleError(f"the {role} {entry['path']!r} of {str(sidecar)!r} is not there any more (looked "
                                f"at {', '.join(repr(str(c)) for c in candidates)}); restore it")
        if entry.get("sha256") and not force and sha256_file(path) != entry["sha256"]:
            raise JaxstyleError(f"the {role} {str(path)!r} changed since the image was made (its SHA-256 "
                                "differs); restore it, or pass --force to render from it as it is")
        found[role] = str(path)
    return found


def metadata(result, *, content, styles, weights_sha256: str, weights: str | None = None, bit_depth: int = 8,
             argv=None, memory_budget: tuple[float, str] | None = None) -> dict:
    """The sidecar of a finished image: config, inputs, weights and their hash, versions, device, loss terms."""
    import jax
    import jaxlib

    from .. import __version__

    return {
        "jaxstyle": __version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": str(jax.local_devices()[0].device_kind),
        "weights": None if weights is None else str(weights),
        "weights_sha256": weights_sha256,
        "bit_depth": bit_depth,
        "content": str(content),
        "styles": [str(s) for s in styles],
        "config": dataclasses.asdict(result.config),
        "terms": result.terms,
        "steps": len(result.history),  # fewer than the config's where a scale stopped early (tolerance)
        "evaluations": result.evaluations,
        "timings": result.timings,
        "argv": list(argv) if argv is not None else None,
        "inputs": record_inputs(input_files(content, styles, result.config)),
        # the budget that decided whole, bands or tiles (bytes), and where it came from
        "memory_budget": None if memory_budget is None else {"bytes": int(memory_budget[0]), "source": memory_budget[1]},
    }


def sidecar_writer(meta: dict):
    """A ``write(tmp_path)`` for ``atomic_write`` that writes ``meta`` as the sidecar's JSON."""
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    return lambda tmp: Path(tmp).write_text(text)


def write_sidecar(output: str | Path, meta: dict) -> Path:
    """Write ``meta`` as ``OUT.EXT.json`` beside ``output``, atomically; returns its path."""
    path = sidecar_path(output)
    atomic_write(path, sidecar_writer(meta))
    return path


def config_from_sidecar(path: str | Path) -> StyleConfig:
    """The StyleConfig recorded in a sidecar (lists back to tuples), to rerun the same image."""
    return read_sidecar(path)["config"]


def read_sidecar(path: str | Path) -> dict:
    """A sidecar's contents, its ``config`` as a :class:`StyleConfig`; one-line errors for files
    that are missing, damaged or not a jaxstyle sidecar (``jaxstyle rerun``)."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        raw = meta["config"]
        meta["config"] = StyleConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
        meta["styles"] = [str(s) for s in meta["styles"]]
        str(meta["content"]), str(meta["weights_sha256"])
    except FileNotFoundError:
        raise JaxstyleError(f"sidecar {str(path)!r} does not exist; give the OUT.png.json written next to an image") from None
    except (OSError, ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
        raise JaxstyleError(f"{str(path)!r} is not a readable jaxstyle sidecar ({type(e).__name__}: {e}); "
                            "give the OUT.png.json written next to an image") from None
    return meta
