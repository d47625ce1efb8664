"""Named VGG-19 weight sets: the bundled one, and full-precision ones fetched through huggingface_hub.

Loading never downloads: a hub set must be fetched first (``jaxstyle weights fetch NAME``), so an
offline machine gets an immediate, clear error instead of a hang or a silent substitute.
huggingface_hub does the downloading and caching (``HF_HOME``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``
and revisions are honoured) and checks its own files on download; jaxstyle records each file's
SHA-256 on first use and checks it on every load.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from ..errors import JaxstyleError
from .weights import VGGWeights, bundled_path, load_bundled, load_file, recorded_hashes, record_hash, sha256_file


@dataclass(frozen=True)
class WeightSet:
    """A named weight set: where it comes from and how images are preprocessed for it."""

    name: str
    description: str
    preprocessing: str
    repo_id: str | None = None  # None: bundled with jaxstyle
    filename: str = "model.safetensors"
    revision: str | None = None

    def key(self, revision: str | None = None) -> str:
        """Name under which the file's hash is recorded."""
        return f"hub:{self.repo_id}@{revision or self.revision or 'main'}/{self.filename}"


DEFAULT = "caffe-q8"
KNOWN = {
    s.name: s
    for s in (
        WeightSet("caffe-q8", "original Caffe VGG-19, 8-bit k-means quantised (bundled, offline)", "caffe"),
        WeightSet("torchvision", "torchvision's VGG-19 ImageNet weights, full precision (timm/vgg19.tv_in1k)",
                  "torchvision", repo_id="timm/vgg19.tv_in1k"),
    )
}


def _fetch_hint(name: str) -> str:
    return f"fetch it once with `jaxstyle weights fetch {name}` on a machine with network access"


def cached_file(ws: WeightSet, *, revision: str | None = None, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """Path of the set's file in the huggingface_hub cache, or None if it is not there. Never downloads."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(ws.repo_id, ws.filename, cache_dir=cache_dir, revision=revision or ws.revision)
    return Path(found) if isinstance(found, (str, os.PathLike)) else None


def fetch(name: str, *, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
          force: bool = False) -> Path:
    """Download a hub set's file with huggingface_hub (cached), and record its SHA-256."""
    ws = _known(name)
    if ws.repo_id is None:
        return bundled_path()
    from huggingface_hub import constants as hub_constants, hf_hub_download, logging as hub_logging
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    offline = (f"cannot fetch {name} from {ws.repo_id}: offline or unreachable ({{}}); connect to the network "
               "(and unset HF_HUB_OFFLINE) and retry")
    host = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname
    if not hub_constants.HF_HUB_OFFLINE:
        try:  # no name, no download: say so at once instead of after the client's retries
            socket.getaddrinfo(host, 443)
        except OSError as e:
            raise JaxstyleError(offline.format(f"{host}: {e.strerror or e}")) from None
    verbosity = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()  # the client's retry warnings are not ours to print
    try:
        path = Path(hf_hub_download(ws.repo_id, ws.filename, revision=revision or ws.revision,
                                    cache_dir=cache_dir, force_download=force, etag_timeout=10))
    except (OfflineModeIsEnabled, LocalEntryNotFoundError) as e:
        raise JaxstyleError(offline.format(type(e).__name__)) from None
    except HfHubHTTPError as e:
        raise JaxstyleError(f"cannot fetch {name} from {ws.repo_id}: {str(e).splitlines()[0]}") from None
    finally:
        hub_logging.set_verbosity(verbosity)
    key = ws.key(revision)
    if force or key not in recorded_hashes():
        record_hash(key, sha256_file(path))
    return path


def load(name_or_path: str | os.PathLike, *, revision: str | None = None,
         cache_dir: str | os.PathLike | None = None, preprocessing: str | None = None) -> VGGWeights:
    """A known set by name (``caffe-q8``, ``torchvision``) or a local weight file by path."""
    name = str(name_or_path)
    if name in KNOWN:
        ws = KNOWN[name]
        if ws.repo_id is None:
            return load_bundled()
        path = cached_file(ws, revision=revision, cache_dir=cache_dir)
        if path is None:
            raise JaxstyleError(f"weights {name!r} are not in the local huggingface_hub cache; {_fetch_hint(name)}")
        return load_file(path, preprocessing or ws.preprocessing, key=ws.key(revision),
                         fix=f"re-fetch it with `jaxstyle weights fetch {name} --force`")
    if not Path(name).exists() and not any(sep in name for sep in ("/", os.sep)) and "." not in name:
        raise JaxstyleError(f"unknown weights {name!r}; choose one of {', '.join(KNOWN)} or give a .safetensors/.npz path")
    return load_file(name, preprocessing)


def _known(name: str) -> WeightSet:
    if name not in KNOWN:
        raise JaxstyleError(f"unknown weight set {name!r}; choose one of {', '.join(KNOWN)}")
    return KNOWN[name]


def status(cache_dir: str | os.PathLike | None = None) -> list[dict]:
    """One row per known set: name, description, cached path, size in bytes, recorded SHA-256."""
    hashes = recorded_hashes()
    rows = []
    for ws in KNOWN.values():
        path = bundled_path() if ws.repo_id is None else cached_file(ws, cache_dir=cache_dir)
        rows.append({
            "name": ws.name,
            "description": ws.description,
            "path": str(path) if path else None,
            "bytes": path.stat().st_size if path else None,
            "sha256": "pinned" if ws.repo_id is None else hashes.get(ws.key()),
        })
    return rows


def verify(name_or_path: str, cache_dir: str | os.PathLike | None = None) -> str:
    """Check a set's (or file's) SHA-256 against the pinned or recorded one; returns the hash."""
    return load(name_or_path, cache_dir=cache_dir).sha256
