"""Reproducing the paper: its preset, the normalised network, Figs. 1–3 trends (the notebooks: test_notebooks)."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxstyle
from jaxstyle import StyleConfig, cli, losses
from jaxstyle.run import paper
from jaxstyle.model.normalize import filter_means, normalize_vgg
from jaxstyle.evaluate.objective import image_features
from jaxstyle.io.sheet import PALETTE, loss_plot

from .conftest import smooth_image, stripes

CONTENT = smooth_image(36, 48)
STYLE = stripes(40, 40)
RELUS = ("relu1_1", "relu2_2", "relu3_4", "relu4_2", "relu5_1")


def test_paper_preset_follows_the_paper():
    cfg = StyleConfig.paper()
    assert (cfg.init, cfg.optimizer, cfg.pooling, cfg.normalization) == ("noise", "lbfgs", "avg", "area")
    assert cfg.noise_scale == 0.5
    assert cfg.content_layers == ("relu4_2",)
    assert cfg.style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert cfg.style_layer_weights is None and cfg.normalize_vgg
    assert cfg.content_weight / cfg.style_weight == pytest.approx(1e-3)


def test_normalised_vgg_has_unit_means_and_the_same_function_up_to_channel_scale(weights):
    calibration = [smooth_image(40, 40), stripes(40, 40)]
    before = filter_means(weights, calibration, "avg")
    for floor in (0.0, 0.1):
        normed = normalize_vgg(weights, calibration, "avg", floor=floor)
        means = filter_means(normed, calibration, "avg")
        divisors = {}
        for layer, m in means.items():
            raw = before[layer]
            divisors[layer] = np.maximum(raw, floor * raw.mean()) if floor else np.where(raw > 0, raw, 1.0)
            unit = raw >= floor * raw.mean() if floor else raw > 0  # filters not floored: mean exactly one
            assert unit.any()
            np.testing.assert_allclose(m[unit], 1.0, rtol=1e-3)
            np.testing.assert_allclose(m, raw / divisors[layer], rtol=1e-3, atol=1e-6)
        # On an image outside the calibration set, every layer is the original divided by the divisors.
        probe = jnp.asarray(smooth_image(32, 48, phase=1.0))
        f0 = image_features(weights, probe, RELUS, "avg")
        f1 = image_features(normed, probe, RELUS, "avg")
        for layer in RELUS:
            scale = np.abs(np.asarray(f0[layer])).max()
            np.testing.assert_allclose(np.asarray(f1[layer]) * divisors[layer], f0[layer], atol=1e-3 * scale, rtol=1e-3)


def test_normalisation_floor_bounds_the_gain_of_rare_filters(weights):
    # On the bundled calibration images a relu3_1 filter has mean 0.14 (layer median 71) and a
    # relu5_1 one ~1e-11; unfloored, their gains reach 1e11 and one filter's Gram entries swamp
    # the style loss. With the floor no filter is amplified more than 10x the layer's typical gain.
    from jaxstyle.run.problem import calibration_images, network

    calibration = calibration_images()
    raw = filter_means(weights, calibration, "avg")
    assert raw["relu3_1"].min() < 0.01 * raw["relu3_1"].mean()  # the problem is real
    normed = network(StyleConfig.paper(), weights)  # the network the paper preset runs on
    after = filter_means(normed, calibration, "avg")
    for layer, m in after.items():
        assert m.max() == pytest.approx(1.0, rel=1e-3)
        if layer in paper.FIG1_STYLE_LAYERS + paper.FIG1_CONTENT_LAYERS:  # the layers the paper reads
            assert (m > 0.999).mean() > 0.95  # only a handful of filters are floored (relu5_2: 21 of 512)
        fires = raw[layer] > 0
        divisor = raw[layer][fires] / m[fires]
        assert divisor.min() >= 0.1 * raw[layer].mean() * (1 - 1e-3)


def test_content_reconstructions_lose_detail_with_depth(weights):
    cfg = StyleConfig.paper(size=48, steps=40, normalize_vgg=False)
    shallow = paper.reconstruct(CONTENT, "relu1_2", cfg).image
    deep = paper.reconstruct(CONTENT, "relu4_2", cfg).image
    target = image_features(weights, jnp.asarray(CONTENT), ["relu1_2"], "avg")["relu1_2"]

    def detail_error(image):  # content loss at conv1_2, as the issue asks
        return float(losses.content_loss(image_features(weights, jnp.asarray(image), ["relu1_2"], "avg")["relu1_2"], target))

    assert detail_error(deep) > 2 * detail_error(shallow)


def test_textures_match_deeper_statistics_with_more_layers(weights):
    cfg = StyleConfig.paper(size=48, steps=40, normalize_vgg=False, noise_scale=paper.TEXTURE_NOISE)
    one = paper.texture(STYLE, ("relu1_1",), cfg).image
    four = paper.texture(STYLE, ("relu1_1", "relu2_1", "relu3_1", "relu4_1"), cfg).image
    assert one.shape == (48, 48, 3)  # the painting's aspect, at config.size

    def deep_gram_error(image):
        f = image_features(weights, jnp.asarray(image), ["relu3_1"], "avg")["relu3_1"]
        s = image_features(weights, jnp.asarray(STYLE), ["relu3_1"], "avg")["relu3_1"]
        return float(losses.style_layer_loss(losses.gram(f), losses.gram(s)))

    assert deep_gram_error(four) < 0.5 * deep_gram_error(one)


def test_figure3_grid_trends_and_sheet(weights):
    # The preset itself (normalised network, "area" losses), at a size where conv1_1…conv3_1 still
    # see several positions (at 48 px relu5_1 is 3x2).
    cfg = StyleConfig.paper(size=48, steps=30)
    subsets = (("relu1_1",), paper.STYLE_SUBSETS[2])
    sheet, rows = paper.figure3(CONTENT, STYLE, cfg, subsets=subsets)
    assert [len(r) for r in rows] == [4, 4]
    for row in rows:
        ratios = [r.config.content_weight / r.config.style_weight for r in row]
        assert ratios == list(paper.FIG3_RATIOS)
        style_terms = [r.terms["style"] / r.config.style_weight for r in row]
        content_terms = [r.terms["content"] / r.config.content_weight for r in row]
        # More weight on content (larger alpha/beta): less stylised, closer to the photo.
        assert style_terms[-1] > style_terms[0] and content_terms[-1] < content_terms[0]
    sheet = np.asarray(sheet)
    assert sheet.shape[0] > 2 * 150 and sheet.shape[1] > 4 * 150
    assert (sheet[:, :60] < 128).any()  # row labels were drawn in the left margin


def test_cli_reconstruct_texture_figure_and_loss_plot(tmp_path):
    c, s = tmp_path / "c.png", tmp_path / "s.png"
    jaxstyle.save_image(CONTENT, c)
    jaxstyle.save_image(STYLE, s)
    common = ["--size", "32", "--steps", "3", "--plain-vgg", "--quiet"]
    assert cli.main(["reconstruct", str(c), "--layer", "relu3_2", "-o", str(tmp_path / "r.png")] + common) == 0
    assert cli.main(["texture", str(s), "--layers", "relu1_1,relu2_1", "-o", str(tmp_path / "t.png")] + common) == 0
    assert cli.main(["figure", "2", "--content", str(c), "--styles", str(s), str(c), "-o", str(tmp_path / "f2.png"),
                     "--plot-loss", str(tmp_path / "loss.png")] + common) == 0
    assert jaxstyle.load_image(tmp_path / "r.png").shape == (24, 32, 3)
    assert jaxstyle.load_image(tmp_path / "t.png").shape == (32, 32, 3)
    plot = jaxstyle.load_image(tmp_path / "loss.png")
    assert np.all(np.isclose(plot * 255, PALETTE[0], atol=1).all(axis=-1).sum() > 20)  # a curve was drawn
    # The main command with alpha = 0 and a noise start is texture synthesis too.
    assert cli.main([str(c), str(s), "-o", str(tmp_path / "x.png"), "--content-weight", "0", "--init", "noise",
                     "--size", "32", "--steps", "3", "--quiet"]) == 0


def test_preset_paper_with_overrides(tmp_path):
    parser = cli.build_parser()
    argv = ["c.png", "s.png", "-o", "o.png", "--preset", "paper", "--steps", "7", "--pooling", "max"]
    cfg = cli.config_from_args(parser.parse_args(argv), cli.given_options(argv))
    assert cfg == StyleConfig.paper(steps=7, pooling="max")


def test_loss_plot_draws_each_series():
    plot = np.asarray(loss_plot({"a": np.geomspace(100, 1, 50), "b": np.geomspace(10, 0.1, 50)}))
    for colour in PALETTE[:2]:
        assert (np.abs(plot.astype(int) - colour).sum(axis=-1) < 10).sum() > 50


def test_noise_scale_sets_the_amplitude_of_the_noise_start(tmp_path, capsys):
    from jaxstyle.run.problem import initial_image

    content = np.zeros((20, 30, 3), np.float32)
    full = np.asarray(initial_image(StyleConfig(init="noise", seed=3), content))
    half = np.asarray(initial_image(StyleConfig(init="noise", seed=3, noise_scale=0.5), content))
    np.testing.assert_allclose(half, 0.5 + 0.5 * (full - 0.5), atol=1e-6)
    assert 0.25 <= half.min() and half.max() <= 0.75 and full.max() - full.min() > 0.9
    c = tmp_path / "c.png"
    jaxstyle.save_image(CONTENT, c)
    assert cli.main(["reconstruct", str(c), "-o", str(tmp_path / "o.png"), "--noise-scale", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "noise_scale" in err and "[0, 1]" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o.png").exists()


def test_figure_ratio_and_texture_noise_reach_the_config(tmp_path, monkeypatch):
    from PIL import Image

    seen = {}

    def fake_figure(content, styles, config):
        seen["config"] = config
        return Image.new("RGB", (8, 8)), []

    monkeypatch.setattr(paper, "figure2", fake_figure)
    assert cli.main(["figure", "2", "-o", str(tmp_path / "f.png"), "--ratio", "1e-4", "--quiet"]) == 0
    cfg = seen["config"]
    assert cfg.content_weight / cfg.style_weight == pytest.approx(1e-4)
    assert (cfg.normalization, cfg.noise_scale) == ("area", StyleConfig.paper().noise_scale)
    assert cli.build_parser().parse_args(["texture", "p.png", "-o", "t.png"]).noise_scale == paper.TEXTURE_NOISE


def test_texture_keeps_the_configs_noise_scale_and_needs_no_content_image():
    """texture() used to override the config's noise_scale with its own keyword, and the paper
    drivers passed stylize() a dummy image; now a texture has no content image at all."""
    assert paper.texture_config(("relu1_1",), StyleConfig.paper(noise_scale=0.3)).noise_scale == 0.3
    assert paper.texture_config(("relu1_1",)).noise_scale == paper.TEXTURE_NOISE
    cfg = paper.texture_config(("relu1_1",), StyleConfig.paper(size=32, steps=2, normalize_vgg=False))
    result = jaxstyle.stylize(None, STYLE, cfg)
    assert result.image.shape[:2] == jaxstyle.io.image.long_side_shape(STYLE.shape, 32)
    with pytest.raises(jaxstyle.JaxstyleError, match="no content image given"):
        jaxstyle.stylize(None, STYLE, cfg.replace(content_layers=("relu2_2",)))
    reconstruction = paper.reconstruct(CONTENT, "relu2_2", StyleConfig.paper(size=32, steps=2, normalize_vgg=False))
    assert reconstruction.config.style_layers == () and np.isfinite(reconstruction.terms["total"])


def test_figure_spatial_guided_against_unguided(tmp_path, capsys):
    """The spatial figure: the guided run has the photo's two regions, each from its own painting
    (its config names the masks), the unguided one blends both paintings everywhere; a mask that is
    not two regions, or a horizon outside the image, ends with one line and no output."""
    from .conftest import smooth_image, stripes

    c, s1, s2 = tmp_path / "c.png", tmp_path / "s1.png", tmp_path / "s2.png"
    jaxstyle.save_image(smooth_image(36, 48), c)
    jaxstyle.save_image(stripes(40, 40), s1)
    jaxstyle.save_image(smooth_image(40, 40, 2.0), s2)
    config = StyleConfig.paper(size=48, steps=3, normalize_vgg=False)
    sheet, res = paper.figure_spatial(str(c), [str(s1), str(s2)], config, horizon=0.4)
    guided, unguided = res["guided"], res["unguided"]
    assert guided.config.content_mask is not None and len(guided.config.style_masks) == 2
    assert unguided.config.content_mask is None
    assert guided.image.shape == unguided.image.shape == (36, 48, 3)
    assert np.abs(guided.image - unguided.image).mean() > 1e-3
    sheet = np.asarray(sheet)
    tinted = np.abs(sheet.astype(int) - (np.array([255, 153, 0]) + 255 * smooth_image(1, 1)[0, 0]) // 2).sum(-1)
    assert sheet.shape[1] > 6 * 150 and (tinted < 60).any()  # the regions cell is tinted orange on top

    out = tmp_path / "f.png"
    three = np.zeros((36, 48, 3), np.uint8)
    three[:12], three[12:24] = (255, 0, 0), (0, 255, 0)
    jaxstyle.save_image(three, tmp_path / "three.png")
    common = ["--content", str(c), "--styles", str(s1), str(s2), "-o", str(out), "--size", "48", "--steps", "2",
              "--plain-vgg", "--quiet"]
    assert cli.main(["figure", "spatial", "--content-mask", str(tmp_path / "three.png")] + common) == 2
    assert "3 colours" in capsys.readouterr().err and not out.exists()
    assert cli.main(["figure", "spatial", "--horizon", "1.5"] + common) == 2
    err = capsys.readouterr().err.strip()
    assert "--horizon" in err and len(err.splitlines()) == 1 and not out.exists()
