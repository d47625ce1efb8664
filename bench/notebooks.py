"""Wall time of each notebook, top to bottom in a fresh Jupyter kernel, at its own default size
(the one it picks for the device JAX sees: the Colab size on a GPU, a smaller one on a CPU).

    python bench/notebooks.py [quickstart sweep paper_figures fast_style]

Runs in a temporary folder (the notebooks write their images there). Kernel start-up and imports
are included, as a user waits for them too.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    names = sys.argv[1:] or ["quickstart", "sweep", "paper_figures", "fast_style"]
    for name in names:
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        with tempfile.TemporaryDirectory() as folder:
            t0 = time.perf_counter()
            NotebookClient(nb, timeout=7200, kernel_name="python3", resources={"metadata": {"path": folder}}).execute()
            seconds = time.perf_counter() - t0
        device = next((o["text"].strip().splitlines()[0] for c in nb.cells for o in c.get("outputs", [])
                       if o.get("name") == "stdout" and o.get("text", "").startswith("JAX runs on")), "?")
        errors = sum(o.output_type == "error" for c in nb.cells for o in c.get("outputs", []))
        print(f"{name:15s} {seconds:8.1f} s  errors {errors}  ({device})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
