"""The ``jaxstyle`` command: arguments → StyleConfig → stylize → an atomically written image.

Every default comes from :class:`jaxstyle.StyleConfig`; nothing is repeated here.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from . import losses, optimize, vgg
from .config import INITS, StyleConfig
from .errors import JaxstyleError

DEVICES = ("cpu", "gpu", "tpu")
_DEFAULT = StyleConfig()


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for every other bad input
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _layers(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


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
    p.add_argument("--seed", type=int, default=_DEFAULT.seed, help="seed of every random choice")
    p.add_argument("--device", choices=DEVICES, default=None, help="run on this kind of device (default: JAX's default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> StyleConfig:
    return StyleConfig(
        size=args.size,
        steps=args.steps,
        content_weight=args.content_weight,
        style_weight=args.style_weight,
        tv_weight=args.tv_weight,
        tv_kind=args.tv_kind,
        init=args.init,
        optimizer=args.optimizer,
        lr=args.lr,
        linesearch=args.linesearch,
        pooling=args.pooling,
        normalization=args.normalization,
        content_layers=args.content_layers,
        style_layers=args.style_layers,
        content_layer_weights=args.content_layer_weights,
        style_layer_weights=args.style_layer_weights,
        seed=args.seed,
    ).validate()


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


def run(argv=None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    from pathlib import Path

    from .image import check_output_path, load_image, save_image
    from .transfer import prepare, stylize

    check_output_path(args.output)
    init = config.init
    if init not in INITS and not Path(init).is_file():
        raise JaxstyleError(f"--init {init!r} is neither {' nor '.join(INITS)} nor an existing image file")
    if init not in INITS:
        load_image(init)  # fail on an unreadable start image before any work
    content, styles = prepare(args.content, args.styles, config)  # bad images fail before any work
    with _device(args.device), _progress(config, args.quiet) as callback:
        result = stylize(content, styles, config, callback=callback)
    save_image(result.image, args.output)
    t = result.timings
    print(
        f"wrote {args.output} ({result.image.shape[1]}x{result.image.shape[0]}, {config.steps} steps, "
        f"loss {result.terms['total']:.4g}, {t['total']:.1f} s)",
        file=sys.stderr,
    )
    return 0


@contextlib.contextmanager
def _progress(config: StyleConfig, quiet: bool):
    if quiet:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=config.steps, unit="step", desc="stylize", dynamic_ncols=True)

    def callback(p):
        bar.update(p.step - bar.n)
        bar.set_postfix(loss=f"{p.loss:.4g}")

    try:
        yield callback
    finally:
        bar.close()


def main(argv=None) -> int:
    try:
        return run(argv)
    except JaxstyleError as e:
        print(f"jaxstyle: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxstyle: interrupted; no output written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
