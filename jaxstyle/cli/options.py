"""What every command reads from its command line: the parser class, value types, the config options.

The options of ``stylize`` (and ``video``) are :class:`~jaxstyle.config.StyleConfig`'s fields, declared
once there with their help, choices and kind (``config.option``); :func:`add_config_options` turns them
into flags.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from ..config import StyleConfig, options
from ..errors import JaxstyleError
from ..io.image import check_writable, file_identity

DEVICES = ("cpu", "gpu", "tpu")
COMMANDS = ("stylize", "rerun", "sweep", "video", "train", "apply", "weights", "figure", "reconstruct", "texture")
PRESETS = {"default": StyleConfig, "paper": StyleConfig.paper}


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (exit 2) and which takes no abbreviated flags."""
    def __init__(self, *args, **kwargs):
        # No abbreviated flags: `--content-w 0.5` was read as --content-weight by argparse but missed
        # by given_options, so under --preset paper the user's value was silently dropped.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):  # one line, exit 2, as for every other bad input
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --- value parsers ----------------------------------------------------------------------------------

def layer_list(text: str) -> tuple[str, ...]:
    """Comma-separated layer names as a tuple (empty parts dropped)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def texture_layers(text: str) -> tuple[str, ...]:
    """Comma-separated layer names, at least one."""
    layers = layer_list(text)
    if not layers:
        raise argparse.ArgumentTypeError("empty; name at least one layer, e.g. relu1_1,relu2_1")
    return layers


def float_list(text: str) -> tuple[float, ...]:
    """Comma-separated numbers as a tuple of floats."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def one_or_more_floats(text: str) -> float | tuple[float, ...]:
    """One number, or a tuple of several, from comma-separated text."""
    values = float_list(text)
    return values[0] if len(values) == 1 else values


# How a StyleConfig field's annotation is read from the command line.
_TYPES = {"int": int, "int | None": int, "float": float, "float | None": float, "str": str,
          "tuple[str, ...]": layer_list, "tuple[float, ...] | None": float_list,
          "float | tuple[float, ...]": one_or_more_floats, "str | None": str, "str | losses.StyleLoss": str, "tuple[str, ...] | None": layer_list}


def shown_default(value) -> str:
    """A default as people read it in help and tables (``off``, ``on``, comma-separated tuples)."""
    if value is None or value is False:
        return "off"
    if value is True:
        return "on"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def add(parser, *flags, shown: str | None = None, kind: str | None = None, **kwargs):
    """``add_argument`` that records the default as shown to people (help text, the option table) and
    the option's kind (``config.KINDS``) on the action."""
    if shown is None and "default" in kwargs and kwargs.get("action") not in ("store_true", "help"):
        shown = shown_default(kwargs["default"])
    help_text = kwargs.pop("help", "")
    if shown is not None:
        help_text = f"{help_text} (default: {shown})".replace("%", "%%")
    action = parser.add_argument(*flags, help=help_text, **kwargs)
    action.shown, action.kind = shown, kind
    return action


def flag(name: str) -> str:
    """The command-line flag of an option: ``--name-with-dashes``."""
    return "--" + name.replace("_", "-")


def add_config_options(parser, base: StyleConfig = StyleConfig(), names: tuple[str, ...] | None = None) -> None:
    """One flag per :class:`StyleConfig` field (or per field in ``names``), from the field's metadata;
    defaults from ``base``."""
    for f in options():
        meta = f.metadata
        if not meta["flag"] or (names is not None and f.name not in names):
            continue
        kwargs = dict(default=getattr(base, f.name), help=meta["help"], shown=meta["shown"], kind=meta["kind"])
        if meta["choices"]:  # a callable gives them when the parser is built (the registered style losses)
            kwargs["choices"] = tuple(meta["choices"]() if callable(meta["choices"]) else meta["choices"])
        if meta["metavar"]:
            kwargs["metavar"] = meta["metavar"]
        if f.type == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _TYPES.get(f.type, str)
        add(parser, flag(f.name), **kwargs)


def given_options(argv) -> set[str]:
    """Destinations of the config options (and ``--save-every``) that appear explicitly in ``argv``."""
    tokens = {str(t).split("=", 1)[0] for t in argv if str(t).startswith("-")}
    names = [f.name for f in options() if f.metadata["flag"]] + ["save_every"]
    return {name for name in names if {flag(name), "--no-" + flag(name)[2:]} & tokens}


def config_from_args(args: argparse.Namespace, given: set[str] | None = None,
                     names: tuple[str, ...] | None = None) -> StyleConfig:
    """The run's StyleConfig: the preset (default or paper), overridden by every option given.

    ``given`` names the options typed on the command line; ``None`` means all of them (API use).
    ``names``: only these fields are read from ``args`` (a command with a subset of the options).
    """
    values = {f.name: getattr(args, f.name) for f in options()
              if f.metadata["flag"] and (names is None or f.name in names)}
    values["chunk"] = getattr(args, "save_every", None) or StyleConfig().chunk
    if given is not None:
        given = given | ({"chunk"} if "save_every" in given else set())
        if args.preset != "default":
            values = {k: v for k, v in values.items() if k in given}
    return PRESETS[args.preset]().replace(**values).validate()


def device(kind: str | None):
    """A context that places JAX's work on the first device of ``kind`` (``None``: JAX's default)."""
    import jax

    if kind is None:
        return contextlib.nullcontext()
    try:
        devices = jax.devices(kind)
    except RuntimeError:
        available = sorted({d.platform for d in jax.devices()})
        raise JaxstyleError(f"no {kind} device is available; available: {', '.join(available)} (drop --device or pick one of those)") from None
    return jax.defaultdevice(devices[0])


def check_outputs(outputs: dict[str, Path], inputs: dict[str, object]) -> None:
    """Refuse, before any work, outputs that cannot be written or that would destroy a file: two
    outputs on one path, or an output on an input image (compared as files: links count)."""
    seen = {file_identity(path): ("input", what) for what, path in inputs.items() if isinstance(path, (str, Path))}
    for what, path in outputs.items():
        check_writable(path, what)
        kind, other = seen.setdefault(file_identity(path), ("output", what))
        if kind == "input":
            raise JaxstyleError(f"{what} {str(path)!r} is the {other}: writing it would destroy your file; "
                                "choose another output name")
        if other != what:
            raise JaxstyleError(f"{what} and {other} are the same file {str(path)!r}; give each its own name")
