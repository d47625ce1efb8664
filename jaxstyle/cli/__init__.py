"""The ``jaxstyle`` command line: a parser, one module per command family, one-line endings.

Importing this package is instant (the console script, :mod:`jaxstyle.cli.entry`, installs its signal
handlers before JAX loads); ``main``, ``build_parser`` and ``options_table`` load on first use.
"""

import importlib

_LAZY = {"main": "app", "build_parser": "app", "options_table": "app", "config_from_args": "options",
         "given_options": "options"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'jaxstyle.cli' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value
