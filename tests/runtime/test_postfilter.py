"""The decoder's post-filter: format (flags bit 5, version 4), runtime, encoder choice, export."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import vqz
from vqz.bitstream import FORMAT_VERSION, RESIDUAL_VERSION, Header, PostFilterRef, pack, unpack_file
from vqz.codec import postfilter as P
from vqz.codec.levels import PURE_LEVELS
from vqz.codec.pipeline import decode_bytes, encode_array, encode_indices, render
from vqz.codec.rate_control import psnr
from vqz.errors import FormatError, ModelError

from conftest import photo_crop, without_postfilter
from make_golden import (POSTFILTER_QUALITY, STAGE_POSTFILTER_QUALITY, postfilter_paths, residual_postfilter_paths,
                         stage_postfilter_paths)

HEADER = Header("m", b"\x01" * 8, 10, 10, 5, 2, 2)
REF = PostFilterRef(b"\x02" * 8, 42.5)


def _photo(height: int = 96, width: int = 130) -> np.ndarray:
    return photo_crop(height, width)


def _with_crc(body: bytes) -> bytes:
    return body[:-4] + struct.pack("<I", zlib.crc32(body[:-4]))


# ------------------------------------------------------------------ format


def test_a_post_filter_reference_round_trips_as_version_4():
    from dataclasses import replace

    data = pack(replace(HEADER, postfilter=REF), [b"abcd"], b"alpha", residual=b"resid", exif=b"II*\x00rest")
    parsed = unpack_file(data)
    assert data[4] == FORMAT_VERSION == 4 and data[5] & 0x20
    assert parsed.header.postfilter == REF
    assert (parsed.residual, parsed.alpha, parsed.exif) == (b"resid", b"alpha", b"II*\x00rest")
    # without a reference a writer keeps the older versions, byte for byte
    assert pack(HEADER, [b"abcd"], residual=b"resid")[4] == RESIDUAL_VERSION
    assert pack(HEADER, [b"abcd"])[4] == 2


def test_an_older_version_cannot_ask_for_a_post_filter():
    from dataclasses import replace

    data = bytearray(pack(replace(HEADER, postfilter=REF), [b"abcd"], residual=b"resid"))
    data[4] = 3
    with pytest.raises(FormatError, match="bit 5 .* needs format version 4"):
        unpack_file(_with_crc(bytes(data)))


def test_a_zero_strength_is_refused():
    from dataclasses import replace

    data = bytearray(pack(replace(HEADER, postfilter=REF), [b"abcd"]))
    at = data.index(REF.filter_hash) + 8
    data[at] = 0
    with pytest.raises(FormatError, match="strength 0"):
        unpack_file(_with_crc(bytes(data)))


@pytest.mark.parametrize("strength", [0.0, 0.25, 128.0, -1.0])
def test_a_reference_is_checked(strength):
    with pytest.raises(FormatError):
        PostFilterRef(b"\x02" * 8, strength)


def test_a_reference_quantizes_its_strength():
    assert PostFilterRef.quantized(b"\x02" * 8, 20.6).strength == 20.5
    assert PostFilterRef.quantized(b"\x02" * 8, 500).strength == 127.5
    assert PostFilterRef.quantized(b"\x02" * 8, 0).strength == 0.5


# ------------------------------------------------------------------ runtime


def test_the_default_filter_is_installed():
    pf = P.default_postfilter()
    assert pf is not None and pf.filter_id == P.DEFAULT_POSTFILTER_ID
    assert P.postfilter_for_ref(PostFilterRef(pf.filter_hash, 8.0)) is pf


def test_bands_compute_what_one_pass_does(monkeypatch):
    pf = P.default_postfilter()
    rgb = _photo(75, 61)  # odd sides: the filter pads to 2x2 blocks and crops back
    monkeypatch.setattr(P, "BAND_PIXELS", 10 ** 9)
    whole = pf.apply(rgb, 30.0)
    monkeypatch.setattr(P, "BAND_PIXELS", 16 * 61)
    monkeypatch.setattr(P, "MIN_BAND_ROWS", 2)
    assert P.band_rows(61) == 16
    banded = pf.apply(rgb, 30.0)
    assert whole.shape == rgb.shape and whole.dtype == np.uint8
    assert np.array_equal(whole, banded)
    assert not np.array_equal(whole, rgb)  # it does something


def test_the_gain_is_the_drop_in_squared_error():
    pf = P.default_postfilter()
    rgb = _photo()
    noisy = np.clip(rgb.astype(int) + np.random.default_rng(0).integers(-12, 13, rgb.shape), 0, 255).astype(np.uint8)
    filtered = pf.apply(noisy, 42.0)
    expected = int(np.square(noisy.astype(int) - rgb).sum()) - int(np.square(filtered.astype(int) - rgb).sum())
    assert pf.gain(rgb, noisy, 42.0) == expected


def test_the_encoder_asks_for_the_filter_only_where_it_helps():
    rgb = _photo()
    # a "decoded" image equal to the source: any filtering can only add error
    assert P.choose_postfilter(rgb, rgb, 42.0) is None


def test_a_missing_filter_is_named():
    with pytest.raises(ModelError, match="post-filter 0303030303030303.*not installed"):
        P.postfilter_for_ref(PostFilterRef(b"\x03" * 8, 8.0))


# ------------------------------------------------------------------ encoder and decoder


def test_a_residual_level_file_asks_for_the_filter_and_decodes_with_it(model):
    rgb = _photo()
    data, _ = encode_array(model, rgb, PURE_LEVELS + 2)
    parsed = unpack_file(data)
    ref = parsed.header.postfilter
    assert ref is not None and data[4] == FORMAT_VERSION and ref.strength == 42.0
    decoded = decode_bytes(model, data)
    unfiltered = decode_bytes(model, without_postfilter(data))
    assert np.array_equal(decoded, P.postfilter_for_ref(ref).apply(unfiltered, ref.strength))
    assert psnr(rgb, decoded) > psnr(rgb, unfiltered)
    # fewer stages than the file has: neither the residual layer nor the filter applies
    assert np.array_equal(decode_bytes(model, data, stages=2), render(model, encode_indices(model, rgb, 2), *rgb.shape[:2]))


def test_stage_only_levels_ask_for_the_filter_at_their_own_strengths(model):
    from vqz.codec.levels import LevelPlan, postfilter_strength

    pf = P.stage_postfilter()
    assert pf is not None and pf.filter_id == P.STAGE_POSTFILTER_ID and pf.stage_levels
    rgb = _photo()
    for stages in range(1, PURE_LEVELS + 1):
        data, _ = encode_array(model, rgb, stages)
        parsed = unpack_file(data)
        ref = parsed.header.postfilter
        assert ref is not None and ref.strength == postfilter_strength(LevelPlan(stages))
        decoded = decode_bytes(model, data)
        unfiltered = decode_bytes(model, without_postfilter(data))
        assert np.array_equal(decoded, P.postfilter_for_ref(ref).apply(unfiltered, ref.strength))
        assert psnr(rgb, decoded) > psnr(rgb, unfiltered)
    # decoding fewer stages than a stage-only file has leaves the filter out
    data = encode_array(model, rgb, 3)[0]
    assert np.array_equal(decode_bytes(model, data, stages=2), render(model, encode_indices(model, rgb, 2), *rgb.shape[:2]))


def test_stage_only_strengths_are_storable_and_apart_from_the_residual_steps():
    from vqz.bitstream.container import PostFilterRef as Ref
    from vqz.codec.levels import RESIDUAL_LADDER, LevelPlan, postfilter_strength

    strengths = [postfilter_strength(LevelPlan(s)) for s in range(1, PURE_LEVELS + 1)]
    assert all(Ref.quantized(b"\0" * 8, s).strength == s for s in strengths)
    assert len(set(strengths)) == PURE_LEVELS and min(strengths) > max(step for _, step in RESIDUAL_LADDER)
    assert postfilter_strength(LevelPlan(4, 20.5)) == 20.5


def test_a_filter_not_trained_on_stage_only_levels_is_not_offered_there(monkeypatch):
    pf = P.stage_postfilter()
    monkeypatch.setattr(pf, "stage_levels", False)
    rgb = _photo()
    blurred = ((rgb.astype(np.uint16) + np.roll(rgb, 1, 0) + np.roll(rgb, 1, 1)) // 3).astype(np.uint8)
    assert P.stage_postfilter() is None and P.choose_postfilter(rgb, blurred, 76.0, stage_only=True) is None


def test_a_file_whose_filter_is_missing_is_refused_in_one_line(tmp_path, model):
    from dataclasses import replace

    data, _ = encode_array(model, _photo(), PURE_LEVELS + 2)
    parsed = unpack_file(data)
    other = pack(replace(parsed.header, postfilter=PostFilterRef(b"\x03" * 8, 8.0)), parsed.payloads, residual=parsed.residual)
    path = tmp_path / "a.vqz"
    path.write_bytes(other)
    from typer.testing import CliRunner

    from vqz.cli.app import app

    result = CliRunner().invoke(app, ["decode", str(path), "-o", str(tmp_path / "a.png")])
    assert result.exit_code != 0 and "post-filter 0303030303030303" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "a.png").exists()


def test_rate_control_files_carry_the_filter_choice(model):
    rgb = _photo()
    data = vqz.encode(rgb, target_bpp=1.5)
    parsed = unpack_file(data)
    assert parsed.residual is not None and parsed.header.postfilter is not None


def test_the_golden_post_filtered_file_keeps_decoding():
    # Written once (tests/make_golden.py) by the first format version 4 encoder.
    coded, decoded_png = postfilter_paths()
    data = coded.read_bytes()
    assert unpack_file(data).header.postfilter is not None
    decoded = vqz.decode_array(data)
    expected = np.asarray(Image.open(decoded_png))
    assert decoded.shape == expected.shape
    assert np.abs(decoded.astype(int) - expected.astype(int)).max() <= 2
    assert vqz.read_info(data).postfilter_strength is not None


@pytest.mark.parametrize("filter_id", ["vqz-pf2", "vqz-pf4"])
def test_the_golden_stage_only_post_filtered_files_keep_decoding(filter_id):
    # Written once each (tests/make_golden.py) by the encoder of each stage-only levels' filter.
    coded, decoded_png = stage_postfilter_paths(filter_id)
    data = coded.read_bytes()
    parsed = unpack_file(data)
    assert parsed.residual is None and parsed.header.postfilter is not None
    assert parsed.header.quality == STAGE_POSTFILTER_QUALITY and data[4] == 4
    assert P.postfilter_for_ref(parsed.header.postfilter).filter_id == filter_id
    decoded = vqz.decode_array(data)
    expected = np.asarray(Image.open(decoded_png))
    assert decoded.shape == expected.shape
    assert np.abs(decoded.astype(int) - expected.astype(int)).max() <= 2


@pytest.mark.parametrize("filter_id", ["vqz-pf3", "vqz-pf4"])
def test_the_golden_files_of_later_residual_level_filters_keep_decoding(filter_id):
    coded, decoded_png = residual_postfilter_paths(filter_id)
    data = coded.read_bytes()
    parsed = unpack_file(data)
    assert parsed.residual is not None and P.postfilter_for_ref(parsed.header.postfilter).filter_id == filter_id
    decoded = vqz.decode_array(data)
    expected = np.asarray(Image.open(decoded_png))
    assert decoded.shape == expected.shape
    assert np.abs(decoded.astype(int) - expected.astype(int)).max() <= 2


def test_info_reports_the_filter(model):
    data, _ = encode_array(model, _photo(), POSTFILTER_QUALITY)
    info = vqz.read_info(data)
    assert info.format_version == 4 and info.postfilter_hash == P.default_postfilter().filter_hash.hex()


# ------------------------------------------------------------------ training world


def test_export_matches_the_network(tmp_path):
    torch = pytest.importorskip("torch")
    import json

    from safetensors.torch import save_file

    from vqz.training.export import export_postfilter
    from vqz.training.postfilter_net import PostFilterNet

    torch.manual_seed(0)
    net = PostFilterNet(8, 3)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)
    checkpoint = tmp_path / "postfilter.safetensors"
    save_file({f"net.{k}": v.contiguous() for k, v in net.state_dict().items()}, str(checkpoint),
              metadata={"config": json.dumps({"channels": 8, "layers": 3})})
    weights, graph = export_postfilter(checkpoint, tmp_path / "pf-test.safetensors", "pf-test")
    assert graph.name == "pf-test.postfilter.onnx" and graph.exists()
    pf = P.PostFilter(weights)
    assert pf.filter_id == "pf-test" and not pf.stage_levels
    save_file({f"net.{k}": v.contiguous() for k, v in net.state_dict().items()}, str(checkpoint),
              metadata={"config": json.dumps({"channels": 8, "layers": 3, "stage_pairs_per_image": 2})})
    assert P.PostFilter(export_postfilter(checkpoint, tmp_path / "pf-stages.safetensors", "pf-stages")[0]).stage_levels
    rgb = _photo(40, 50)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        expected = (net(x, torch.tensor([20.0])).clamp(0, 1) * 255).round()[0].permute(1, 2, 0).byte().numpy()
    got = pf.apply(rgb, 20.0)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    # a shipped weights file: only its graph is rewritten, the weights (and the hash files name) stay
    from vqz.training.export import export_postfilter_graph

    before = weights.read_bytes()
    graph.unlink()
    assert export_postfilter_graph(weights) == graph and graph.exists() and weights.read_bytes() == before
    assert np.array_equal(P.PostFilter(weights).apply(rgb, 20.0), got)


def test_training_pairs_cover_stage_only_levels_at_their_strengths(tmp_path):
    pytest.importorskip("torch")
    from PIL import Image

    from vqz.training.train_postfilter import _load, make_pairs

    for i in range(2):
        Image.fromarray(np.ascontiguousarray(photo_crop(48, 64)[:, :: 1 - 2 * i])).save(tmp_path / f"img{i}.png")
    paths = sorted(tmp_path.glob("*.png"))
    stage_pairs = make_pairs(None, paths, tmp_path / "stages", [-1.0, -2.0, -3.0, -4.0], 2, 10_000, 0)
    residual_pairs = make_pairs(None, paths, tmp_path / "residual", [42.0, 20.5], None, 10_000, 0)
    pairs = _load(residual_pairs, stage_pairs)
    assert [len(p["steps"]) for p in pairs] == [4, 4]
    for pair in pairs:
        assert pair["decoded"].shape == (4, 48, 64, 3) and pair["decoded"].dtype == np.uint8
        assert list(pair["steps"][:2]) == [42.0, 20.5] and set(pair["steps"][2:]) <= {124.0, 108.0, 92.0, 76.0}


def test_filter_training_refuses_an_unknown_precision(tmp_path):
    pytest.importorskip("torch")
    from vqz.training.train_postfilter import PostFilterTrainConfig, train_postfilter
    from vqz.errors import VqzError

    with pytest.raises(VqzError, match="precision"):
        train_postfilter(PostFilterTrainConfig(out=str(tmp_path / "run"), precision="fp16"))
    assert not (tmp_path / "run" / "pairs").exists()  # refused before coding anything


def test_an_untrained_filter_is_the_identity():
    torch = pytest.importorskip("torch")
    from vqz.training.postfilter_net import PostFilterNet

    x = torch.rand(2, 3, 16, 18)
    assert torch.equal(PostFilterNet(8, 3)(x, torch.tensor([8.0, 40.0])), x)


def test_a_warm_start_takes_a_shipped_filters_weights_and_refuses_another_shape(tmp_path):
    torch = pytest.importorskip("torch")
    import json

    from safetensors.torch import save_file

    from vqz.training.postfilter_net import PostFilterNet, load_shipped_filter
    from vqz.training.train_postfilter import PostFilterTrainConfig, train_postfilter
    from vqz.errors import VqzError

    shipped = P.default_postfilter()
    net = load_shipped_filter(shipped.path)
    x = torch.rand(1, 3, 24, 32)
    assert not torch.equal(net(x, torch.tensor([40.0])), x)  # the shipped filter's weights, not the identity init
    rgb = _photo(40, 50)
    got = (net(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255, torch.tensor([40.0])).detach().clamp(0, 1)
           * 255).round()[0].permute(1, 2, 0).byte().numpy()
    assert np.abs(got.astype(int) - shipped.apply(rgb, 40.0).astype(int)).max() <= 1

    small = tmp_path / "small.safetensors"
    save_file({f"pf.{k}": v.contiguous() for k, v in PostFilterNet(8, 3).state_dict().items()}, str(small),
              metadata={"postfilter_id": "small", "config": json.dumps({"channels": 8, "layers": 3})})
    with pytest.raises(VqzError, match="8 channels"):
        train_postfilter(PostFilterTrainConfig(out=str(tmp_path / "run"), channels=8, layers=4, init_from=str(small)))
    with pytest.raises(VqzError, match="16 channels"):  # refused before any image is coded
        train_postfilter(PostFilterTrainConfig(out=str(tmp_path / "run"), channels=16, init_from=str(small)))
    assert not (tmp_path / "run" / "pairs").exists()


def test_a_quarter_resolution_branch_starts_as_the_identity_and_stays_within_its_radius():
    torch = pytest.importorskip("torch")
    from vqz.training.postfilter_net import PostFilterNet

    net = PostFilterNet(8, 4, quarter_channels=12)
    assert net.multiple == 4 and len(net.mid) == 1
    x = torch.rand(2, 3, 16, 20)
    assert torch.equal(net(x, torch.tensor([8.0, 40.0])), x)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)
        x = torch.rand(1, 3, 64, 64)
        moved = x.clone()
        moved[0, :, 33, 30] += 0.5  # one pixel: outputs beyond the radius must not move
        diff = (net(moved, torch.tensor([20.0])) - net(x, torch.tensor([20.0]))).abs().amax((0, 1))
    rows, cols = torch.nonzero(diff > 0, as_tuple=True)
    radius = net.receptive_radius()
    assert rows.numel() and (rows - 33).abs().max() <= radius and (cols - 30).abs().max() <= radius
    assert (rows - 33).abs().max() > PostFilterNet(8, 4).receptive_radius()  # it does see further


def test_a_quarter_resolution_filter_exports_and_runs_in_bands(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    import json

    from safetensors.torch import save_file

    from vqz.training.export import export_postfilter
    from vqz.training.postfilter_net import PostFilterNet, load_shipped_filter

    torch.manual_seed(1)
    net = PostFilterNet(8, 4, quarter_channels=12)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)
    checkpoint = tmp_path / "postfilter.safetensors"
    save_file({f"net.{k}": v.contiguous() for k, v in net.state_dict().items()}, str(checkpoint),
              metadata={"config": json.dumps({"channels": 8, "layers": 4, "quarter_channels": 12})})
    weights, _ = export_postfilter(checkpoint, tmp_path / "pf-quarter.safetensors", "pf-quarter")
    assert load_shipped_filter(weights).quarter_channels == 12
    pf = P.PostFilter(weights)
    assert pf.multiple == 4
    rgb = _photo(75, 61)  # sides that are not multiples of 4: padded and cropped back
    x = torch.nn.functional.pad(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255, (0, 3, 0, 1), mode="replicate")
    with torch.no_grad():
        expected = (net(x, torch.tensor([20.0]))[0, :, :75, :61].clamp(0, 1) * 255).round().permute(1, 2, 0).byte().numpy()
    monkeypatch.setattr(P, "BAND_PIXELS", 10 ** 9)
    whole = pf.apply(rgb, 20.0)
    assert np.abs(whole.astype(int) - expected.astype(int)).max() <= 1
    monkeypatch.setattr(P, "BAND_PIXELS", 18 * 61)  # bands of 16 rows (a multiple of 4) with 16-row margins
    monkeypatch.setattr(P, "MIN_BAND_ROWS", 2)
    assert np.array_equal(pf.apply(rgb, 20.0), whole)


def test_a_quarter_resolution_run_crops_multiples_of_four_and_refuses_a_plain_warm_start(tmp_path):
    pytest.importorskip("torch")
    from vqz.training.train_postfilter import PostFilterTrainConfig, _batch, train_postfilter
    from vqz.errors import VqzError

    pair = {"rgb": _photo(30, 42), "decoded": _photo(30, 42)[None], "steps": np.array([20.0], np.float32)}
    x, y, strength = _batch([pair], 3, 128, np.random.default_rng(0), multiple=4)
    assert x.shape == y.shape == (3, 3, 28, 28) and strength.tolist() == [20.0] * 3
    with pytest.raises(VqzError, match="quarter-resolution branch 96"):  # refused before any image is coded
        train_postfilter(PostFilterTrainConfig(out=str(tmp_path / "run"), channels=48, quarter_channels=96,
                                               init_from=str(P.default_postfilter().path)))
    assert not (tmp_path / "run" / "pairs").exists()
