"""The jaxstyle command: a real run, and every bad input → one line on stderr, exit 2, no output file."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxstyle import cli
from jaxstyle.config import StyleConfig
from jaxstyle.examples import CONTENT, STYLE


def test_cli_defaults_come_from_the_config_class():
    args = cli.build_parser().parse_args(["c.png", "s.png", "-o", "o.png"])
    assert cli.config_from_args(args) == StyleConfig()


def test_cli_parses_every_option():
    args = cli.build_parser().parse_args(
        ["c.png", "s1.png", "s2.png", "-o", "o.png", "--size", "64", "--steps", "3", "--content-weight", "2",
         "--style-weight", "5", "--tv-weight", "0.5", "--init", "noise", "--optimizer", "adam", "--lr", "0.1",
         "--pooling", "avg", "--content-layers", "relu3_2,relu4_2", "--style-layers", "relu1_1,relu2_1",
         "--style-layer-weights", "0.25,0.75", "--seed", "9"]
    )
    cfg = cli.config_from_args(args)
    assert args.styles == ["s1.png", "s2.png"]
    assert cfg == StyleConfig(size=64, steps=3, content_weight=2.0, style_weight=5.0, tv_weight=0.5, init="noise",
                              optimizer="adam", lr=0.1, pooling="avg", content_layers=("relu3_2", "relu4_2"),
                              style_layers=("relu1_1", "relu2_1"), style_layer_weights=(0.25, 0.75), seed=9)


def test_real_run_through_the_installed_entry_point(tmp_path):
    out = tmp_path / "out.jpg"
    proc = subprocess.run(
        [sys.executable, "-m", "jaxstyle", str(CONTENT), str(STYLE), "-o", str(out), "--size", "40", "--steps", "4", "--quiet"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    im = Image.open(out)
    assert im.size == (40, 27) and im.mode == "RGB"  # chelsea.jpg is 451x300
    assert "wrote" in proc.stderr


def _bad(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("hello")
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((4, 100, 3), np.uint8)).save(tiny)  # a 100x4 strip: 64x3 at --size 64
    c, s = str(CONTENT), str(STYLE)
    return {
        "missing file": ([c, str(tmp_path / "nope.jpg")], "does not exist"),
        "not an image": ([c, str(text)], "not an image"),
        "too small": ([str(tiny), s, "--size", "64"], "each side must be at least 16 px"),
        "unknown layer": ([c, s, "--style-layers", "relu1_1,relu9_9"], "unknown style layer 'relu9_9'"),
        "negative weight": ([c, s, "--style-weight", "-3"], "must be a finite number >= 0"),
        "missing folder": ([c, s], "does not exist; create it first"),
        "bad number": ([c, s, "--steps", "many"], "invalid int value"),
        "bad optimizer": ([c, s, "--optimizer", "sgd"], "invalid choice"),
        "bad init": ([c, s, "--init", "paint"], "neither content nor noise"),
        "bad size": ([c, s, "--size", "8"], "use at least 16 px"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing file", "not an image", "too small", "unknown layer", "negative weight", "missing folder",
     "bad number", "bad optimizer", "bad init", "bad size"],
)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, capsys, case):
    argv, message = _bad(tmp_path)[case]
    out = tmp_path / ("no_such_dir/out.png" if case == "missing folder" else "out.png")
    try:
        code = cli.main(argv + ["-o", str(out), "--quiet"])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("jaxstyle: error: ") and message in lines[0], lines[0]
    assert "Traceback" not in err
    assert not out.exists()


def test_argparse_errors_exit_2(tmp_path):
    with pytest.raises(SystemExit) as e:
        cli.main([str(CONTENT), str(STYLE), "-o", str(tmp_path / "o.png"), "--steps", "many"])
    assert e.value.code == 2


def test_abbreviated_flags_are_refused_and_every_preset_value_can_be_undone(capsys):
    """argparse used to accept `--content-w 0.5` as --content-weight, while the paper preset's
    override logic saw no --content-weight and dropped the value silently."""
    with pytest.raises(SystemExit) as stop:
        cli.build_parser().parse_args(["c.png", "s.png", "-o", "o.png", "--preset", "paper", "--content-w", "0.5"])
    assert stop.value.code == 2 and "unrecognized arguments: --content-w" in capsys.readouterr().err
    parser = cli.build_parser()
    argv = ["c.png", "s.png", "-o", "o.png", "--preset", "paper", "--no-normalize-vgg", "--content-weight", "0.5"]
    cfg = cli.config_from_args(parser.parse_args(argv), cli.given_options(argv))
    assert cfg == StyleConfig.paper(normalize_vgg=False, content_weight=0.5)


def test_rerun_from_a_sidecar_reproduces_the_image_bit_for_bit(tmp_path, capsys):
    out = tmp_path / "o.png"
    argv = [str(CONTENT), str(STYLE), "-o", str(out), "--size", "40", "--steps", "4", "--init", "noise", "--seed", "5",
            "--style-layers", "relu1_1,relu2_1", "--content-layers", "relu2_1", "--bit-depth", "16", "--quiet"]
    assert cli.main(argv) == 0
    assert cli.main(["rerun", str(out) + ".json", "--quiet"]) == 0
    again = tmp_path / "o_rerun.png"
    assert again.read_bytes() == out.read_bytes()  # every 16-bit sample (our PNG encoder is deterministic)
    from jaxstyle.run.provenance import config_from_sidecar

    assert config_from_sidecar(str(again) + ".json") == config_from_sidecar(str(out) + ".json")
    capsys.readouterr()
    (tmp_path / "bad.json").write_text('{"config": 3}')
    assert cli.main(["rerun", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "is not a readable jaxstyle sidecar" in err and len(err.strip().splitlines()) == 1


def test_weights_fetch_has_no_revision_flag(capsys):
    """`weights fetch --revision` downloaded a revision that --weights could never load."""
    with pytest.raises(SystemExit) as stop:
        cli.main(["weights", "fetch", "torchvision", "--revision", "abc"])
    assert stop.value.code == 2 and "unrecognized arguments: --revision" in capsys.readouterr().err
