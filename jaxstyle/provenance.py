"""The JSON sidecar written next to every output: everything needed to reproduce the image exactly."""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
from pathlib import Path

from .config import StyleConfig
from .image import atomic_write


def sidecar_path(output: str | Path) -> Path:
    """``out.png`` → ``out.png.json`` (keeps outputs of different formats apart)."""
    output = Path(output)
    return output.with_name(output.name + ".json")


def metadata(result, *, content, styles, weights_sha256: str, argv=None) -> dict:
    import jax
    import jaxlib

    from . import __version__

    return {
        "jaxstyle": __version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": str(jax.devices()[0].device_kind),
        "weights_sha256": weights_sha256,
        "content": str(content),
        "styles": [str(s) for s in styles],
        "config": dataclasses.asdict(result.config),
        "terms": result.terms,
        "evaluations": result.evaluations,
        "timings": result.timings,
        "argv": list(argv) if argv is not None else None,
    }


def write_sidecar(output: str | Path, meta: dict) -> Path:
    path = sidecar_path(output)
    text = json.dumps(meta, indent=2, sort_keys=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))
    return path


def config_from_sidecar(path: str | Path) -> StyleConfig:
    """The StyleConfig recorded in a sidecar (lists back to tuples), to rerun the same image."""
    raw = json.loads(Path(path).read_text())["config"]
    return StyleConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
