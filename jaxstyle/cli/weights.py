"""``jaxstyle weights``: list, fetch, verify, trust and convert VGG-19 weight sets."""

from __future__ import annotations

from ..model import hub
from ..model.convert import convert
from ..model.hub import DEFAULT as DEFAULT_WEIGHTS
from ..model.weights import trust
from .options import Parser


def add_parsers(sub) -> None:
    """The ``weights`` command and its actions."""
    w = sub.add_parser("weights", prog="jaxstyle weights", help="list, fetch, verify and convert weight sets",
                       description="List, fetch, verify and convert VGG-19 weight sets.")
    actions = w.add_subparsers(dest="action", required=True, parser_class=Parser)
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


def run_weights_list(args, argv) -> int:
    """``jaxstyle weights list``: known sets, cached or not, sizes and hashes."""
    for row in hub.status():
        size = f"{row['bytes'] / 1e6:.1f} MB" if row["bytes"] else "-"
        where = row["path"] or "not cached"
        print(f"{row['name']:<12} {size:>9}  {row['description']}\n{'':<12} {'':>9}  {where}"
              + (f"\n{'':<12} {'':>9}  sha256 {row['sha256']}" if row["sha256"] else ""))
    return 0


def run_weights_fetch(args, argv) -> int:
    """``jaxstyle weights fetch NAME``: download a set through huggingface_hub."""
    print(f"{args.name}: {hub.fetch(args.name, force=args.force)}")
    return 0


def run_weights_verify(args, argv) -> int:
    """``jaxstyle weights verify``: check a set's SHA-256."""
    print(f"{args.name}: ok, sha256 {hub.verify(args.name)}")
    return 0


def run_weights_trust(args, argv) -> int:
    """``jaxstyle weights trust PATH``: record a weight file's SHA-256 after it loads."""
    print(f"{args.path}: trusted, sha256 {trust(args.path)}")
    return 0


def run_weights_convert(args, argv) -> int:
    """``jaxstyle weights convert``: convert a weight file, with the feature-error report."""
    errors = convert(args.source, args.output, quantize=args.quantize, preprocessing=args.preprocessing)
    print(f"wrote {args.output}; relative feature error on the test image:")
    for layer, err in errors.items():
        print(f"  {layer:<8} {err:.2e}")
    return 0
