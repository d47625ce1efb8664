"""Compiled programs kept on disk between runs: JAX's persistent compilation cache, turned on by the CLI.

XLA compiles every program afresh in each new process: a run's step, its style targets and its
set-up take seconds to compile before the first step. With the cache, a second ``jaxstyle`` run at
the same size and settings reads them back (chelsea x Starry Night, 256 px, 5 steps: the whole
command took 12.2 s the first time, 9.3 s the second). The folder is ``xla`` in jaxstyle's cache
folder (``$JAXSTYLE_CACHE``, default ``~/.cache/jaxstyle``), bounded at :data:`MAX_BYTES` (JAX
evicts the least recently used programs). ``JAX_COMPILATION_CACHE_DIR``, when set, wins;
``JAXSTYLE_COMPILE_CACHE=0`` turns it off. The cache only saves time: a folder that cannot be made
or written leaves it off, silently.

The library itself does not touch JAX's global settings; in Python, call :func:`enable` once.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import jax

from .errors import JaxstyleError

MAX_BYTES = 2 * 1024**3
OFF = "JAXSTYLE_COMPILE_CACHE"


def enable(folder: str | os.PathLike | None = None) -> Path | None:
    """Keep compiled programs in ``folder`` (default: jaxstyle's cache folder's ``xla``) from now on.

    Returns the folder in use, or None where the cache stays off (``JAXSTYLE_COMPILE_CACHE=0``, or
    a folder that cannot be written). A folder already chosen (``JAX_COMPILATION_CACHE_DIR`` or
    ``jax.config``) is kept. Call it before the first compilation: JAX reads the setting once.
    """
    if os.environ.get(OFF, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    chosen = jax.config.jax_compilation_cache_dir
    if chosen:
        return Path(chosen)
    if importlib.util.find_spec("filelock") is None:  # JAX bounds the cache's size only with it
        return None
    try:
        if folder is None:
            from .model.weights import cache_dir

            folder = cache_dir() / "xla"
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            return None
    except (OSError, JaxstyleError):
        return None
    try:  # the bound first: a JAX without it would let the folder grow without end
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    except AttributeError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    return folder
