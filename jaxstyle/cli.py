"""The ``jaxstyle`` command: ``jaxstyle [stylize] CONTENT STYLE... -o OUT`` and its subcommands.

One argparse parser with a subparser per command (``stylize`` is the default, so the command's
first word may be left out). The options of ``stylize`` are :class:`StyleConfig`'s fields, declared
once there with their help, choices and kind (``config.option``); the README's option table is
generated from this parser (:func:`options_table`, checked by a test). Every ending is one line
on stderr (:func:`main`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import traceback
import warnings
from pathlib import Path

from . import compile_cache, interrupt, optimize, vgg
from .config import INITS, KINDS, StyleConfig, options
from .errors import JaxstyleError
from .hub import DEFAULT as DEFAULT_WEIGHTS

DEVICES = ("cpu", "gpu", "tpu")
ISSUES = "https://github.com/jaxstyle/jaxstyle/issues"
COMMANDS = ("stylize", "rerun", "sweep", "video", "weights", "figure", "reconstruct", "texture")
PRESETS = {"default": StyleConfig, "paper": StyleConfig.paper}


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        # No abbreviated flags: `--content-w 0.5` was read as --content-weight by argparse but missed
        # by given_options, so under --preset paper the user's value was silently dropped.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):  # one line, exit 2, as for every other bad input
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Command(_Parser):
    """The top-level parser: a first word that is not a command means ``stylize``."""

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        if not args or args[0] not in COMMANDS:
            args = ["stylize", *args]
        return super().parse_known_args(args, namespace)


# --- value parsers ----------------------------------------------------------------------------------

def _layers(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _texture_layers(text: str) -> tuple[str, ...]:
    layers = _layers(text)
    if not layers:
        raise argparse.ArgumentTypeError("empty; name at least one layer, e.g. relu1_1,relu2_1")
    return layers


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def _one_or_more_floats(text: str) -> float | tuple[float, ...]:
    values = _floats(text)
    return values[0] if len(values) == 1 else values


# How a StyleConfig field's annotation is read from the command line.
_TYPES = {"int": int, "int | None": int, "float": float, "float | None": float, "str": str,
          "tuple[str, ...]": _layers, "tuple[float, ...] | None": _floats,
          "float | tuple[float, ...]": _one_or_more_floats, "str | None": str, "tuple[str, ...] | None": _layers}


def _shown(value) -> str:
    if value is None or value is False:
        return "off"
    if value is True:
        return "on"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _add(parser, *flags, shown: str | None = None, kind: str | None = None, **kwargs):
    """``add_argument`` that records the default as shown to people (help text, README table) and
    the option's kind (``config.KINDS``) on the action."""
    if shown is None and "default" in kwargs and kwargs.get("action") not in ("store_true", "help"):
        shown = _shown(kwargs["default"])
    help_text = kwargs.pop("help", "")
    if shown is not None:
        help_text = f"{help_text} (default: {shown})".replace("%", "%%")
    action = parser.add_argument(*flags, help=help_text, **kwargs)
    action.shown, action.kind = shown, kind
    return action


def _add_config_options(parser, base: StyleConfig = StyleConfig()) -> None:
    """One flag per :class:`StyleConfig` field, from the field's metadata; defaults from ``base``."""
    for f in options():
        meta = f.metadata
        if not meta["flag"]:
            continue
        flag = "--" + f.name.replace("_", "-")
        kwargs = dict(default=getattr(base, f.name), help=meta["help"], shown=meta["shown"], kind=meta["kind"])
        if meta["choices"]:
            kwargs["choices"] = meta["choices"]
        if meta["metavar"]:
            kwargs["metavar"] = meta["metavar"]
        if f.type == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _TYPES.get(f.type, str)
        _add(parser, flag, **kwargs)


# --- the parser ----------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every command, as argparse subparsers."""
    top = _Command(prog="jaxstyle", description="Neural style transfer (Gatys, Ecker & Bethge 2015).")
    sub = top.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("stylize", prog="jaxstyle", help="render CONTENT in the style of STYLE (the default command)",
                       description="Neural style transfer (Gatys, Ecker & Bethge 2015): render CONTENT in the style "
                                   "of STYLE.",
                       epilog="Other commands: " + ", ".join(f"jaxstyle {c}" for c in COMMANDS[1:])
                              + " (each with --help).")
    p.add_argument("content", help="content photograph (any image file Pillow reads)")
    p.add_argument("styles", nargs="+", metavar="style", help="style image(s); several are blended equally")
    _add(p, "-o", "--output", required=True, help="output image (.png, .jpg, .jpeg or .tif)")
    _add_config_options(p)
    _add(p, "--save-every", type=int, default=None, metavar="N", help="also write OUT_0050.png, … every N steps")
    _add(p, "--bit-depth", type=int, choices=(8, 16), default=8, help="bits per channel (16: .png or .tif)")
    _add(p, "--weights", default=DEFAULT_WEIGHTS,
         help="VGG-19 weights: caffe-q8 (bundled), torchvision (after `jaxstyle weights fetch torchvision`) "
              "or a .safetensors/.npz file")
    _add(p, "--preset", choices=tuple(PRESETS), default="default",
         help="paper: Gatys et al. (noise start, avg pooling, normalised VGG, alpha/beta 1e-3, eq. 1 per position); "
              "options given explicitly still override it")
    _add(p, "--plot-loss", default=None, metavar="PNG", help="also save the loss curve as a PNG")
    _add(p, "--device", choices=DEVICES, default=None, shown="JAX's default", help="run on this kind of device")
    _add(p, "--quiet", action="store_true", shown="off", help="no progress bar")
    p.set_defaults(run=run_stylize)

    r = sub.add_parser("rerun", prog="jaxstyle rerun", description="Render an image again from its JSON sidecar: the "
                       "same images, options, weights (checked by SHA-256) and bit depth.", help="re-render from a sidecar")
    r.add_argument("sidecar", help="the OUT.png.json written next to an image")
    r.add_argument("-o", "--output", default=None, help="the new image (default: OUT_rerun.EXT beside the original)")
    r.add_argument("--device", choices=DEVICES, default=None)
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(run=run_rerun)

    s = sub.add_parser("sweep", prog="jaxstyle sweep", help="run or resume a sweep spec",
                       description="Run or resume a sweep spec (TOML or JSON); see jaxstyle/sweep.py.")
    s.add_argument("spec", help="sweep spec file (.toml or .json)")
    s.add_argument("-o", "--output", required=True, help="output folder (created; rerunning resumes)")
    s.add_argument("--batch", type=int, default=None, help="jobs per compiled batch (default: what fits in memory)")
    s.add_argument("--weights", default=DEFAULT_WEIGHTS, help="as for the main command")
    s.add_argument("--distributed", action="store_true",
                   help="one of several processes (jax.distributed): take this process's share of the jobs; under "
                        "SLURM, Open MPI or a Cloud TPU slice JAX finds the others, else give the next three")
    s.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="process 0's address (every process)")
    s.add_argument("--num-processes", type=int, default=None, metavar="N", help="how many processes")
    s.add_argument("--process-id", type=int, default=None, metavar="I", help="this process: 0 … N-1")
    s.add_argument("--coordinator-timeout", type=int, default=300, metavar="S",
                   help="seconds to wait for the coordinator and the other processes")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(run=run_sweep)

    _add_video_parser(sub)

    w = sub.add_parser("weights", prog="jaxstyle weights", help="list, fetch, verify and convert weight sets",
                       description="List, fetch, verify and convert VGG-19 weight sets.")
    actions = w.add_subparsers(dest="action", required=True, parser_class=_Parser)
    actions.add_parser("list", help="known sets, whether cached, sizes, recorded hashes").set_defaults(run=run_weights_list)
    f = actions.add_parser("fetch", help="download a set through huggingface_hub (needs network)")
    f.add_argument("name")
    f.add_argument("--force", action="store_true", help="download again and re-record the hash")
    f.set_defaults(run=run_weights_fetch)
    v = actions.add_parser("verify", help="check a set's or file's SHA-256 against the pinned or recorded one")
    v.add_argument("name", nargs="?", default=DEFAULT_WEIGHTS)
    v.set_defaults(run=run_weights_verify)
    t = actions.add_parser("trust", help="record a weight file's SHA-256 after checking it loads (after changing it on purpose)")
    t.add_argument("path", help=".safetensors or .npz weight file")
    t.set_defaults(run=run_weights_trust)
    c = actions.add_parser("convert", help="convert a weight file to jaxstyle safetensors")
    c.add_argument("source", help=".safetensors or .npz in any accepted naming scheme")
    c.add_argument("output", help="output .safetensors")
    c.add_argument("--quantize", action="store_true", help="8-bit k-means, as the bundled file (about 4x smaller)")
    c.add_argument("--preprocessing", choices=("caffe", "torchvision"), default=None)
    c.set_defaults(run=run_weights_convert)

    for command in ("figure", "reconstruct", "texture"):
        _add_paper_parser(sub, command)
    return top


def _add_video_parser(sub) -> None:
    from .flow import FLOWS
    from .frames import VIDEO_SUFFIXES
    from .video import VideoOptions

    default = VideoOptions()
    v = sub.add_parser("video", prog="jaxstyle video", help="stylise a video, frame after frame, temporally consistent",
                       description="Stylise a video (a file, or a folder of frames) frame after frame, each frame started "
                                   "from the previous output warped by the optical flow and held close to it by a "
                                   "temporal loss (Ruder, Dosovitskiy & Brox 2016). Finished frames are kept in "
                                   "OUT.frames/ (or the output folder) with a manifest: rerunning the same command "
                                   "resumes at the first missing frame. Needs the video extra: pip install 'jaxstyle[video]'.")
    v.add_argument("video", help="input video file or folder of frames (sorted by name)")
    v.add_argument("styles", nargs="+", metavar="style", help="style image(s); several are blended equally")
    _add(v, "-o", "--output", required=True,
         help=f"output video ({', '.join(VIDEO_SUFFIXES)}) or a folder for the frames")
    _add_config_options(v)
    _add(v, "--temporal-weight", type=float, default=default.temporal_weight,
         help="weight of the temporal loss (0: none)")
    _add(v, "--flow", choices=FLOWS, default=default.flow, help="optical flow (OpenCV)")
    _add(v, "--frames", default=None, metavar="A:B", shown="all", help="frames A to B-1 only (0-based)")
    _add(v, "--fps", type=float, default=None, shown="the input's", help="frame rate of the output video")
    _add(v, "--warp-start", action=argparse.BooleanOptionalAction, default=default.warp_start,
         help="start each frame from the warped previous output (else from --init)")
    _add(v, "--frame-steps", type=int, default=None, metavar="N", shown="--steps",
         help="iterations for each frame after the first (it starts near its result)")
    _add(v, "--weights", default=DEFAULT_WEIGHTS, help="as for the main command")
    _add(v, "--preset", choices=tuple(PRESETS), default="default", help="as for the main command")
    _add(v, "--device", choices=DEVICES, default=None, shown="JAX's default", help="run on this kind of device")
    _add(v, "--quiet", action="store_true", shown="off", help="no progress bar")
    v.set_defaults(run=run_video, save_every=None)


def _add_paper_parser(sub, command: str) -> None:
    from .paper import TEXTURE_NOISE

    paper = StyleConfig.paper()
    p = sub.add_parser(command, prog=f"jaxstyle {command}", help=f"the paper's {command}", description={
        "figure": "Reproduce a figure of Gatys et al. (2015) as a labelled contact sheet (1, 2, 3), or the spatial "
                  "control of Gatys et al. (2017): sky and ground from two paintings, with and without guidance.",
        "reconstruct": "Content reconstruction: from white noise, match one layer's features (Fig. 1).",
        "texture": "Texture synthesis / style reconstruction: match only Gram matrices (Fig. 1).",
    }[command])
    if command == "figure":
        p.add_argument("number", choices=("1", "2", "3", "spatial"))
        _add(p, "--content", default=None, shown="the bundled example", help="photo")
        _add(p, "--styles", nargs="+", default=None, shown="the bundled example(s)", help="painting(s)")
        _add(p, "--content-mask", default=None, metavar="PNG", shown="--horizon",
             help="spatial: label image of the photo, two colours (the first seen from the top: painting 1)")
        _add(p, "--horizon", type=float, default=0.5,
             help="spatial, without --content-mask: painting 1 above this fraction of the height, painting 2 below")
        _add(p, "--ratio", type=float, default=paper.content_weight / paper.style_weight,
             help="alpha/beta of Fig. 2 (the paper: 1e-3, some panels 1e-4); Fig. 3 spans 1e-5 … 1e-2")
    else:
        p.add_argument("image", help="the photo" if command == "reconstruct" else "the painting")
        _add(p, "--noise-scale", type=float, default=TEXTURE_NOISE if command == "texture" else paper.noise_scale,
             help="amplitude of the white-noise start: uniform in 0.5 ± scale/2")
    if command == "reconstruct":
        _add(p, "--layer", default="relu4_2", help="layer whose features are matched")
    if command == "texture":
        _add(p, "--layers", type=_texture_layers, default=paper.style_layers, help="comma-separated style layers")
    _add(p, "-o", "--output", required=True, help="output image (.png, .jpg, .tif)")
    _add(p, "--size", type=int, default=256, help="long side in pixels")
    _add(p, "--steps", type=int, default=paper.steps, help="optimizer iterations")
    _add(p, "--pooling", choices=vgg.POOLINGS, default=paper.pooling, help="max or avg")
    _add(p, "--optimizer", choices=optimize.OPTIMIZERS, default=paper.optimizer, help="lbfgs or adam")
    _add(p, "--seed", type=int, default=paper.seed, help="seed of the noise start")
    _add(p, "--plain-vgg", action="store_true", shown="off", help="skip the paper's network normalisation")
    _add(p, "--plot-loss", default=None, metavar="PNG", help="also save the loss curves as a plot")
    _add(p, "--quiet", action="store_true", shown="off", help="no progress output")
    p.set_defaults(run={"figure": run_figure, "reconstruct": run_reconstruct, "texture": run_texture}[command])


def subparser(command: str) -> argparse.ArgumentParser:
    """The parser of one command (``stylize``, ``sweep``, …)."""
    top = build_parser()
    return next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices[command]


def given_options(argv) -> set[str]:
    """Destinations of the ``stylize`` options that appear explicitly on the command line."""
    tokens = [str(t).split("=", 1)[0] for t in argv if str(t).startswith("-")]
    return {a.dest for a in subparser("stylize")._actions
            if any(o in tokens or f"--no-{o[2:]}" in tokens for o in a.option_strings)}


def config_from_args(args: argparse.Namespace, given: set[str] | None = None) -> StyleConfig:
    """The run's StyleConfig: the preset (default or paper), overridden by every option given.

    ``given`` names the options typed on the command line; ``None`` means all of them (API use).
    """
    values = {f.name: getattr(args, f.name) for f in options() if f.metadata["flag"]}
    values["chunk"] = args.save_every or StyleConfig().chunk
    if given is not None:
        given = given | ({"chunk"} if "save_every" in given else set())
        if args.preset != "default":
            values = {k: v for k, v in values.items() if k in given}
    return PRESETS[args.preset]().replace(**values).validate()


def options_table() -> str:
    """The README's option table (markdown), generated from the ``stylize`` parser."""
    rows = ["| option | default | meaning | changing it |", "|---|---|---|---|"]
    for action in subparser("stylize")._actions:
        if not action.option_strings or action.dest == "help":
            continue
        flags = ", ".join(f"`{o}`" for o in action.option_strings)
        meaning = action.help.rsplit(" (default: ", 1)[0].replace("%%", "%")
        if action.choices and not all(str(c) in meaning for c in action.choices):
            meaning += " (" + ", ".join(f"`{c}`" for c in action.choices) + ")"
        default = "required" if action.required else action.shown or "-"
        rows.append(f"| {flags} | {default} | {meaning} | {KINDS.get(action.kind, '-')} |")
    return "\n".join(rows) + "\n"


# --- commands -------------------------------------------------------------------------------------------

def run_stylize(args: argparse.Namespace, argv) -> int:
    return render(Render(
        content=args.content, styles=tuple(args.styles), output=args.output,
        config=config_from_args(args, given_options(argv)), weights=args.weights, bit_depth=args.bit_depth,
        save_every=args.save_every, plot_loss=args.plot_loss, quiet=args.quiet, device=args.device,
        argv=tuple(str(a) for a in argv)))


def _device(kind: str | None):
    import jax

    if kind is None:
        return contextlib.nullcontext()
    try:
        devices = jax.devices(kind)
    except RuntimeError:
        available = sorted({d.platform for d in jax.devices()})
        raise JaxstyleError(f"no {kind} device is available; available: {', '.join(available)} (drop --device or pick one of those)") from None
    return jax.default_device(devices[0])


def intermediate_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}_{step:04d}{output.suffix}")


def check_outputs(outputs: dict[str, Path], inputs: dict[str, object]) -> None:
    """Refuse, before any work, outputs that cannot be written or that would destroy a file: two
    outputs on one path, or an output on an input image (compared as files: links count)."""
    from .image import check_writable, file_identity

    seen = {file_identity(path): ("input", what) for what, path in inputs.items() if isinstance(path, (str, Path))}
    for what, path in outputs.items():
        check_writable(path, what)
        kind, other = seen.setdefault(file_identity(path), ("output", what))
        if kind == "input":
            raise JaxstyleError(f"{what} {str(path)!r} is the {other}: writing it would destroy your file; "
                                "choose another output name")
        if other != what:
            raise JaxstyleError(f"{what} and {other} are the same file {str(path)!r}; give each its own name")


@dataclasses.dataclass(frozen=True)
class Render:
    """One image to render, as the main command and ``rerun`` describe it."""

    content: str
    styles: tuple[str, ...]
    output: str
    config: StyleConfig
    weights: str = DEFAULT_WEIGHTS
    bit_depth: int = 8
    save_every: int | None = None
    plot_loss: str | None = None
    quiet: bool = False
    device: str | None = None
    argv: tuple | None = None
    weights_sha256: str | None = None  # rerun: the hash the weights must still have
    sidecar: str | None = None  # rerun: where that hash was recorded


def render(job: Render) -> int:
    """Check every output, then optimise, save the image, its sidecar and the optional plot."""
    from .hub import load as load_weights
    from .image import check_output_path, save_image
    from .provenance import metadata, sidecar_path, write_sidecar
    from .problem import Job, prepare_job
    from .transfer import run

    config = job.config
    if job.save_every is not None and job.save_every < 1:
        raise JaxstyleError(f"--save-every (={job.save_every}) must be a positive number of steps")
    output = check_output_path(job.output, job.bit_depth)
    outputs = {"-o": output, "the sidecar": sidecar_path(output)}
    if job.plot_loss:
        outputs["--plot-loss"] = check_output_path(job.plot_loss)
    total = sum(steps for _, steps in config.schedule())
    if job.save_every:
        for step in sorted({*range(job.save_every, total + 1, job.save_every), total}):
            outputs[f"the --save-every image of step {step}"] = intermediate_path(output, step)
    inputs = {"content image": job.content, **{f"style image {i + 1}": s for i, s in enumerate(job.styles)}}
    if config.init not in INITS:
        inputs["--init image"] = config.init
    if config.content_mask is not None:
        inputs["--content-mask"] = config.content_mask
    inputs.update({f"style mask {i + 1}": m for i, m in enumerate(config.style_masks or ())})
    check_outputs(outputs, inputs)
    prepared = prepare_job(Job(job.content, job.styles, config))  # bad images fail before any work
    weights = load_weights(job.weights)  # stylize() normalises it if the config asks
    if job.weights_sha256 is not None and weights.sha256 != job.weights_sha256:
        raise JaxstyleError(f"the weights {job.weights!r} no longer have the SHA-256 recorded in {job.sidecar}; "
                            "restore the file the image was made with")
    with _device(job.device), _progress(config, job.quiet) as show:
        def callback(p):
            interrupt.check()
            if show is not None:
                show(p)
            if job.save_every and (p.step % job.save_every == 0 or p.step == total):  # the names checked above
                path = intermediate_path(output, p.step)
                save_image(p.image(), path, job.bit_depth)
                interrupt.keep(path.name)

        (result,) = run([prepared], weights=weights, callback=callback, log=None if job.quiet else _say, strict=True)
    interrupt.check()
    save_image(result.image, output, job.bit_depth)
    interrupt.keep(output.name)
    write_sidecar(output, metadata(result, content=job.content, styles=job.styles, weights=job.weights,
                                   weights_sha256=weights.sha256, bit_depth=job.bit_depth, argv=job.argv))
    if job.plot_loss:
        from .image import save_pil
        from .sheet import loss_plot

        save_pil(loss_plot({"total loss": result.history}, title=f"{output.name}: loss per step"), job.plot_loss)
    t = result.timings
    print(
        f"wrote {job.output} ({result.image.shape[1]}x{result.image.shape[0]}, {len(result.history)} steps"
        f"{f' of {total}: the loss settled (--tolerance)' if len(result.history) < total else ''}, "
        f"loss {result.terms['total']:.4g}, {t['total']:.1f} s)",
        file=sys.stderr,
    )
    return 0


def run_rerun(args: argparse.Namespace, argv) -> int:
    from .provenance import read_sidecar

    meta = read_sidecar(args.sidecar)
    original = Path(str(args.sidecar)[: -len(".json")]) if str(args.sidecar).endswith(".json") else Path(args.sidecar)
    output = args.output or str(original.with_name(f"{original.stem}_rerun{original.suffix}"))
    weights = meta.get("weights") or DEFAULT_WEIGHTS
    return render(Render(content=meta["content"], styles=tuple(meta["styles"]), output=output, config=meta["config"],
                         weights=weights, bit_depth=meta.get("bit_depth", 8), quiet=args.quiet, device=args.device,
                         argv=tuple(str(a) for a in argv), weights_sha256=meta["weights_sha256"],
                         sidecar=str(args.sidecar)))


def run_weights_list(args, argv) -> int:
    from . import hub

    for row in hub.status():
        size = f"{row['bytes'] / 1e6:.1f} MB" if row["bytes"] else "-"
        where = row["path"] or "not cached"
        print(f"{row['name']:<12} {size:>9}  {row['description']}\n{'':<12} {'':>9}  {where}"
              + (f"\n{'':<12} {'':>9}  sha256 {row['sha256']}" if row["sha256"] else ""))
    return 0


def run_weights_fetch(args, argv) -> int:
    from . import hub

    print(f"{args.name}: {hub.fetch(args.name, force=args.force)}")
    return 0


def run_weights_verify(args, argv) -> int:
    from . import hub

    print(f"{args.name}: ok, sha256 {hub.verify(args.name)}")
    return 0


def run_weights_trust(args, argv) -> int:
    from .weights import trust

    print(f"{args.path}: trusted, sha256 {trust(args.path)}")
    return 0


def run_weights_convert(args, argv) -> int:
    from .convert import convert

    errors = convert(args.source, args.output, quantize=args.quantize, preprocessing=args.preprocessing)
    print(f"wrote {args.output}; relative feature error on the test image:")
    for layer, err in errors.items():
        print(f"  {layer:<8} {err:.2e}")
    return 0


class _Bar:
    """A progress bar over jobs or frames, made at the first report (when the total is known and the
    inputs have been checked), closed on leaving its ``with``; nothing when ``quiet``."""

    def __init__(self, quiet: bool, unit: str, desc: str):
        self.quiet, self.unit, self.desc, self.bar = quiet, unit, desc, None

    def show(self, done: int, total: int, **postfix) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=max(0, done - 1), unit=self.unit, desc=self.desc, dynamic_ncols=True)
        self.bar.total = total
        self.bar.update(done - self.bar.n)
        if postfix:
            self.bar.set_postfix(**postfix)

    def __enter__(self) -> "_Bar":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def _resumable(count, what: str, where):
    """On Ctrl-C or SIGTERM, say how many finished items (``count()``) stay in ``where`` for a rerun."""
    try:
        yield
    except KeyboardInterrupt:
        done = count()
        if done:
            interrupt.keep(f"{done} finished {what}(s) in {where} (run the same command again to resume)")
        raise


def run_sweep(args: argparse.Namespace, argv) -> int:
    from . import cluster
    from .hub import load as load_weights
    from .sweep import SHEET
    from .sweep import run_sweep as sweep

    if args.batch is not None and args.batch < 1:
        raise JaxstyleError(f"--batch (={args.batch}) must be a positive number of jobs")
    manual = (args.coordinator, args.num_processes, args.process_id)
    if any(v is not None for v in manual) and not args.distributed:
        raise JaxstyleError("--coordinator, --num-processes and --process-id belong to --distributed; add it")
    processes = cluster.ALONE
    if args.distributed:
        processes = cluster.start(args.coordinator, args.num_processes, args.process_id, args.coordinator_timeout)
    bar = _Bar(args.quiet, unit="job", desc="sweep")  # appears once the spec and the folder have been checked

    def kept() -> int:
        from .sweep import done_ids

        return len(done_ids(Path(args.output))) if Path(args.output).is_dir() else 0

    with bar, _resumable(kept, "job", args.output):
        counts = sweep(args.spec, args.output, batch_size=args.batch, weights=load_weights(args.weights),
                       progress=bar.show, processes=processes)
    who = f" (process {processes.index} of {processes.count})" if processes.count > 1 else ""
    print(f"sweep{who}: {counts['done']} done, {counts['skipped']} already done, {counts['failed']} failed, "
          f"{counts['groups']} compiled group(s); results in {args.output}"
          + (f"; contact sheet {SHEET}" if processes.index == 0 and (Path(args.output) / SHEET).is_file() else ""),
          file=sys.stderr)
    return 1 if counts["failed"] else 0


def run_video(args: argparse.Namespace, argv) -> int:
    from .frames import is_video_file, parse_frames
    from .hub import load as load_weights
    from .image import OUTPUT_FORMATS, same_file
    from .video import VideoOptions, frames_folder, stylize_video

    config = config_from_args(args, given_options(argv))
    options = VideoOptions(args.temporal_weight, args.flow, parse_frames(args.frames), args.fps, args.warp_start,
                           args.frame_steps).validate()
    output = Path(args.output)
    if output.suffix.lower() in OUTPUT_FORMATS:
        raise JaxstyleError(f"-o {args.output!r} is an image; give a video file (.mp4, …) or a folder for the frames")
    inputs = {"input video": args.video, **{f"style image {i + 1}": s for i, s in enumerate(args.styles)}}
    if is_video_file(output):
        check_outputs({"-o": output}, inputs)
    folder = frames_folder(output)
    if folder.exists() and not folder.is_dir():
        raise JaxstyleError(f"{str(folder)!r} is a file, not a folder for the frames; choose another -o")
    if folder.is_dir() and Path(args.video).is_dir() and same_file(folder, args.video):
        raise JaxstyleError(f"-o {args.output!r} is the input folder: its frames would be overwritten; choose another -o")
    weights = load_weights(args.weights)
    bar = _Bar(args.quiet, unit="frame", desc="video")

    def progress(p):
        bar.show(p.done, p.total, s_per_frame=f"{p.seconds:.1f}", loss=f"{p.loss:.4g}")

    with bar, _resumable(lambda: len(list(folder.glob("frame_*.png"))) if folder.is_dir() else 0, "frame", folder), \
            _device(args.device):
        summary = stylize_video(args.video, args.styles, output, config, options, weights=weights, progress=progress)
    per_frame = f", {summary['seconds_per_frame']:.1f} s per frame" if summary["seconds_per_frame"] else ""
    print(f"wrote {args.output} ({summary['frames']} frame(s): {summary['done']} stylised now, {summary['skipped']} "
          f"already done{per_frame}; frames in {summary['folder']})", file=sys.stderr)
    return 0


def _paper_outputs(args, inputs: dict) -> Path:
    from .image import check_output_path

    output = check_output_path(args.output)
    outputs = {"-o": output}
    if args.plot_loss:
        outputs["--plot-loss"] = check_output_path(args.plot_loss)
    check_outputs(outputs, inputs)
    return output


def _paper_config(args, **changes) -> StyleConfig:
    return StyleConfig.paper().replace(size=args.size, steps=args.steps, pooling=args.pooling, optimizer=args.optimizer,
                                       seed=args.seed, normalize_vgg=not args.plain_vgg, **changes).validate()


def _paper_done(args, command: str, histories: dict) -> int:
    if args.plot_loss:
        from .image import save_pil
        from .sheet import loss_plot

        save_pil(loss_plot(histories, title=f"jaxstyle {command}: loss per step"), args.plot_loss)
    if not args.quiet:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def run_reconstruct(args, argv) -> int:
    from . import paper
    from .image import save_image

    output = _paper_outputs(args, {"input image": args.image})
    result = paper.reconstruct(args.image, args.layer, _paper_config(args, noise_scale=args.noise_scale))
    save_image(result.image, output)
    return _paper_done(args, "reconstruct", {args.layer: result.history})


def run_texture(args, argv) -> int:
    from . import paper
    from .image import save_image

    output = _paper_outputs(args, {"input image": args.image})
    result = paper.texture(args.image, args.layers, _paper_config(args, noise_scale=args.noise_scale))
    save_image(result.image, output)
    return _paper_done(args, "texture", {",".join(args.layers): result.history})


def run_figure(args, argv) -> int:
    from . import paper
    from .examples import CONTENT, SECOND_STYLE, STYLE
    from .image import save_pil

    output = _paper_outputs(args, {"content image": args.content, "content mask": args.content_mask,
                                   **{f"style image {i + 1}": s for i, s in enumerate(args.styles or [])}})
    config = _paper_config(args, content_weight=args.ratio, style_weight=1.0)
    content, styles = args.content or str(CONTENT), args.styles or [str(STYLE)]
    if args.number == "spatial":
        sheet, res = paper.figure_spatial(content, args.styles or [str(STYLE), str(SECOND_STYLE)], config,
                                          args.content_mask, args.horizon)
        histories = {name: r.history for name, r in res.items()}
    elif args.number == "1":
        sheet, res = paper.figure1(content, styles[0], config)
        histories = {**{f"texture {k}": r.history for k, r in res["textures"].items()},
                     **{f"content {k}": r.history for k, r in res["contents"].items()}}
    elif args.number == "2":
        sheet, res = paper.figure2(content, styles, config)
        histories = {f"style {i + 1}": r.history for i, r in enumerate(res)}
    else:
        sheet, res = paper.figure3(content, styles[0], config)
        histories = {f"{paper.paper_name(row[0].config.style_layers[-1])} a/b={r.config.content_weight:g}": r.history
                     for row in res for r in row[::3]}
    save_pil(sheet, output)
    return _paper_done(args, "figure", histories)


def _say(line: str) -> None:
    """A line on stderr that does not tear the progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(f"jaxstyle: {line}", file=sys.stderr)


@contextlib.contextmanager
def _progress(config: StyleConfig, quiet: bool):
    if quiet:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=sum(steps for _, steps in config.schedule()), unit="step", desc="stylize", dynamic_ncols=True)

    def callback(p):
        bar.total = p.steps  # fewer once a scale stops early (--tolerance)
        bar.update(p.step - bar.n)
        bar.set_postfix(loss=f"{p.loss:.4g}")

    try:
        yield callback
    finally:
        bar.close()


def _out_of_memory(error: BaseException) -> bool:
    text = str(error)
    return isinstance(error, MemoryError) or "RESOURCE_EXHAUSTED" in text or "Out of memory" in text


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"jaxstyle: warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def _one_line_endings(debug: bool, status: dict):
    """Every ending as one line on stderr and an exit status in ``status["code"]``: 2 bad input
    (the line names the problem and the fix), 130/143 interrupted (the line says what was kept),
    1 internal error (with ``debug``, the traceback too)."""
    try:
        yield
    except JaxstyleError as e:
        print(f"jaxstyle: error: {e}", file=sys.stderr)
        status["code"] = 2
    except KeyboardInterrupt as e:
        print(f"jaxstyle: interrupted; {interrupt.kept_summary()}", file=sys.stderr)
        status["code"] = getattr(e, "exit_code", 130)
    except Exception as e:  # noqa: BLE001: the one place that turns every other failure into one line
        if debug:
            traceback.print_exc()
        if _out_of_memory(e):
            print("jaxstyle: error: out of memory; lower --size (or --style-scale), or set --max-memory below "
                  f"what this machine has free so the image is tiled{'' if debug else ' (--debug for details)'}",
                  file=sys.stderr)
            status["code"] = 2
        else:
            first = (str(e).strip().splitlines() or [""])[0][:200]
            print(f"jaxstyle: internal error: {type(e).__name__}: {first}; please report it with the command line "
                  f"at {ISSUES}{'' if debug else ' (rerun with --debug for the traceback)'}", file=sys.stderr)
            status["code"] = 1


def main(argv=None, *, handle_signals: bool = True) -> int:
    """The ``jaxstyle`` command; returns its exit status (``--debug`` anywhere adds tracebacks)."""
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    status = {"code": 0}
    with interrupt.installed() if handle_signals else contextlib.nullcontext(), warnings.catch_warnings(), \
            _one_line_endings("--debug" in argv, status):
        warnings.showwarning = _show_warning
        argv = [a for a in argv if a != "--debug"]
        args = build_parser().parse_args(argv)
        compile_cache.enable()  # a second run at the same size reads its programs back instead of compiling
        status["code"] = args.run(args, argv)
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
