"""Cost of the live preview (``jaxstyle.notebook.live``) in a real Jupyter kernel.

    python bench/preview.py --size 256 --steps 60 --every 10 --repeats 2

Runs the bundled pair in one kernel (nbclient): a warm-up run (compilation), then, alternating,
``stylize`` without a callback and with ``live(every=N)``, and prints the wall time of each and
the ratio of the medians. The preview fetches the image and the loss terms (one extra forward
pass) only every N steps, so the ratio should be close to 1 + (1/3)/N.
"""

from __future__ import annotations

import argparse
import json
import statistics

import nbformat
from nbclient import NotebookClient

CELL = """
import json, statistics, time
import jaxstyle
from jaxstyle.examples import CONTENT, STYLE
from jaxstyle.notebook import live

config = jaxstyle.StyleConfig(size={size}, steps={steps})
jaxstyle.stylize(CONTENT, STYLE, config.replace(steps=2))  # compile
rows = []
for repeat in range({repeats}):
    for mode in ("none", "live"):
        t0 = time.perf_counter()
        preview = live(every={every}) if mode == "live" else None
        jaxstyle.stylize(CONTENT, STYLE, config, callback=preview)
        rows.append((mode, time.perf_counter() - t0, preview.previews if preview else 0))
print("RESULT " + json.dumps(rows))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CELL.format(**vars(args)))]
    NotebookClient(nb, timeout=3600, kernel_name="python3").execute()
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs if o.output_type == "stream")
    rows = json.loads(text.split("RESULT ", 1)[1])
    for mode, seconds, previews in rows:
        print(f"{mode:5s} {seconds:7.2f} s  previews {previews}")
    median = {m: statistics.median(s for k, s, _ in rows if k == m) for m in ("none", "live")}
    print(f"size {args.size} px, {args.steps} steps, every {args.every}: live / none = {median['live'] / median['none']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
