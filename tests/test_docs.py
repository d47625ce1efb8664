"""Docstring examples run, so the documentation cannot rot."""

import doctest

import pytest

from jaxstyle import objective, transfer


@pytest.mark.parametrize("module", [objective, transfer])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
