"""The ``jaxstyle`` command: arguments → StyleConfig → stylize → an atomically written image.

Every default comes from :class:`jaxstyle.StyleConfig`; nothing is repeated here.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import traceback
import warnings
from pathlib import Path

from . import color, interrupt, losses, optimize, vgg
from .config import INITS, StyleConfig
from .errors import JaxstyleError
from .hub import DEFAULT as DEFAULT_WEIGHTS

DEVICES = ("cpu", "gpu", "tpu")
ISSUES = "https://github.com/jaxstyle/jaxstyle/issues"
_DEFAULT = StyleConfig()


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        # No abbreviated flags: `--content-w 0.5` was read as --content-weight by argparse but missed
        # by given_options, so under --preset paper the user's value was silently dropped.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):  # one line, exit 2, as for every other bad input
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="jaxstyle",
        description="Neural style transfer (Gatys, Ecker & Bethge 2015): render CONTENT in the style of STYLE.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("content", help="content photograph (any image file Pillow reads)")
    p.add_argument("styles", nargs="+", metavar="style", help="style image(s); several are blended equally")
    p.add_argument("-o", "--output", required=True, help="output image (.png, .jpg or .jpeg)")
    p.add_argument("--size", type=int, default=_DEFAULT.size, help="long side of the output in pixels")
    p.add_argument("--steps", type=int, default=_DEFAULT.steps, help="optimizer iterations")
    p.add_argument("--content-weight", type=float, default=_DEFAULT.content_weight, help="alpha: content weight")
    p.add_argument("--style-weight", type=float, default=_DEFAULT.style_weight, help="beta: style weight")
    p.add_argument("--tv-weight", type=float, default=_DEFAULT.tv_weight, help="total-variation weight")
    p.add_argument("--tv-kind", choices=losses.TV_KINDS, default=_DEFAULT.tv_kind, help="total-variation norm")
    p.add_argument("--init", default=_DEFAULT.init, help=f"start image: {' or '.join(INITS)} or an image path")
    p.add_argument("--noise-scale", type=float, default=_DEFAULT.noise_scale,
                   help="amplitude of a noise start: uniform in 0.5 ± scale/2 (the paper preset: 0.5)")
    p.add_argument("--optimizer", choices=optimize.OPTIMIZERS, default=_DEFAULT.optimizer)
    p.add_argument("--lr", type=float, default=_DEFAULT.lr,
                   help="learning rate (default: " + ", ".join(f"{k} {v}" for k, v in optimize.DEFAULT_LR.items()) + ")")
    p.add_argument("--linesearch", choices=optimize.LINESEARCHES, default=_DEFAULT.linesearch, help="L-BFGS line search")
    p.add_argument("--pooling", choices=vgg.POOLINGS, default=_DEFAULT.pooling)
    p.add_argument("--normalization", choices=losses.NORMALIZATIONS, default=_DEFAULT.normalization,
                   help="loss normalisation (see jaxstyle.losses)")
    p.add_argument("--content-layers", type=_layers, default=_DEFAULT.content_layers, help="comma-separated layer names")
    p.add_argument("--style-layers", type=_layers, default=_DEFAULT.style_layers, help="comma-separated layer names")
    p.add_argument("--content-layer-weights", type=_floats, default=None, help="comma-separated, one per content layer (default equal)")
    p.add_argument("--style-layer-weights", type=_floats, default=None, help="comma-separated, one per style layer (default equal)")
    p.add_argument("--style-loss", choices=losses.STYLE_LOSSES, default=_DEFAULT.style_loss,
                   help="gram (the paper) or wasserstein (mean and covariance)")
    p.add_argument("--style-blend-weights", type=_floats, default=None, help="comma-separated, one per style image (normalised)")
    p.add_argument("--style-scale", type=_floats, default=(_DEFAULT.style_scale,),
                   help="style image size relative to the output: one number, or one per style image")
    p.add_argument("--color", choices=color.COLORS, default=_DEFAULT.color,
                   help="keep the photo's colours: luminance-only transfer or histogram matching")
    p.add_argument("--scales", type=int, default=_DEFAULT.scales,
                   help="number of sizes, coarse to fine; 0 = automatic (coarse to fine above 1024 px)")
    p.add_argument("--scale-ratio", type=float, default=_DEFAULT.scale_ratio, help="size ratio between scales")
    p.add_argument("--scale-steps", type=int, default=_DEFAULT.scale_steps, help="iterations at each coarser scale (default --steps)")
    p.add_argument("--average", type=float, default=_DEFAULT.average,
                   help="decay of the image's moving average returned instead of the last iterate (0 = off; e.g. 0.9 with adam)")
    p.add_argument("--tile", type=int, default=_DEFAULT.tile, metavar="PX",
                   help="evaluate tile by tile with cores of PX pixels (exact; memory stays flat); "
                        "default: only when the image does not fit --max-memory; 0 = never")
    p.add_argument("--max-memory", type=float, default=_DEFAULT.max_memory, metavar="GB",
                   help="memory budget that decides tiling (default: 70%% of the free memory)")
    p.add_argument("--seed", type=int, default=_DEFAULT.seed, help="seed of every random choice")
    p.add_argument("--save-every", type=int, default=None, metavar="N", help="also write OUT_NNNN.ext every N steps")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), default=8, help="bits per channel (16: .png or .tif)")
    p.add_argument("--weights", default=DEFAULT_WEIGHTS,
                   help="VGG-19 weights: caffe-q8 (bundled), torchvision (after `jaxstyle weights fetch torchvision`) "
                        "or a .safetensors/.npz file")
    p.add_argument("--device", choices=DEVICES, default=None, help="run on this kind of device (default: JAX's default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--preset", choices=("default", "paper"), default="default",
                   help="paper: Gatys et al. (noise start, avg pooling, normalised VGG, alpha/beta 1e-3, "
                        "eq. 1 per position); explicit options still override it")
    p.add_argument("--normalize-vgg", action=argparse.BooleanOptionalAction, default=_DEFAULT.normalize_vgg,
                   help="the paper's normalised network (mean activation 1); --no-normalize-vgg turns it off under --preset paper")
    p.add_argument("--plot-loss", default=None, metavar="PNG", help="also save the loss curve as a plot")
    return p


def given_options(parser: argparse.ArgumentParser, argv) -> set[str]:
    """Destinations of the options that appear explicitly on the command line."""
    tokens = [t.split("=", 1)[0] for t in argv if t.startswith("-")]
    return {a.dest for a in parser._actions if any(o in tokens for o in a.option_strings)}


def config_from_args(args: argparse.Namespace, given: set[str] | None = None) -> StyleConfig:
    """The run's StyleConfig: the preset (default or paper), overridden by every option given.

    ``given`` names the options typed on the command line; ``None`` means all of them (API use).
    """
    values = dict(
        size=args.size, steps=args.steps, content_weight=args.content_weight, style_weight=args.style_weight,
        tv_weight=args.tv_weight, tv_kind=args.tv_kind, init=args.init, noise_scale=args.noise_scale,
        optimizer=args.optimizer, lr=args.lr,
        linesearch=args.linesearch, pooling=args.pooling, normalization=args.normalization,
        content_layers=args.content_layers, style_layers=args.style_layers,
        content_layer_weights=args.content_layer_weights, style_layer_weights=args.style_layer_weights,
        style_loss=args.style_loss, style_blend_weights=args.style_blend_weights,
        style_scale=args.style_scale[0] if len(args.style_scale) == 1 else args.style_scale,
        color=args.color, scales=args.scales, scale_ratio=args.scale_ratio, scale_steps=args.scale_steps,
        average=args.average, normalize_vgg=args.normalize_vgg, seed=args.seed, tile=args.tile,
        max_memory=args.max_memory,
        chunk=args.save_every if args.save_every else _DEFAULT.chunk,
    )
    if getattr(args, "preset", "default") == "paper":
        base = StyleConfig.paper()
        if given is not None:
            values = {k: v for k, v in values.items() if k in given or (k == "chunk" and "save_every" in given)}
        return base.replace(**values).validate()
    return StyleConfig(**values).validate()


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


def run(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return render(Render(
        content=args.content, styles=tuple(args.styles), output=args.output,
        config=config_from_args(args, given_options(parser, argv)), weights=args.weights, bit_depth=args.bit_depth,
        save_every=args.save_every, plot_loss=args.plot_loss, quiet=args.quiet, device=args.device,
        argv=tuple(argv) if argv is not None else None))


def render(job: Render) -> int:
    """Check every output, then optimise, save the image, its sidecar and the optional plot."""
    from .image import check_output_path, load_image, save_image
    from .provenance import metadata, sidecar_path, write_sidecar
    from .transfer import prepare, stylize
    from .hub import load as load_weights

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
    init = config.init
    inputs = {"content image": job.content, **{f"style image {i + 1}": s for i, s in enumerate(job.styles)}}
    if init not in INITS:
        inputs["--init image"] = init
    check_outputs(outputs, inputs)
    if init not in INITS and not Path(init).is_file():
        raise JaxstyleError(f"--init {init!r} is neither {' nor '.join(INITS)} nor an existing image file")
    if init not in INITS:
        load_image(init)  # fail on an unreadable start image before any work
    content, styles = prepare(job.content, list(job.styles), config)  # bad images fail before any work
    weights = load_weights(job.weights)  # stylize() normalises it if the config asks
    with _device(job.device), _progress(config, job.quiet) as show:
        def callback(p):
            interrupt.check()
            if show is not None:
                show(p)
            if job.save_every and (p.step % job.save_every == 0 or p.step == p.steps):
                path = intermediate_path(output, p.step)
                save_image(p.image(), path, job.bit_depth)
                interrupt.keep(path.name)

        result = stylize(content, styles, config, weights=weights, callback=callback,
                         log=None if job.quiet else _say)
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
        f"wrote {job.output} ({result.image.shape[1]}x{result.image.shape[0]}, {len(result.history)} steps, "
        f"loss {result.terms['total']:.4g}, {t['total']:.1f} s)",
        file=sys.stderr,
    )
    return 0


def build_rerun_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="jaxstyle rerun", description="Render an image again from its JSON sidecar: the same "
                "config, images, weights and bit depth give the same pixels on the same machine.")
    p.add_argument("sidecar", help="the OUT.png.json written next to an image")
    p.add_argument("-o", "--output", default=None, help="the new image (default: OUT_rerun.EXT beside the original)")
    p.add_argument("--device", choices=DEVICES, default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run_rerun(argv) -> int:
    from .provenance import read_sidecar

    args = build_rerun_parser().parse_args(argv)
    meta = read_sidecar(args.sidecar)
    original = Path(str(args.sidecar)[: -len(".json")]) if str(args.sidecar).endswith(".json") else Path(args.sidecar)
    output = args.output or str(original.with_name(f"{original.stem}_rerun{original.suffix}"))
    weights = meta.get("weights") or DEFAULT_WEIGHTS
    from .hub import load as load_weights

    if load_weights(weights).sha256 != meta["weights_sha256"]:
        raise JaxstyleError(f"the weights {weights!r} no longer have the SHA-256 recorded in {args.sidecar}; "
                            "restore the file the image was made with")
    return render(Render(content=meta["content"], styles=tuple(meta["styles"]), output=output, config=meta["config"],
                         weights=weights, bit_depth=meta.get("bit_depth", 8), quiet=args.quiet, device=args.device,
                         argv=("rerun", *argv)))


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

    total = sum(steps for _, steps in config.schedule())
    bar = tqdm(total=total, unit="step", desc="stylize", dynamic_ncols=True)

    def callback(p):
        bar.update(p.step - bar.n)
        bar.set_postfix(loss=f"{p.loss:.4g}")

    try:
        yield callback
    finally:
        bar.close()


def build_weights_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="jaxstyle weights", description="List, fetch, verify and convert VGG-19 weight sets.")
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="known sets, whether cached, sizes, recorded hashes")
    f = sub.add_parser("fetch", help="download a set through huggingface_hub (needs network)")
    f.add_argument("name")
    f.add_argument("--revision", default=None)
    f.add_argument("--force", action="store_true", help="download again and re-record the hash")
    v = sub.add_parser("verify", help="check a set's or file's SHA-256 against the pinned or recorded one")
    v.add_argument("name", nargs="?", default=DEFAULT_WEIGHTS)
    t = sub.add_parser("trust", help="record a weight file's SHA-256 after checking it loads (after changing it on purpose)")
    t.add_argument("path", help=".safetensors or .npz weight file")
    c = sub.add_parser("convert", help="convert a weight file to jaxstyle safetensors")
    c.add_argument("source", help=".safetensors or .npz in any accepted naming scheme")
    c.add_argument("output", help="output .safetensors")
    c.add_argument("--quantize", action="store_true", help="8-bit k-means, as the bundled file (about 4x smaller)")
    c.add_argument("--preprocessing", choices=("caffe", "torchvision"), default=None)
    return p


def run_weights(argv) -> int:
    from . import hub

    args = build_weights_parser().parse_args(argv)
    if args.action == "list":
        for row in hub.status():
            size = f"{row['bytes'] / 1e6:.1f} MB" if row["bytes"] else "-"
            where = row["path"] or "not cached"
            print(f"{row['name']:<12} {size:>9}  {row['description']}\n{'':<12} {'':>9}  {where}"
                  + (f"\n{'':<12} {'':>9}  sha256 {row['sha256']}" if row["sha256"] else ""))
    elif args.action == "fetch":
        path = hub.fetch(args.name, revision=args.revision, force=args.force)
        print(f"{args.name}: {path}")
    elif args.action == "verify":
        print(f"{args.name}: ok, sha256 {hub.verify(args.name)}")
    elif args.action == "trust":
        from .weights import trust

        print(f"{args.path}: trusted, sha256 {trust(args.path)}")
    else:
        from .convert import convert

        errors = convert(args.source, args.output, quantize=args.quantize, preprocessing=args.preprocessing)
        print(f"wrote {args.output}; relative feature error on the test image:")
        for layer, err in errors.items():
            print(f"  {layer:<8} {err:.2e}")
    return 0


def build_sweep_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="jaxstyle sweep", description="Run or resume a sweep spec (TOML or JSON); see jaxstyle/sweep.py.")
    p.add_argument("spec", help="sweep spec file (.toml or .json)")
    p.add_argument("-o", "--output", required=True, help="output folder (created; rerunning resumes)")
    p.add_argument("--batch", type=int, default=None, help="jobs per compiled batch (default: what fits in memory)")
    p.add_argument("--weights", default=DEFAULT_WEIGHTS, help="as for the main command")
    p.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() and take this process's share of the jobs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run_sweep(argv) -> int:
    import jax

    from .hub import load as load_weights
    from .sweep import run_sweep as sweep

    args = build_sweep_parser().parse_args(argv)
    if args.batch is not None and args.batch < 1:
        raise JaxstyleError(f"--batch (={args.batch}) must be a positive number of jobs")
    if args.distributed:
        try:
            jax.distributed.initialize()
        except (ValueError, RuntimeError) as e:
            raise JaxstyleError(
                f"cannot start jax.distributed ({(str(e).splitlines() or [''])[0]}): run every process under a launcher that "
                "JAX detects (SLURM, Open MPI, a Cloud TPU slice), or drop --distributed to run on this machine alone") from None
    bar = None

    def progress(done, total):  # the bar appears once the spec and the folder have been checked
        nonlocal bar
        if args.quiet:
            return
        if bar is None:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="job", desc="sweep", dynamic_ncols=True)
        bar.total = total
        bar.update(done - bar.n)

    try:
        counts = sweep(args.spec, args.output, batch_size=args.batch, weights=load_weights(args.weights),
                       progress=progress, process_index=jax.process_index(), process_count=jax.process_count())
    except KeyboardInterrupt:
        from .sweep import done_ids

        done = len(done_ids(Path(args.output))) if Path(args.output).is_dir() else 0
        if done:
            interrupt.keep(f"{done} finished job(s) in {args.output} (run the same command again to resume)")
        raise
    finally:
        if bar is not None:
            bar.close()
    print(f"sweep: {counts['done']} done, {counts['skipped']} already done, {counts['failed']} failed, "
          f"{counts['groups']} compiled group(s); results in {args.output}", file=sys.stderr)
    return 1 if counts["failed"] else 0


def build_paper_parser(command: str) -> argparse.ArgumentParser:
    from .paper import TEXTURE_NOISE

    paper = StyleConfig.paper()
    p = _Parser(prog=f"jaxstyle {command}", formatter_class=argparse.ArgumentDefaultsHelpFormatter, description={
        "figure": "Reproduce a figure of Gatys et al. (2015) as a labelled contact sheet.",
        "reconstruct": "Content reconstruction: from white noise, match one layer's features (Fig. 1).",
        "texture": "Texture synthesis / style reconstruction: match only Gram matrices (Fig. 1).",
    }[command])
    if command == "figure":
        p.add_argument("number", type=int, choices=(1, 2, 3))
        p.add_argument("--content", default=None, help="photo (default: the bundled example)")
        p.add_argument("--styles", nargs="+", default=None, help="painting(s) (default: the bundled example)")
    else:
        p.add_argument("image", help="the photo" if command == "reconstruct" else "the painting")
    if command == "reconstruct":
        p.add_argument("--layer", default="relu4_2", help="layer whose features are matched")
    if command == "texture":
        p.add_argument("--layers", type=_texture_layers, default=paper.style_layers, help="comma-separated style layers")
    p.add_argument("-o", "--output", required=True, help="output image (.png, .jpg, .tif)")
    p.add_argument("--size", type=int, default=256, help="long side in pixels")
    p.add_argument("--steps", type=int, default=paper.steps)
    p.add_argument("--pooling", choices=vgg.POOLINGS, default=paper.pooling)
    p.add_argument("--optimizer", choices=optimize.OPTIMIZERS, default=paper.optimizer)
    p.add_argument("--seed", type=int, default=paper.seed)
    if command != "figure":
        p.add_argument("--noise-scale", type=float,
                       default=TEXTURE_NOISE if command == "texture" else paper.noise_scale,
                       help="amplitude of the white-noise start: uniform in 0.5 ± scale/2")
    else:
        p.add_argument("--ratio", type=float, default=paper.content_weight / paper.style_weight,
                       help="alpha/beta of Fig. 2 (the paper: 1e-3, some panels 1e-4); Fig. 3 spans 1e-5 … 1e-2")
    p.add_argument("--plain-vgg", action="store_true", help="skip the paper's network normalisation")
    p.add_argument("--plot-loss", default=None, metavar="PNG", help="also save the loss curves as a plot")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def run_paper(command: str, argv) -> int:
    from . import paper
    from .examples import CONTENT, STYLE
    from .image import check_output_path, save_image, save_pil
    from .sheet import loss_plot

    args = build_paper_parser(command).parse_args(argv)
    output = check_output_path(args.output)
    outputs = {"-o": output}
    if args.plot_loss:
        outputs["--plot-loss"] = check_output_path(args.plot_loss)
    if command == "figure":
        inputs = {"content image": args.content, **{f"style image {i + 1}": s for i, s in enumerate(args.styles or [])}}
    else:
        inputs = {"input image": args.image}
    check_outputs(outputs, inputs)
    preset = StyleConfig.paper()
    config = preset.replace(size=args.size, steps=args.steps, pooling=args.pooling, optimizer=args.optimizer,
                            seed=args.seed, noise_scale=getattr(args, "noise_scale", preset.noise_scale),
                            normalize_vgg=not args.plain_vgg, style_weight=1.0,
                            content_weight=getattr(args, "ratio", preset.content_weight / preset.style_weight)).validate()
    if command == "reconstruct":
        result = paper.reconstruct(args.image, args.layer, config)
        save_image(result.image, output)
        histories = {args.layer: result.history}
    elif command == "texture":
        result = paper.texture(args.image, args.layers, config, noise_scale=args.noise_scale)
        save_image(result.image, output)
        histories = {",".join(args.layers): result.history}
    else:
        content = args.content or str(CONTENT)
        styles = args.styles or [str(STYLE)]
        if args.number == 1:
            sheet, res = paper.figure1(content, styles[0], config)
            histories = {**{f"texture {k}": r.history for k, r in res["textures"].items()},
                         **{f"content {k}": r.history for k, r in res["contents"].items()}}
        elif args.number == 2:
            sheet, res = paper.figure2(content, styles, config)
            histories = {f"style {i + 1}": r.history for i, r in enumerate(res)}
        else:
            sheet, res = paper.figure3(content, styles[0], config)
            histories = {f"{paper.paper_name(row[0].config.style_layers[-1])} a/b={r.config.content_weight:g}": r.history
                         for row in res for r in row[::3]}
        save_pil(sheet, output)
    if args.plot_loss:
        save_pil(loss_plot(histories, title=f"jaxstyle {command}: loss per step"), args.plot_loss)
    if not args.quiet:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _dispatch(argv) -> int:
    if argv[:1] == ["weights"]:
        return run_weights(argv[1:])
    if argv[:1] == ["sweep"]:
        return run_sweep(argv[1:])
    if argv[:1] == ["rerun"]:
        return run_rerun(argv[1:])
    if argv[:1] in (["figure"], ["reconstruct"], ["texture"]):
        return run_paper(argv[0], argv[1:])
    return run(argv)


def _out_of_memory(error: BaseException) -> bool:
    text = str(error)
    return isinstance(error, MemoryError) or "RESOURCE_EXHAUSTED" in text or "Out of memory" in text


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"jaxstyle: warning: {message}", file=sys.stderr)


def main(argv=None, *, handle_signals: bool = True) -> int:
    """The ``jaxstyle`` command. Every ending is one line on stderr: 0 done, 2 bad input (the line
    names the problem and the fix), 130/143 interrupted (the line says what was kept), 1 internal
    error (``--debug`` anywhere on the command line adds the traceback)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    signals = interrupt.installed() if handle_signals else contextlib.nullcontext()
    with signals, warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return _dispatch(argv)
        except JaxstyleError as e:
            print(f"jaxstyle: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as e:
            print(f"jaxstyle: interrupted; {interrupt.kept_summary()}", file=sys.stderr)
            return getattr(e, "exit_code", 130)
        except Exception as e:  # noqa: BLE001: the one place that turns every other failure into one line
            if debug:
                traceback.print_exc()
            if _out_of_memory(e):
                print("jaxstyle: error: out of memory; lower --size (or --style-scale), or set --max-memory below "
                      f"what this machine has free so the image is tiled{'' if debug else ' (--debug for details)'}",
                      file=sys.stderr)
                return 2
            first = (str(e).strip().splitlines() or [""])[0][:200]
            print(f"jaxstyle: internal error: {type(e).__name__}: {first}; please report it with the command line "
                  f"at {ISSUES}{'' if debug else ' (rerun with --debug for the traceback)'}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
