"""``jaxstyle train`` and ``jaxstyle apply``: a feed-forward network trained once, then applied in one pass."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from ..errors import JaxstyleError
from ..io.image import OUTPUT_FORMATS, check_output_path, save_image
from ..model.hub import DEFAULT as DEFAULT_WEIGHTS
from ..model.hub import load as load_weights
from ..net import apply as net_apply
from ..net import load as load_network
from ..net.inference import COLORS
from ..net.store import read as read_network_file
from ..net.checkpoint import curve_path, preview_path
from ..net.checkpoint import file_of as checkpoint_path
from ..net.training import STYLE_OPTIONS, TrainConfig, train
from .endings import Bar, say
from .options import DEVICES, add, add_config_options, check_outputs, config_from_args, device, flag, given_options


def add_parsers(sub) -> None:
    """The ``train`` and ``apply`` commands."""
    t = sub.add_parser("train", prog="jaxstyle train", help="train a fast style network on a painting and photos",
                       description="Train a feed-forward network (Johnson, Alahi & Fei-Fei 2016, with instance "
                                   "normalisation) to give any photo the style of STYLE, with jaxstyle's objective "
                                   "over random crops of the photos in --photos. Checkpoints are written to "
                                   "OUT.checkpoint: the same command resumes after Ctrl-C or a kill. Also writes "
                                   "OUT.preview.png (a held-out photo, stylised) and OUT.losses.csv (and .png).")
    t.add_argument("styles", nargs="+", metavar="style", help="the painting(s); several are blended equally")
    add(t, "--photos", required=True, metavar="DIR", help="folder of training photos (searched recursively)")
    add(t, "-o", "--output", required=True, metavar="NET", help="the network file to write (.safetensors)")
    for f in dataclasses.fields(TrainConfig):
        if f.metadata.get("help"):
            add(t, flag(f.name), type=type(f.default), default=f.default, help=f.metadata["help"],
                metavar=f.metadata["metavar"])
    add_config_options(t, names=STYLE_OPTIONS)
    add(t, "--preview", default=None, metavar="PHOTO", shown="the bundled example photo",
        help="held-out photo stylised every --preview-every steps into OUT.preview.png")
    add(t, "--weights", default=DEFAULT_WEIGHTS, help="as for the main command")
    add(t, "--device", choices=DEVICES, default=None, shown="JAX's default", help="run on this kind of device")
    add(t, "--quiet", action="store_true", shown="off", help="no progress bar")
    t.set_defaults(run=run_train, preset="default")

    a = sub.add_parser("apply", prog="jaxstyle apply", help="stylise photos with a trained network",
                       description="Stylise photos with a network from jaxstyle train: one forward pass each, any "
                                   "size (a photo too large for memory goes through in exact row bands).")
    a.add_argument("network", help="the network file (.safetensors from jaxstyle train)")
    a.add_argument("photos", nargs="+", metavar="photo", help="photo(s) to stylise")
    add(a, "-o", "--output", required=True, help="output image for one photo, or a folder for several")
    add(a, "--size", type=int, default=None, metavar="PX", shown="the photo's own", help="long side of the output")
    add(a, "--color", choices=COLORS, default=None, shown="luminance for a network trained on luminance, else none",
        help="colour control: luminance keeps the photo's colours; histogram matches the photo's colour statistics")
    add(a, "--max-memory", type=float, default=None, metavar="GB", shown="70%% of what this machine allows",
        help="memory for one photo's activations; a larger photo runs in bands")
    add(a, "--device", choices=DEVICES, default=None, shown="JAX's default", help="run on this kind of device")
    add(a, "--quiet", action="store_true", shown="off", help="no progress bar")
    a.set_defaults(run=run_apply)


def _train_config(args: argparse.Namespace, argv) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if f.metadata.get("help")}
    return TrainConfig(style=config_from_args(args, given_options(argv), STYLE_OPTIONS), **values).validate()


def run_train(args: argparse.Namespace, argv) -> int:
    """``jaxstyle train``: a network for a painting, resumable."""
    config = _train_config(args, argv)
    output = Path(args.output)
    if output.suffix.lower() != ".safetensors":
        raise JaxstyleError(f"-o {args.output!r}: a network file ends in .safetensors; e.g. -o starry.safetensors")
    inputs = {f"style image {i + 1}": s for i, s in enumerate(args.styles)}
    if args.preview is not None:
        inputs["--preview photo"] = args.preview
    check_outputs({"-o": output, "the checkpoint": checkpoint_path(output), "the preview": preview_path(output),
                   "the loss curve": curve_path(output), "the loss plot": curve_path(output).with_suffix(".png")},
                  inputs)
    if output.exists() and not checkpoint_path(output).exists():
        try:
            _, header = read_network_file(output)
            done = header.get("training", {}).get("steps")
        except JaxstyleError:
            done = None
        if done is not None:
            say(f"{output} exists (a network trained for {done} steps): it is trained again and replaced at the end")
    weights = load_weights(args.weights)
    bar = Bar(args.quiet, unit="step", desc="train")

    def progress(p):
        bar.show(p.step, p.steps, img_s=f"{p.images_per_second:.2f}", loss=f"{p.loss:.4g}")

    t0 = time.perf_counter()
    with bar, device(args.device):
        network = train(tuple(args.styles), args.photos, output, config, weights=weights, preview=args.preview,
                        progress=progress)
    print(f"wrote {output} ({network.training['steps']} steps on {network.training['photos']} photo(s), "
          f"{time.perf_counter() - t0:.0f} s; preview {preview_path(output)}, losses {curve_path(output)})",
          file=sys.stderr)
    return 0


def apply_outputs(photos: list[str], output: str) -> list[Path]:
    """Where each photo's image goes: ``output`` itself for one photo given as a file name, else
    ``output/STEM.png`` (``output`` a folder, made if needed)."""
    out = Path(output)
    if len(photos) == 1 and out.suffix.lower() in OUTPUT_FORMATS:
        return [out]
    if out.suffix.lower() in OUTPUT_FORMATS:
        raise JaxstyleError(f"-o {output!r} is one image but {len(photos)} photos were given; give a folder")
    if out.exists() and not out.is_dir():
        raise JaxstyleError(f"-o {output!r} is a file; give a folder for the {len(photos)} images")
    paths = [out / (Path(p).stem + ".png") for p in photos]
    seen: dict = {}
    for photo, path in zip(photos, paths):
        if path in seen:
            raise JaxstyleError(f"{seen[path]!r} and {photo!r} would both be written to {str(path)!r}; "
                                "stylise them into separate folders")
        seen[path] = photo
    return paths


def run_apply(args: argparse.Namespace, argv) -> int:
    """``jaxstyle apply``: photos through a trained network."""
    if args.size is not None and not 16 <= args.size <= 65536:
        raise JaxstyleError(f"--size (={args.size}) must be between 16 and 65536 px")
    network = load_network(args.network)
    outputs = apply_outputs(list(args.photos), args.output)
    for photo in args.photos:  # every photo checked before the first is stylised
        if not Path(photo).is_file():
            raise JaxstyleError(f"photo {photo!r} {'is a folder' if Path(photo).is_dir() else 'does not exist'}; "
                                "name image files")
    if outputs != [Path(args.output)]:  # a folder of outputs
        Path(args.output).mkdir(parents=True, exist_ok=True)
    for path in outputs:
        check_output_path(path)
    check_outputs({f"the output of {p}": o for p, o in zip(args.photos, outputs)},
                  {"the network": args.network, **{f"photo {p}": p for p in args.photos}})
    bar = Bar(args.quiet or len(outputs) == 1, unit="photo", desc="apply")
    t0 = time.perf_counter()
    with bar, device(args.device):
        for k, (photo, path) in enumerate(zip(args.photos, outputs)):
            image = net_apply(network, photo, size=args.size, color_mode=args.color, max_memory=args.max_memory)
            save_image(image, path)
            bar.show(k + 1, len(outputs))
    where = outputs[0] if len(outputs) == 1 else f"{len(outputs)} images in {args.output}"
    print(f"wrote {where} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0
