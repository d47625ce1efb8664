"""The controls users of other style-transfer tools expect: blends, scales, colour, multi-scale,
alternative losses, averaging, TV, intermediate saves, output fidelity and reproducibility."""

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

import jaxstyle
from jaxstyle import JaxstyleError, StyleConfig, cli, losses
from jaxstyle.io import color, image
from jaxstyle.run import problem
from jaxstyle.run.provenance import config_from_sidecar, sidecar_path

from .conftest import smooth_image, stripes

CONTENT = smooth_image(36, 48)
STYLE = stripes(40, 40)
OTHER = smooth_image(40, 40, phase=2.0)[..., ::-1].copy()
TINY = StyleConfig(size=48, steps=12, chunk=4)


def test_blend_weights_are_normalised_and_a_zero_weight_drops_a_style():
    assert TINY.replace(style_blend_weights=(3.0, 1.0)).blend(2) == (0.75, 0.25)
    only_first = jaxstyle.stylize(CONTENT, [STYLE, OTHER], TINY.replace(style_blend_weights=(2.0, 0.0)))
    single = jaxstyle.stylize(CONTENT, STYLE, TINY)
    np.testing.assert_allclose(only_first.image, single.image, atol=2e-5)
    with pytest.raises(JaxstyleError, match="one per image"):
        jaxstyle.stylize(CONTENT, [STYLE, OTHER], TINY.replace(style_blend_weights=(1.0,)))


def test_style_scale_resizes_each_style_relative_to_the_output():
    cfg = TINY.replace(style_scale=(0.5, 2.0))
    a, b = problem.styles_at([STYLE, OTHER], 48, cfg)
    assert a.shape == (24, 24, 3) and b.shape == (96, 96, 3)
    with pytest.raises(JaxstyleError, match="one or one per image"):
        problem.prepare(CONTENT, [STYLE], cfg)
    big = jaxstyle.stylize(CONTENT, STYLE, TINY.replace(style_scale=2.0)).image
    small = jaxstyle.stylize(CONTENT, STYLE, TINY).image
    assert np.abs(big - small).mean() > 0.01


def test_histogram_matching_gives_the_style_the_contents_colour_statistics():
    rng = np.random.default_rng(0)
    style = np.clip(0.5 + 0.1 * rng.normal(size=(40, 40, 3)) @ np.array([[1, 0.5, 0], [0, 1, 0.2], [0, 0, 0.7]]), 0, 1)
    content = np.clip(0.45 + 0.08 * rng.normal(size=(30, 40, 3)), 0, 1)
    matched = color.match_histogram(style.astype(np.float32), content.astype(np.float32))
    mu_m, cov_m = color.colour_stats(matched)
    mu_c, cov_c = color.colour_stats(content)
    np.testing.assert_allclose(mu_m, mu_c, atol=2e-3)  # tolerance: float32 and a little clipping
    np.testing.assert_allclose(cov_m, cov_c, atol=2e-4)


def test_histogram_run_keeps_the_contents_colours_better_than_plain():
    cfg = TINY.replace(steps=20)
    plain = jaxstyle.stylize(CONTENT, STYLE, cfg).image
    kept = jaxstyle.stylize(CONTENT, STYLE, cfg.replace(color="histogram")).image
    mu_c = color.colour_stats(CONTENT)[0]
    assert np.abs(color.colour_stats(kept)[0] - mu_c).sum() < 0.5 * np.abs(color.colour_stats(plain)[0] - mu_c).sum()


def test_luminance_transfer_keeps_the_contents_chrominance_exactly():
    out = jaxstyle.stylize(CONTENT, STYLE, TINY.replace(color="luminance")).image
    iq_out = color.rgb_to_yiq(out)[..., 1:]
    iq_content = color.rgb_to_yiq(CONTENT)[..., 1:]
    # Exact but for clipping to [0, 1] after recombination: within 0.02 on 99% of pixels.
    assert np.quantile(np.abs(iq_out - iq_content), 0.99) < 0.02
    assert np.abs(color.rgb_to_yiq(out)[..., 0] - color.rgb_to_yiq(CONTENT)[..., 0]).mean() > 0.01  # luminance moved


def test_yiq_round_trip():
    np.testing.assert_allclose(color.yiq_to_rgb(color.rgb_to_yiq(CONTENT)), CONTENT, atol=1e-5)


def test_multiscale_runs_coarse_to_fine():
    cfg = TINY.replace(size=64, scales=2, scale_ratio=2.0, scale_steps=5, steps=7)
    assert cfg.sizes() == [32, 64]
    seen = []
    r = jaxstyle.stylize(CONTENT, STYLE, cfg, callback=seen.append)
    assert r.image.shape == (48, 64, 3)
    assert len(r.history) == 12  # 5 steps at 32 px, then 7 at 64 px
    # Reports every 4 steps and at the end of each scale; steps count over both scales.
    assert [(p.scale, p.step) for p in seen] == [(0, 4), (0, 5), (1, 9), (1, 12)]
    assert seen[-1].step == 12 and seen[-1].steps == 12
    with pytest.raises(JaxstyleError, match="coarsest size"):
        jaxstyle.stylize(CONTENT, STYLE, TINY.replace(scales=4, scale_ratio=2.0))


def test_each_scale_stops_once_its_loss_settled_and_the_next_goes_on_from_there():
    from jaxstyle.run.transfer import settled

    cfg = TINY.replace(size=64, scales=2, scale_ratio=2.0, scale_steps=100, steps=100, chunk=5, tolerance=0.2)
    seen = []
    r = jaxstyle.stylize(CONTENT, STYLE, cfg, callback=seen.append)
    coarse = [p.step for p in seen if p.scale == 0][-1]
    fine = len(r.history) - coarse
    assert 10 < coarse < 100 and 10 < fine < 100, (coarse, fine)
    assert settled(list(r.history[:coarse]), 0.2) and settled(list(r.history[coarse:]), 0.2)
    # The reports' total drops by what each scale left undone, ending at the steps run.
    assert seen[0].steps == 200 and [p.steps for p in seen if p.scale == 1][0] == coarse + 100
    assert seen[-1].step == seen[-1].steps == len(r.history)
    # The same as asking for those steps at each scale.
    exact = jaxstyle.stylize(CONTENT, STYLE, cfg.replace(scale_steps=coarse, steps=fine, tolerance=0.0))
    np.testing.assert_array_equal(r.image, exact.image)


def test_cli_says_where_the_loss_settled_and_saves_only_the_names_it_checked(tmp_path, capsys):
    c, s = tmp_path / "c.png", tmp_path / "s.png"
    image.save_image(CONTENT, c)
    image.save_image(STYLE, s)
    out = tmp_path / "out.png"
    assert cli.main([str(c), str(s), "-o", str(out), "--size", "48", "--steps", "200", "--tolerance", "0.2",
                     "--save-every", "20", "--quiet"]) == 0
    meta = json.loads(sidecar_path(out).read_text())
    n = meta["steps"]
    assert n < 200 and n % 20 == 0 and meta["config"]["steps"] == 200 and meta["evaluations"] == n
    assert f"{n} steps of 200: the loss settled (--tolerance)" in capsys.readouterr().err
    saved = sorted(p.name for p in tmp_path.glob("out_*.png"))
    assert saved == [f"out_{k:04d}.png" for k in range(20, n + 1, 20)]  # no out_0200.png for a step never run


def test_wasserstein_style_loss_converges():
    r = jaxstyle.stylize(CONTENT, STYLE, TINY.replace(style_loss="wasserstein", steps=20))
    assert np.all(np.isfinite(r.history))
    assert r.history[-1] < 0.5 * r.history[0]


def test_a_batch_of_wasserstein_jobs_finishes_with_each_jobs_own_result():
    # Vmapped together, the jobs' eigendecompositions were batched and deadlocked XLA:CPU (three
    # jobs at 96 px hung for good); vmapped, losses.eigh now loops over them, one at a time.
    from jaxstyle.run.batch import Job, stylize_batch

    cfg = TINY.replace(style_loss="wasserstein", steps=4)
    jobs = [Job(CONTENT, (STYLE,), cfg.replace(content_weight=w)) for w in (1.0, 3.0)]
    together = stylize_batch(jobs, batch_size=2)
    alone = [jaxstyle.stylize(CONTENT, STYLE, job.config) for job in jobs]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a.history, b.history, rtol=1e-5)
    assert together[0].terms["total"] != together[1].terms["total"]


def test_lbfgs_memory_changes_the_path_only_once_the_smaller_memory_is_full():
    # With m pairs, L-BFGS uses min(k, m) pairs at update k: a 3-pair memory takes a 10-pair one's
    # first four steps exactly, then its own (history[k] is the loss before step k).
    short = jaxstyle.stylize(CONTENT, STYLE, TINY.replace(lbfgs_memory=3))
    full = jaxstyle.stylize(CONTENT, STYLE, TINY.replace(lbfgs_memory=10))
    np.testing.assert_allclose(short.history[:5], full.history[:5], rtol=1e-5)
    for k in (5, -1):  # from the fifth step on (its loss is history[5]) the paths part
        assert abs(short.history[k] - full.history[k]) > 1e-4 * full.history[k]


def test_iterate_averaging_is_a_bias_corrected_ema():
    adam = TINY.replace(optimizer="adam", lr=0.05, init="noise")
    x1, x2, x3 = (jaxstyle.stylize(CONTENT, STYLE, adam.replace(steps=n)).image.astype(np.float64) for n in (1, 2, 3))
    d = 0.8
    # Bias-corrected EMA after 3 steps: (1 - d) (d^2 x1 + d x2 + x3) / (1 - d^3).
    expected = (1 - d) * (d * d * x1 + d * x2 + x3) / (1 - d**3)
    got = jaxstyle.stylize(CONTENT, STYLE, adam.replace(steps=3, average=d)).image
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_tv_weight_smooths_the_result(kind):
    cfg = TINY.replace(init="noise", steps=15, tv_kind=kind)
    rough = jaxstyle.stylize(CONTENT, STYLE, cfg).image
    smooth = jaxstyle.stylize(CONTENT, STYLE, cfg.replace(tv_weight=5.0)).image
    assert losses.tv_loss(smooth, kind) < 0.7 * losses.tv_loss(rough, kind)


def test_callback_gets_terms_on_demand():
    seen = []
    jaxstyle.stylize(CONTENT, STYLE, TINY.replace(steps=4), callback=seen.append)
    terms = seen[-1].terms()
    assert set(terms) == {"content", "style", "tv", "total"}
    assert terms["total"] == pytest.approx(terms["content"] + terms["style"] + terms["tv"], rel=1e-5)


def _read_png16(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype = header[:4]
    assert (depth, ctype) == (16, 2)
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + w * 6)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].copy().view(">u2").reshape(h, w, 3).astype(np.uint16)


def test_16_bit_png_and_tiff_round_trip_exactly(tmp_path):
    import tifffile

    img = smooth_image(20, 30)
    expected = image.to_uint16(img)
    image.save_image(img, tmp_path / "a.png", bit_depth=16)
    np.testing.assert_array_equal(_read_png16(tmp_path / "a.png"), expected)
    # Pillow reads it back too (as 8-bit), so ordinary viewers can open it.
    assert Image.open(tmp_path / "a.png").size == (30, 20)
    image.save_image(img, tmp_path / "a.tif", bit_depth=16)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a.tif"), expected)
    with pytest.raises(JaxstyleError, match="cannot hold 16 bits"):
        image.save_image(img, tmp_path / "a.jpg", bit_depth=16)


def _swapped_primaries_profile() -> bytes:
    """An RGB ICC profile unlike sRGB: sRGB's with the red and blue colorants swapped."""
    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack(">I", icc[128:132])
    tags = {}
    for i in range(count):
        sig, offset, size = struct.unpack(">4sII", icc[132 + 12 * i:144 + 12 * i])
        tags[sig] = (offset, size)
    (r_off, r_size), (b_off, _) = tags[b"rXYZ"], tags[b"bXYZ"]
    red, blue = bytes(icc[r_off:r_off + r_size]), bytes(icc[b_off:b_off + r_size])
    icc[r_off:r_off + r_size], icc[b_off:b_off + r_size] = blue, red
    icc[84:100] = bytes(16)  # profile ID (MD5) no longer valid: zero means "not computed"
    return bytes(icc)


def test_embedded_icc_profile_is_converted_to_srgb(tmp_path):
    pixels = (smooth_image(16, 16) * 255).astype(np.uint8)
    im = Image.fromarray(pixels)
    icc = _swapped_primaries_profile()
    im.save(tmp_path / "tagged.png", icc_profile=icc)
    im.save(tmp_path / "plain.png")
    tagged, plain = image.load_image(tmp_path / "tagged.png"), image.load_image(tmp_path / "plain.png")
    np.testing.assert_allclose(plain * 255, pixels, atol=0.5)
    expected = ImageCms.profileToProfile(im, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                         ImageCms.createProfile("sRGB"), outputMode="RGB")
    np.testing.assert_allclose(tagged * 255, np.asarray(expected), atol=0.5)
    assert np.abs(tagged - plain).mean() > 0.02  # the conversion really changed the colours


def test_cli_saves_intermediates_16_bit_and_a_reproducible_sidecar(tmp_path):
    c, s = tmp_path / "c.png", tmp_path / "s.png"
    image.save_image(CONTENT, c)
    image.save_image(STYLE, s)
    out = tmp_path / "out.png"
    argv = [str(c), str(s), "-o", str(out), "--size", "48", "--steps", "4", "--save-every", "2",
            "--bit-depth", "16", "--init", "noise", "--seed", "3", "--quiet"]
    assert cli.main(argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "c.png", "out.png", "out.png.json", "out_0002.png", "out_0004.png", "s.png"]
    np.testing.assert_array_equal(_read_png16(tmp_path / "out_0004.png"), _read_png16(out))
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["weights_sha256"] == jaxstyle.model.weights.BUNDLED_SHA256
    assert meta["jax"] and meta["jaxstyle"] == jaxstyle.__version__ and meta["device"]
    assert set(meta["terms"]) == {"content", "style", "tv", "total"}
    # The recorded config reproduces the same image bit for bit on the same machine.
    cfg = config_from_sidecar(sidecar_path(out))
    assert cfg.seed == 3 and cfg.init == "noise"
    again = jaxstyle.stylize(str(c), [str(s)], cfg).image
    np.testing.assert_array_equal(image.to_uint16(again), _read_png16(out))
