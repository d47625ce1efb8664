"""Property tests (hypothesis): any StyleConfig values and any command line either work or are
refused as a user error — a JaxstyleError, or one line and exit 2 — never another exception, never a
traceback, never an output file left by a refused run. Derandomised, so CI is reproducible."""

import contextlib
import dataclasses
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from jaxstyle import JaxstyleError, StyleConfig, cli
from jaxstyle.io import image

from .conftest import smooth_image, stripes

FIELDS = [f.name for f in dataclasses.fields(StyleConfig)]
CHOICES = ["lbfgs", "adam", "none", "zoom", "max", "avg", "relative", "paper", "area", "gram", "wasserstein",
           "l1", "l2", "luminance", "histogram", "content", "noise", "relu1_1", "relu4_2", "relu1_1,relu2_1", "", "x"]
ANY_VALUE = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(2**70), 2**70), st.integers(-3, 40),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(-2, 20),
    st.sampled_from(CHOICES), st.text(max_size=8),
    st.lists(st.one_of(st.sampled_from(CHOICES), st.floats(-1, 2), st.integers(-1, 3)), max_size=4),
    st.tuples(st.sampled_from(CHOICES)),
)
SETTINGS = dict(derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=400, **SETTINGS)
@given(st.dictionaries(st.sampled_from(FIELDS), ANY_VALUE, max_size=6))
def test_any_config_values_build_a_valid_config_or_raise_a_jaxstyle_error(values):
    try:
        config = StyleConfig(**values)
    except JaxstyleError as e:
        assert str(e) and "\n" not in str(e)
        return
    # What was accepted is usable everywhere a config is used: hashable (a static jit key),
    # re-validatable, with a schedule ending at its size.
    assert hash(config) == hash(config.replace())
    assert config.validate() is config
    schedule = config.schedule()
    assert schedule[-1][0] == config.size and all(size >= 1 and steps >= 1 for size, steps in schedule)
    assert isinstance(config.content_layers, tuple) and isinstance(config.style_layers, tuple)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    image.save_image(smooth_image(30, 40), folder / "c.png")
    image.save_image(stripes(36, 36), folder / "s.png")
    (folder / "notes.png").write_text("not an image")
    return folder


FLAGS = {
    "--size": ["24", "32", "0", "-5", "abc", "30000", "100000", "1e3"],
    "--steps": ["1", "2", "0", "-1", "x"],
    "--content-weight": ["1", "0", "-1", "nan", "inf", "1e39", "1e-3"],
    "--style-weight": ["10", "0", "1e20", "1e21", "-inf"],
    "--tv-weight": ["0", "0.1", "-0.1"],
    "--init": ["content", "noise", "missing.png", "{c}", "{notes}"],
    "--noise-scale": ["0.5", "2", "-1"],
    "--optimizer": ["adam", "lbfgs", "sgd"],
    "--lr": ["0.1", "0", "-1", "1e300"],
    "--linesearch": ["none", "zoom", "bogus"],
    "--pooling": ["avg", "max", "min"],
    "--content-layers": ["relu2_1", "relu1_1,relu2_1", "", "relu9_9", ",,"],
    "--style-layers": ["relu1_1", "relu1_1,relu2_1", "", "conv1_1", "relu5_1"],
    "--style-layer-weights": ["1", "0.5,0.5", "a,b", "-1", "1,2,3"],
    "--style-blend-weights": ["1", "0", "1,1"],
    "--style-scale": ["1", "0.5", "0", "1000", "1,2", "nan"],
    "--color": ["none", "luminance", "histogram", "sepia"],
    "--scales": ["0", "1", "2", "40", "-1"],
    "--scale-ratio": ["1.5", "1", "0.5", "100"],
    "--average": ["0", "0.5", "1", "-0.1"],
    "--tile": ["0", "16", "-3"],
    "--max-memory": ["0", "-1", "0.001", "8", "nan"],
    "--seed": ["0", "-1", "18446744073709551616", "1.5"],
    "--save-every": ["1", "0", "-2"],
    "--bit-depth": ["8", "16", "12"],
    "--weights": ["caffe-q8", "nonexistent", "{notes}", "x.pth"],
    "--preset": ["default", "paper", "fancy"],
    "-o": ["{out}/o.png", "{out}/o.jpg", "{out}/o.gif", "{out}", "{c}", "{out}/missing/o.png"],
    "--plot-loss": ["{out}/p.png", "{out}/o.png", "{out}/p.txt"],
}
POSITIONAL = ["{c}", "{s}", "{notes}", "missing.png", "{out}"]


@st.composite
def command_lines(draw):
    good = ["{c}", "{s}", "-o", "{out}/o.png"]
    argv = draw(st.one_of(st.just(good), st.lists(st.sampled_from(POSITIONAL), max_size=3)))
    argv = list(argv)
    # Valid runs must be cheap: tiny, shallow, one step (the options drawn below may override each).
    argv += ["--steps", "1", "--size", "24", "--style-layers", "relu1_1", "--content-layers", "relu1_1"]
    for flag in draw(st.lists(st.sampled_from(sorted(FLAGS)), max_size=2, unique=True)):
        argv += [flag, draw(st.sampled_from(FLAGS[flag]))]
    return argv + ["--quiet"]


@settings(max_examples=60, **SETTINGS)
@given(command_lines())
def test_any_command_line_runs_or_is_one_line_exit_2(inputs, argv):
    with tempfile.TemporaryDirectory() as out:
        names = {"c": inputs / "c.png", "s": inputs / "s.png", "notes": inputs / "notes.png", "out": out}
        argv = [a.format(**names) for a in argv]
        before = {p: p.read_bytes() for p in inputs.iterdir()}
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                code = cli.main(argv)
            except SystemExit as e:  # argparse: usage errors
                code = e.code
        text = err.getvalue()
        event(f"exit {code}")
        lines = [line for line in text.splitlines() if line.strip()]
        assert "Traceback" not in text
        assert code in (0, 2), text
        assert lines and lines[-1].startswith("jaxstyle" if code == 2 else "wrote "), text
        if code == 2:
            assert len(lines) == 1, text
            assert not any(Path(out).iterdir()), text  # a refused run writes nothing
        else:
            written = Image.open(Path(argv[argv.index("-o") + 1]))
            assert max(written.size) >= 16
        assert {p: p.read_bytes() for p in inputs.iterdir()} == before  # inputs never touched
