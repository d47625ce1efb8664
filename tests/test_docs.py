"""The documentation cannot rot: docstring examples run, the option table is the parser's, the site builds
with warnings as errors and documents every public name, and the README's docs command is the one tested."""

import doctest
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import jaxstyle
from jaxstyle import cli, config
from jaxstyle.evaluate import objective
from jaxstyle.run import transfer

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
OPTIONS = ROOT / "docs" / "options.md"


@pytest.mark.parametrize("module", [objective, transfer])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_option_table_is_generated_from_the_parser():
    text = OPTIONS.read_text(encoding="utf-8")
    table = re.search(r"<!-- options:[^\n]*-->\n(.*?)<!-- /options -->", text, re.S).group(1)
    assert table == cli.options_table(), "regenerate the table in docs/options.md with jaxstyle.cli.options_table()"


def test_every_option_is_declared_once_and_reaches_the_parser_and_the_table():
    """Each StyleConfig field with a flag is one row of the table and one option of `jaxstyle`,
    with the field's kind; the fields that may differ inside a batch are exactly the per-job ones."""
    table = cli.options_table()
    flagged = [f for f in config.options() if f.metadata["flag"]]
    for f in flagged:
        flag = "--" + f.name.replace("_", "-")
        row = next(line for line in table.splitlines() if f"`{flag}`" in line)
        assert row.endswith(f"| {config.KINDS[f.metadata['kind']]} |"), row
    parsed = cli.build_parser().parse_args(["c.png", "s.png", "-o", "o.png"])
    assert all(hasattr(parsed, f.name) for f in flagged)
    from jaxstyle.run.batch import PER_JOB_FIELDS

    assert set(PER_JOB_FIELDS) == {f.name for f in config.options() if f.metadata["kind"] == "per_job"}
    assert {"content_weight", "style_weight", "seed", "color", "chunk"} <= set(PER_JOB_FIELDS)
    assert not {"size", "steps", "optimizer", "style_layers"} & set(PER_JOB_FIELDS)


PUBLIC = ["jaxstyle." + name for name in __import__("jaxstyle").__all__] + [
    "jaxstyle.notebook.live", "jaxstyle.compile_cache.enable"]


def _readme_command(marker: str) -> str:
    """The first line of the fenced block after ``<!-- MARKER -->`` in the README (as ``.ci/run`` reads it)."""
    block = re.search(rf"<!-- {marker} -->\n```[a-z]*\n(.*?)\n", README.read_text(encoding="utf-8"))
    assert block, f"README lacks the <!-- {marker} --> command"
    return block.group(1)


def test_every_public_name_has_a_docstring():
    import importlib

    for dotted in PUBLIC:
        module, _, name = dotted.rpartition(".")
        obj = getattr(importlib.import_module(module), name)
        if callable(obj):
            assert (obj.__doc__ or "").strip(), f"{dotted} has no docstring"


def test_docs_site_builds_offline_with_warnings_as_errors(tmp_path):
    """The README's docs command, pointed at a fresh output folder: no warning, and the reference
    (the site's inventory) describes every public name and every module of the package."""
    command = _readme_command("docs:build")
    assert "sphinx -W" in command and command.endswith("docs docs/_build/html"), command
    sphinx_args = command.split("python -m sphinx", 1)[1].split()[:-1] + [str(tmp_path / "html")]
    result = subprocess.run([sys.executable, "-m", "sphinx", "-E", *sphinx_args], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    from sphinx.util.inventory import InventoryFile

    with open(tmp_path / "html" / "objects.inv", "rb") as f:
        inventory = InventoryFile.load(f, "", lambda base, uri: uri)
    described = {name for kind in inventory if kind.startswith("py:") for name in inventory[kind]}
    assert set(PUBLIC) <= described, sorted(set(PUBLIC) - described)
    modules = {m.name for m in pkgutil.walk_packages(jaxstyle.__path__, "jaxstyle.") if not m.name.endswith("__main__")}
    assert modules <= set(inventory["py:module"]), sorted(modules - set(inventory["py:module"]))
    assert (tmp_path / "html" / "notebooks" / "quickstart.html").is_file()  # the notebooks are rendered
