"""``jaxstyle [stylize]`` and ``jaxstyle rerun``: one image, its sidecar, and the same image again from it."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

from .. import interrupt
from ..config import StyleConfig
from ..errors import JaxstyleError
from ..evaluate import memory
from ..io.files import atomic_write_all
from ..io.image import check_output_path, image_writer, same_file, save_image, save_pil
from ..io.sheet import loss_plot
from ..model.hub import DEFAULT as DEFAULT_WEIGHTS
from ..model.hub import load as load_weights
from ..run.problem import Job, prepare_job
from ..run.provenance import input_files, metadata, read_sidecar, resolve_inputs, sidecar_path, sidecar_writer
from ..run.transfer import run
from .endings import say, step_progress
from .options import (COMMANDS, DEVICES, PRESETS, add, add_config_options, check_outputs, config_from_args, device,
                      given_options)


def add_parsers(sub) -> None:
    """The ``stylize`` and ``rerun`` commands."""
    p = sub.add_parser("stylize", prog="jaxstyle", help="render CONTENT in the style of STYLE (the default command)",
                       description="Neural style transfer (Gatys, Ecker & Bethge 2015): render CONTENT in the style "
                                   "of STYLE.",
                       epilog="Other commands: " + ", ".join(f"jaxstyle {c}" for c in COMMANDS[1:])
                              + " (each with --help).")
    p.add_argument("content", help="content photograph (any image file Pillow reads)")
    p.add_argument("styles", nargs="+", metavar="style", help="style image(s); several are blended equally")
    add(p, "-o", "--output", required=True, help="output image (.png, .jpg, .jpeg or .tif)")
    add_config_options(p)
    add(p, "--save-every", type=int, default=None, metavar="N", help="also write OUT_0050.png, … every N steps")
    add(p, "--bit-depth", type=int, choices=(8, 16), default=8, help="bits per channel (16: .png or .tif)")
    add(p, "--weights", default=DEFAULT_WEIGHTS,
         help="VGG-19 weights: caffe-q8 (bundled), torchvision (after `jaxstyle weights fetch torchvision`) "
              "or a .safetensors/.npz file")
    add(p, "--preset", choices=tuple(PRESETS), default="default",
         help="paper: Gatys et al. (noise start, avg pooling, normalised VGG, alpha/beta 1e-3, eq. 1 per position); "
              "options given explicitly still override it")
    add(p, "--plot-loss", default=None, metavar="PNG", help="also save the loss curve as a PNG")
    add(p, "--device", choices=DEVICES, default=None, shown="JAX's default", help="run on this kind of device")
    add(p, "--quiet", action="store_true", shown="off", help="no progress bar")
    p.set_defaults(run=run_stylize)


    r = sub.add_parser("rerun", prog="jaxstyle rerun", description="Render an image again from its JSON sidecar: the "
                       "same images (found beside the sidecar if moved; checked by SHA-256), options, weights (checked "
                       "by SHA-256) and bit depth.", help="re-render from a sidecar")
    r.add_argument("sidecar", help="the OUT.png.json written next to an image")
    r.add_argument("-o", "--output", default=None, help="the new image (default: OUT_rerun.EXT beside the original)")
    r.add_argument("--device", choices=DEVICES, default=None)
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--force", action="store_true", help="render even if an input image changed since (its SHA-256)")
    r.set_defaults(run=run_rerun)


def run_stylize(args: argparse.Namespace, argv) -> int:
    """``jaxstyle [stylize]``: one image from a photo and paintings."""
    return render(Render(
        content=args.content, styles=tuple(args.styles), output=args.output,
        config=config_from_args(args, given_options(argv)), weights=args.weights, bit_depth=args.bit_depth,
        save_every=args.save_every, plot_loss=args.plot_loss, quiet=args.quiet, device=args.device,
        argv=tuple(str(a) for a in argv)))


def intermediate_path(output: Path, step: int) -> Path:
    """Where ``--save-every`` writes the image of ``step``: ``OUT_0050.png`` beside ``output``."""
    return output.with_name(f"{output.stem}_{step:04d}{output.suffix}")


def _intermediate_step(output: Path, path) -> int | None:
    """The step whose ``--save-every`` image ``path`` would be, or ``None``."""
    if not isinstance(path, (str, Path)) or not same_file(Path(path).parent, output.parent):
        return None
    match = re.fullmatch(rf"{re.escape(output.stem)}_(\d{{4,}}){re.escape(output.suffix)}", Path(path).name)
    return int(match.group(1)) if match and intermediate_path(output, int(match.group(1))) == output.with_name(
        Path(path).name) else None


def _saved_steps(every: int | None, total: int):
    """Whether ``--save-every`` writes the image of a step: every ``every``-th and the last."""
    return lambda step: bool(every) and 1 <= step <= total and (step % every == 0 or step == total)


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
    config = job.config
    if job.save_every is not None and job.save_every < 1:
        raise JaxstyleError(f"--save-every (={job.save_every}) must be a positive number of steps")
    output = check_output_path(job.output, job.bit_depth)
    outputs = {"-o": output, "the sidecar": sidecar_path(output)}
    if job.plot_loss:
        outputs["--plot-loss"] = check_output_path(job.plot_loss)
    total = sum(steps for _, steps in config.schedule())
    saved = _saved_steps(job.save_every, total)
    if job.save_every:  # the pattern, checked at its shortest and longest names, not every path
        for step in sorted({job.save_every, total}):
            outputs[f"the --save-every image of step {step}"] = intermediate_path(output, step)
    inputs = input_files(job.content, job.styles, config)
    check_outputs(outputs, inputs)
    for what, path in inputs.items():  # an input the --save-every images would overwrite
        step = _intermediate_step(output, path)
        if step is not None and saved(step):
            raise JaxstyleError(f"--save-every {job.save_every} would overwrite the {what} {str(path)!r} at step "
                                f"{step}; choose another output name")
    prepared = prepare_job(Job(job.content, job.styles, config))  # bad images fail before any work
    weights = load_weights(job.weights)  # stylize() normalises it if the config asks
    budget = memory.budget(config.memory_budget)  # recorded in the sidecar
    if job.weights_sha256 is not None and weights.sha256 != job.weights_sha256:
        raise JaxstyleError(f"the weights {job.weights!r} no longer have the SHA-256 recorded in {job.sidecar}; "
                            "restore the file the image was made with")
    with device(job.device), step_progress(config, job.quiet) as show:
        def callback(p):
            interrupt.check()
            if show is not None:
                show(p)
            if saved(p.step):  # the names checked above
                path = intermediate_path(output, p.step)
                save_image(p.image(), path, job.bit_depth)
                interrupt.keep(path.name)

        (result,) = run([prepared], weights=weights, callback=callback, log=None if job.quiet else say, strict=True)
    interrupt.check()
    meta = metadata(result, content=job.content, styles=job.styles, weights=job.weights, weights_sha256=weights.sha256,
                    bit_depth=job.bit_depth, argv=job.argv, memory_budget=budget)
    atomic_write_all([(output, image_writer(result.image, output, job.bit_depth)),  # both or neither
                      (sidecar_path(output), sidecar_writer(meta))])
    interrupt.keep(output.name)
    if job.plot_loss:
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
    """``jaxstyle rerun``: the same image again from its sidecar."""
    meta = read_sidecar(args.sidecar)
    original = Path(str(args.sidecar)[: -len(".json")]) if str(args.sidecar).endswith(".json") else Path(args.sidecar)
    output = args.output or str(original.with_name(f"{original.stem}_rerun{original.suffix}"))
    weights = meta.get("weights") or DEFAULT_WEIGHTS
    files = resolve_inputs(meta, args.sidecar, force=args.force)
    config = meta["config"].replace(**{key: files[label] for key, label in (("init", "--init image"),
                                                                            ("content_mask", "--content-mask"))
                                       if label in files})
    if config.style_masks:
        config = config.replace(style_masks=tuple(files[f"style mask {i + 1}"] for i in range(len(config.style_masks))))
    styles = tuple(files[f"style image {i + 1}"] for i in range(len(meta["styles"])))
    return render(Render(content=files["content image"], styles=styles, output=output, config=config,
                         weights=weights, bit_depth=meta.get("bit_depth", 8), quiet=args.quiet, device=args.device,
                         argv=tuple(str(a) for a in argv), weights_sha256=meta["weights_sha256"],
                         sidecar=str(args.sidecar)))
