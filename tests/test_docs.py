"""Docstring examples run and the README's option table is the parser's, so the documentation cannot rot."""

import doctest
import re
from pathlib import Path

import pytest

from jaxstyle import cli, config, objective, transfer

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.parametrize("module", [objective, transfer])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_readme_option_table_is_generated_from_the_parser():
    text = README.read_text(encoding="utf-8")
    table = re.search(r"<!-- options:[^\n]*-->\n(.*?)<!-- /options -->", text, re.S).group(1)
    assert table == cli.options_table(), "regenerate the README table with jaxstyle.cli.options_table()"


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
    from jaxstyle.batch import PER_JOB_FIELDS

    assert set(PER_JOB_FIELDS) == {f.name for f in config.options() if f.metadata["kind"] == "per_job"}
    assert {"content_weight", "style_weight", "seed", "color", "chunk"} <= set(PER_JOB_FIELDS)
    assert not {"size", "steps", "optimizer", "style_layers"} & set(PER_JOB_FIELDS)
