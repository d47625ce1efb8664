"""The notebooks, executed top to bottom in a real Jupyter kernel (nbclient), at a tiny size: no
error outputs, an image for every figure cell, and the live preview updated in place."""

import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def execute(name: str, workdir: Path, monkeypatch, size: int = 32, steps: int = 2):
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    monkeypatch.setenv("JAXSTYLE_NB_SIZE", str(size))  # the kernel inherits the environment
    monkeypatch.setenv("JAXSTYLE_NB_STEPS", str(steps))
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    return nb


def outputs_of(nb, needle: str) -> list:
    """Outputs of the one code cell whose source contains ``needle``."""
    cells = [c for c in nb.cells if c.cell_type == "code" and needle in c.source]
    assert len(cells) == 1, needle
    return cells[0].outputs


def has_png(outputs) -> int:
    return sum("image/png" in o.get("data", {}) for o in outputs)


def no_errors(nb) -> None:
    for c in nb.cells:
        for o in c.get("outputs", []):
            assert o.output_type != "error", f"{o.get('ename')}: {o.get('evalue')}\n{c.source}"
            assert o.get("name") != "stderr" or "Traceback" not in o.get("text", "")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs_and_install_only_where_missing(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code)
    install = "".join(code[0]["source"])
    assert 'JAXSTYLE_SOURCE = ""' in install and 'find_spec("jaxstyle") is None' in install
    assert "set JAXSTYLE_SOURCE" in install  # the one-line message when there is nothing to install from


def test_quickstart_in_a_kernel(tmp_path, monkeypatch):
    nb = execute("quickstart.ipynb", tmp_path, monkeypatch, steps=3)
    no_errors(nb)
    assert "JAX runs on cpu" in "".join(o.get("text", "") for o in outputs_of(nb, "ON_ACCELERATOR ="))
    assert has_png(outputs_of(nb, "display(Image.open(CONTENT)")) == 2
    live = outputs_of(nb, "callback=live(")
    # One picture and one line, updated in place to the last step (not one output per preview).
    assert len(live) == 3 and has_png(live) == 1  # + the cell's result (terms, timings)
    line = live[1]["data"]["text/plain"]
    assert line.startswith("step 3/3") and "(done)" in line and "ms/step" in line and "style" in line
    assert has_png(outputs_of(nb, 'Image.open("quickstart.png")')) == 1
    assert (tmp_path / "quickstart.png").is_file()
    assert has_png(outputs_of(nb, "contact_sheet(")) == 1


def test_paper_figures_in_a_kernel(tmp_path, monkeypatch):
    nb = execute("paper_figures.ipynb", tmp_path, monkeypatch)
    no_errors(nb)
    assert has_png(outputs_of(nb, "callback=live(")) == 1
    for needle in ("display(fig1)", "display(fig2)", "display(fig3)", "display(loss_plot("):
        assert has_png(outputs_of(nb, needle)) == 1, needle


def test_sweep_notebook_in_a_kernel(tmp_path, monkeypatch):
    nb = execute("sweep.ipynb", tmp_path, monkeypatch, size=64)  # style scale 0.5: the painting at 32 px
    no_errors(nb)
    assert has_png(outputs_of(nb, "contact_sheet.png")) == 1
    table = outputs_of(nb, "Markdown(")[0]["data"]["text/markdown"]
    assert len(table.splitlines()) == 2 + 6  # header, rule, one row per job (3 weights x 2 scales)
    manifest = (tmp_path / "sweep_demo" / "results" / "manifest.jsonl").read_text().splitlines()
    assert sum(json.loads(line)["status"] == "ok" for line in manifest) == 6


def test_live_preview_fetches_the_image_only_at_its_interval(capsys):
    from IPython.display import display

    from jaxstyle.notebook import Live, live
    from jaxstyle.run.transfer import Progress

    fetched = []

    def progress(step, steps=100):
        def image():
            fetched.append(step)
            return np.full((30, 40, 3), step / steps, np.float32)

        return Progress(step, steps, loss=1.0 / step, elapsed=0.01 * step, image=image,
                        terms=lambda: {"content": 0.5, "style": 0.5 / step, "tv": 0.0, "total": 1.0})

    preview = Live(every=20, width=80, display=display)  # IPython's own display, outside a kernel
    for step in range(10, 101, 10):  # stylize calls back every config.chunk = 10 steps
        preview(progress(step))
    assert fetched == [10, 30, 50, 70, 90, 100]  # the first, then every 20 steps, and the last
    assert preview.previews == 6 and len(preview.losses) == 10
    frame = preview.frame(np.zeros((30, 40, 3), np.float32))
    assert frame.size[0] > 80 and frame.size[1] >= 60  # the image (80 px wide) beside the loss curve
    fetched.clear()
    bar = live(every=20)  # not in a kernel: a progress bar, and nothing is fetched from the device
    assert bar._display is None
    for step in range(10, 101, 10):
        bar(progress(step))
    assert fetched == [] and "100/100" in capsys.readouterr().err


def test_fast_style_notebook_in_a_kernel(tmp_path, monkeypatch):
    nb = execute("fast_style.ipynb", tmp_path, monkeypatch, size=64, steps=4)
    no_errors(nb)
    assert "1 photo(s) in photos_at_hand" in "".join(o.get("text", "") for o in outputs_of(nb, "scan(PHOTOS"))
    live = outputs_of(nb, "progress=live(")
    assert has_png(live) == 1  # the preview, updated in place
    assert "step 4/4" in live[1]["data"]["text/plain"] and "(done)" in live[1]["data"]["text/plain"]
    assert "4 steps, 16 channels" in "".join(o.get("text", "") for o in live)
    assert has_png(outputs_of(nb, 'Image.open("fast_starry.png")')) == 1
    from jaxstyle import net
    assert net.load(tmp_path / "fast_starry.safetensors").training["steps"] == 4
