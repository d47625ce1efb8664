"""``jaxstyle figure``, ``reconstruct`` and ``texture``: the paper's figures and experiments."""

from __future__ import annotations

import sys
from pathlib import Path

from ..config import StyleConfig
from ..examples import CONTENT, SECOND_STYLE, STYLE
from ..io.image import check_output_path, save_image, save_pil
from ..io.sheet import loss_plot
from ..model import vgg
from ..optim import optimize
from ..run import paper as figures
from ..run.paper import TEXTURE_NOISE
from .options import add, check_outputs, texture_layers


def add_parsers(sub) -> None:
    """The ``figure``, ``reconstruct`` and ``texture`` commands."""
    for command in ("figure", "reconstruct", "texture"):
        _add_parser(sub, command)


def _add_parser(sub, command: str) -> None:
    paper = StyleConfig.paper()
    p = sub.add_parser(command, prog=f"jaxstyle {command}", help=f"the paper's {command}", description={
        "figure": "Reproduce a figure of Gatys et al. (2015) as a labelled contact sheet (1, 2, 3), or the spatial "
                  "control of Gatys et al. (2017): sky and ground from two paintings, with and without guidance, or "
                  "(losses) one photo and painting with every registered style loss at jaxstyle's default settings.",
        "reconstruct": "Content reconstruction: from white noise, match one layer's features (Fig. 1).",
        "texture": "Texture synthesis / style reconstruction: match only Gram matrices (Fig. 1).",
    }[command])
    if command == "figure":
        p.add_argument("number", choices=("1", "2", "3", "spatial", "losses"))
        add(p, "--content", default=None, shown="the bundled example", help="photo")
        add(p, "--styles", nargs="+", default=None, shown="the bundled example(s)", help="painting(s)")
        add(p, "--content-mask", default=None, metavar="PNG", shown="--horizon",
             help="spatial: label image of the photo, two colours (the first seen from the top: painting 1)")
        add(p, "--horizon", type=float, default=0.5,
             help="spatial, without --content-mask: painting 1 above this fraction of the height, painting 2 below")
        add(p, "--ratio", type=float, default=paper.content_weight / paper.style_weight,
             help="alpha/beta of Fig. 2 (the paper: 1e-3, some panels 1e-4); Fig. 3 spans 1e-5 … 1e-2")
    else:
        p.add_argument("image", help="the photo" if command == "reconstruct" else "the painting")
        add(p, "--noise-scale", type=float, default=TEXTURE_NOISE if command == "texture" else paper.noise_scale,
             help="amplitude of the white-noise start: uniform in 0.5 ± scale/2")
    if command == "reconstruct":
        add(p, "--layer", default="relu4_2", help="layer whose features are matched")
    if command == "texture":
        add(p, "--layers", type=texture_layers, default=paper.style_layers, help="comma-separated style layers")
    add(p, "-o", "--output", required=True, help="output image (.png, .jpg, .tif)")
    add(p, "--size", type=int, default=256, help="long side in pixels")
    add(p, "--steps", type=int, default=paper.steps, help="optimizer iterations")
    add(p, "--pooling", choices=vgg.POOLINGS, default=paper.pooling, help="max or avg")
    add(p, "--optimizer", choices=optimize.OPTIMIZERS, default=paper.optimizer, help="lbfgs or adam")
    add(p, "--seed", type=int, default=paper.seed, help="seed of the noise start")
    add(p, "--plain-vgg", action="store_true", shown="off", help="skip the paper's network normalisation")
    add(p, "--plot-loss", default=None, metavar="PNG", help="also save the loss curves as a plot")
    add(p, "--quiet", action="store_true", shown="off", help="no progress output")
    p.set_defaults(run={"figure": run_figure, "reconstruct": run_reconstruct, "texture": run_texture}[command])


def _paper_outputs(args, inputs: dict) -> Path:
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
        save_pil(loss_plot(histories, title=f"jaxstyle {command}: loss per step"), args.plot_loss)
    if not args.quiet:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def run_reconstruct(args, argv) -> int:
    """``jaxstyle reconstruct``: content reconstruction from white noise at one layer."""
    output = _paper_outputs(args, {"input image": args.image})
    result = figures.reconstruct(args.image, args.layer, _paper_config(args, noise_scale=args.noise_scale))
    save_image(result.image, output)
    return _paper_done(args, "reconstruct", {args.layer: result.history})


def run_texture(args, argv) -> int:
    """``jaxstyle texture``: texture synthesis from Gram matrices alone."""
    output = _paper_outputs(args, {"input image": args.image})
    result = figures.texture(args.image, args.layers, _paper_config(args, noise_scale=args.noise_scale))
    save_image(result.image, output)
    return _paper_done(args, "texture", {",".join(args.layers): result.history})


def run_figure(args, argv) -> int:
    """``jaxstyle figure N``: one of the paper's figures as a labelled contact sheet."""
    output = _paper_outputs(args, {"content image": args.content, "content mask": args.content_mask,
                                   **{f"style image {i + 1}": s for i, s in enumerate(args.styles or [])}})
    config = _paper_config(args, content_weight=args.ratio, style_weight=1.0)
    content, styles = args.content or str(CONTENT), args.styles or [str(STYLE)]
    if args.number == "losses":  # not the paper's: the default settings, one column per style loss
        config = StyleConfig(size=args.size, steps=args.steps, seed=args.seed)
        sheet, res = figures.figure_losses(content, styles[0], config)
        histories = {name: r.history for name, r in res.items()}
    elif args.number == "spatial":
        sheet, res = figures.figure_spatial(content, args.styles or [str(STYLE), str(SECOND_STYLE)], config,
                                          args.content_mask, args.horizon)
        histories = {name: r.history for name, r in res.items()}
    elif args.number == "1":
        sheet, res = figures.figure1(content, styles[0], config)
        histories = {**{f"texture {k}": r.history for k, r in res["textures"].items()},
                     **{f"content {k}": r.history for k, r in res["contents"].items()}}
    elif args.number == "2":
        sheet, res = figures.figure2(content, styles, config)
        histories = {f"style {i + 1}": r.history for i, r in enumerate(res)}
    else:
        sheet, res = figures.figure3(content, styles[0], config)
        histories = {f"{figures.paper_name(row[0].config.style_layers[-1])} a/b={r.config.content_weight:g}": r.history
                     for row in res for r in row[::3]}
    save_pil(sheet, output)
    return _paper_done(args, "figure", histories)
