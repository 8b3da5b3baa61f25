"""EXIF, XMP and ICC profiles travel through vqz: container chunks, CLI, API, Pillow plugin.

The inputs are real files written by Pillow with real tags (camera make and model,
DateTimeOriginal, a GPS IFD, orientation 6, an XMP packet, an ICC profile). The Display P3
profile is built byte by byte (an ICC v2 matrix/TRC display profile with the P3 primaries,
D65 white adapted to D50 by Bradford, and the sRGB tone curve as a ``para`` type-3 curve),
because LittleCMS's ``createProfile`` makes only sRGB/LAB/XYZ and no P3 profile ships here.
"""

from __future__ import annotations

import io
import json
import struct
import warnings

import numpy as np
import pytest
from PIL import Image, ImageCms
from PIL.PngImagePlugin import PngInfo
from typer.testing import CliRunner

import vqz
from vqz.bitstream import Header, pack, unpack_file
from vqz.bitstream.container import MAX_EXIF_BYTES
from vqz.cli.app import app
from vqz.codec import metadata as md
from vqz.errors import FormatError

from conftest import KODAK, smooth_image
from test_inputs import _s15f16, matrix_icc

QUALITY = 2
P3_PRIMARIES = [(0.680, 0.320), (0.265, 0.690), (0.150, 0.060)]
XMP = (b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
       b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
       b'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" xmp:Rating="4">'
       b'<dc:subject><rdf:Bag><rdf:li>harbour</rdf:li><rdf:li>boats</rdf:li></rdf:Bag></dc:subject>'
       b'</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>')


def display_p3_icc() -> bytes:
    params = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
    curve = b"para\0\0\0\0" + struct.pack(">HH", 3, 0) + b"".join(_s15f16(v) for v in params)
    return matrix_icc(b"Display P3 (test)\0", P3_PRIMARIES, curve)


_SRGB: list[bytes] = []


def srgb_icc() -> bytes:
    """LittleCMS's sRGB profile (made once: it records its creation time)."""
    if not _SRGB:
        _SRGB.append(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    return _SRGB[0]


def camera_exif(orientation: int = 6) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS R5"
    exif[0x0112] = orientation
    exif[0x0132] = "2024:06:01 10:00:00"
    exif.get_ifd(0x8769).update({0x9003: "2024:06:01 09:59:58", 0x829A: (1, 250), 0x8827: 200})
    exif.get_ifd(0x8825).update({1: "N", 2: (59.0, 19.0, 48.25), 3: "E", 4: (18.0, 4.0, 6.5)})
    return exif


def photo(height: int = 24, width: int = 40) -> Image.Image:
    if KODAK.is_dir():
        with Image.open(KODAK / "kodim23.png") as image:
            return image.convert("RGB").crop((300, 200, 300 + width, 200 + height))
    return Image.fromarray(smooth_image(height, width, seed=4))


def save(image: Image.Image, fmt: str, exif: Image.Exif | None = None, xmp: bytes | None = XMP,
         icc: bytes | None = None) -> bytes:
    """``image`` as a ``fmt`` file with real metadata written the way Pillow writes each format."""
    options: dict[str, object] = {}
    if icc:
        options["icc_profile"] = icc
    if fmt == "TIFF":  # a TIFF's EXIF is its own IFD; XMP is tag 700
        tags = Image.Exif()
        if exif is not None:
            tags.load(exif.tobytes())
        if xmp:
            tags[700] = xmp
        options["tiffinfo"] = tags
    else:
        if exif is not None:
            options["exif"] = exif.tobytes()
        if xmp and fmt == "PNG":
            text = PngInfo()
            text.add_itxt("XML:com.adobe.xmp", xmp.decode(), zip=False)
            options["pnginfo"] = text
        elif xmp:
            options["xmp"] = xmp
    if fmt == "JPEG":
        options.update(quality=95, subsampling=0)
    if fmt == "WEBP":
        options["lossless"] = True
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def pil_metadata(data: bytes) -> md.Metadata:
    """What Pillow itself reads from an image file (EXIF without the JPEG prefix)."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return md.from_pil(image)


def tags(exif: bytes) -> dict:
    loaded = Image.Exif()
    loaded.load(md.EXIF_PREFIX + exif)
    return {"ifd0": {k: v for k, v in loaded.items() if k not in (0x8769, 0x8825)},
            "exif": dict(loaded.get_ifd(0x8769)), "gps": dict(loaded.get_ifd(0x8825))}


def _run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


FORMATS = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp"}


def check_carried(original: bytes, fmt: str, got: md.Metadata, icc: bytes) -> None:
    """``got`` is the input's metadata with orientation 1: EXIF byte-identical but for the
    orientation value (a TIFF input's EXIF, its own IFD, by tag), XMP and ICC byte-identical."""
    source = pil_metadata(original)
    assert got.xmp == XMP and got.icc == icc
    expected = tags(source.exif)
    if fmt != "TIFF":  # Pillow turns a TIFF upright itself when loading it, and drops the tag
        expected["ifd0"][0x0112] = 1
    assert tags(got.exif) == expected
    if fmt != "TIFF":
        assert len(got.exif) == len(source.exif)
        differing = [i for i, (a, b) in enumerate(zip(got.exif, source.exif)) if a != b]
        assert len(differing) == 1  # the orientation SHORT: 6 -> 1
        assert got.exif == md.set_orientation(source.exif, 1)


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_keeps_exif_xmp_and_icc_into_every_output_format(fmt, tmp_path, model):
    icc = display_p3_icc()
    original = save(photo(), fmt, camera_exif(6), XMP, icc)
    source = tmp_path / f"in{FORMATS[fmt]}"
    source.write_bytes(original)
    result = _run("encode", source, "-q", QUALITY, "-o", tmp_path / "x.vqz")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    parsed = unpack_file((tmp_path / "x.vqz").read_bytes())
    check_carried(original, fmt, md.Metadata(parsed.exif, parsed.xmp, parsed.icc), icc)
    assert (parsed.header.width, parsed.header.height) == (24, 40)  # orientation 6 applied
    for out_fmt, suffix in FORMATS.items():
        target = tmp_path / f"out{suffix}"
        result = _run("decode", tmp_path / "x.vqz", "-o", target)
        assert result.exit_code == 0 and "warning" not in result.output, result.output
        with Image.open(target) as image:
            assert image.format == out_fmt and image.size == (24, 40)
            assert image.getexif().get(0x0112, 1) == 1
        check_carried(original, fmt, pil_metadata(target.read_bytes()), icc)


@pytest.mark.parametrize("fmt", FORMATS)
def test_api_and_plugin_keep_exif_xmp_and_icc(fmt, model):
    icc = srgb_icc()
    original = save(photo(), fmt, camera_exif(6), XMP, icc)
    data = vqz.encode(original, quality=QUALITY, model=model)
    decoded = vqz.decode(data)
    assert decoded.info["exif"].startswith(md.EXIF_PREFIX)
    got = md.Metadata(decoded.info["exif"][6:], decoded.info["xmp"], decoded.info["icc_profile"])
    check_carried(original, fmt, got, icc)
    with Image.open(io.BytesIO(original)) as image:  # the plugin keeps the image's own metadata by default
        buffer = io.BytesIO()
        image.save(buffer, "VQZ", quality=QUALITY, model=model)
    assert buffer.getvalue() == data
    with Image.open(io.BytesIO(data)) as opened:  # open reads the metadata without decoding
        assert opened.info["exif"] == decoded.info["exif"] and opened.info["xmp"] == XMP
        assert opened.info["icc_profile"] == icc
        out = io.BytesIO()  # ... and Pillow's own writers take it as they take a JPEG's
        opened.save(out, "JPEG", exif=opened.info["exif"], icc_profile=opened.info["icc_profile"], xmp=opened.info["xmp"])
    check_carried(original, fmt, pil_metadata(out.getvalue()), icc)


def test_plugin_save_writes_the_metadata_it_is_given(model):
    image = photo()
    exif = camera_exif(1).tobytes()
    icc = srgb_icc()  # carries its creation time: make it once
    buffer = io.BytesIO()
    image.save(buffer, "VQZ", quality=1, exif=exif, xmp=XMP, icc_profile=icc, model=model)
    parsed = unpack_file(buffer.getvalue())
    assert md.EXIF_PREFIX + parsed.exif == exif and parsed.xmp == XMP and parsed.icc == icc
    buffer = io.BytesIO()
    Image.open(io.BytesIO(save(image, "JPEG", camera_exif(1)))).save(buffer, "VQZ", quality=1, exif=b"", model=model)
    assert unpack_file(buffer.getvalue()).exif is None and unpack_file(buffer.getvalue()).xmp == XMP


def test_strip(tmp_path, model):
    source = tmp_path / "in.jpg"
    source.write_bytes(save(photo(), "JPEG", camera_exif(1), XMP, srgb_icc()))
    for flags, expected in ((["all"], set()), (["xmp"], {"exif", "icc"}), (["icc", "exif"], {"xmp"}),
                            (["gps"], {"exif", "xmp", "icc"})):
        args = [a for flag in flags for a in ("--strip", flag)]
        result = _run("encode", source, "-q", 1, "-o", tmp_path / "s.vqz", "--force", *args)
        assert result.exit_code == 0, result.output
        parsed = unpack_file((tmp_path / "s.vqz").read_bytes())
        assert set(parsed.metadata_bytes) == expected, flags
    full = pil_metadata(source.read_bytes()).exif
    gps_free = parsed.exif
    assert len(gps_free) == len(full)  # removed in place: every other byte where it was
    before, after = tags(full), tags(gps_free)
    assert after["gps"] == {} and before["gps"]
    assert after["ifd0"] == before["ifd0"] and after["exif"] == before["exif"]
    assert md.exif_summary(gps_free)["gps"] is False and md.exif_summary(full)["gps"] is True
    tiff = md._Tiff(full)
    gps = tiff.sub_ifd(md.GPS_IFD)
    for _, kind, number, _, data in tiff.entries(gps):  # the coordinates are zeroed, not just unlinked
        size = max(4, md._TYPE_SIZES[kind] * number)
        assert gps_free[data : data + size] == bytes(size)
    with pytest.raises(ValueError):
        vqz.encode(photo(), quality=1, model=model, strip="bogus")


def test_p3_pixels_are_coded_as_they_are_and_decode_with_their_profile(tmp_path, model):
    rgb = smooth_image(48, 64, seed=9)
    rgb[:, :, 1] = np.clip(rgb[:, :, 1].astype(int) + 60, 0, 255)  # saturated greens, beyond sRGB
    p3 = display_p3_icc()
    source = tmp_path / "p3.png"
    Image.fromarray(rgb).save(source, icc_profile=p3)
    as_srgb = np.asarray(ImageCms.profileToProfile(Image.fromarray(rgb), ImageCms.ImageCmsProfile(io.BytesIO(p3)),
                                                   ImageCms.createProfile("sRGB"), outputMode="RGB"))
    assert np.abs(as_srgb.astype(int) - rgb).mean() > 8  # the profile matters

    def error(a, b):
        return float(np.abs(a.astype(int) - b.astype(int)).mean())

    assert _run("encode", source, "-q", 8, "-o", tmp_path / "p3.vqz").exit_code == 0
    assert _run("decode", tmp_path / "p3.vqz", "-o", tmp_path / "p3-out.png").exit_code == 0
    with Image.open(tmp_path / "p3-out.png") as decoded:
        assert decoded.info["icc_profile"] == p3
        pixels = np.asarray(decoded)
    plain = vqz.decode_array(vqz.encode(rgb, quality=8, model=model))  # the codec's usual error on these values
    assert error(pixels, rgb) <= error(plain, rgb) + 0.5
    assert error(pixels, rgb) < error(pixels, as_srgb) / 2

    assert _run("encode", source, "-q", 8, "--srgb", "-o", tmp_path / "s.vqz").exit_code == 0
    assert unpack_file((tmp_path / "s.vqz").read_bytes()).icc is None
    converted = vqz.decode_array(tmp_path / "s.vqz")
    assert error(converted, as_srgb) < error(converted, rgb) / 2


def test_info_lists_the_metadata_without_a_model(tmp_path, model):
    data = vqz.encode(save(photo(), "JPEG", camera_exif(6), XMP, srgb_icc()), quality=1, model=model)
    (tmp_path / "x.vqz").write_bytes(data)
    result = _run("info", tmp_path / "x.vqz", "--json")
    assert result.exit_code == 0, result.output
    details = json.loads(result.output)
    parsed = unpack_file(data)
    assert details["metadata_bytes"] == {"exif": len(parsed.exif), "icc": len(parsed.icc), "xmp": len(XMP)}
    assert (details["camera_make"], details["camera_model"]) == ("Canon", "Canon EOS R5")
    assert details["date"] == "2024:06:01 09:59:58" and details["gps"] is True
    assert details["header_bytes"] + sum(details["payload_bytes"]) + sum(details["metadata_bytes"].values()) == len(data)
    text = _run("info", tmp_path / "x.vqz").output
    assert "Canon EOS R5" in text and "GPS: yes" in text and f"XMP {len(XMP)} B" in text
    plain = vqz.read_info(vqz.encode(photo(), quality=1, model=model))
    assert plain.metadata_bytes == {} and plain.camera_make is None and plain.gps is False


# ---------------------------------------------------------------------------- malformed metadata
def _encode_warnings(data: bytes, model) -> tuple[bytes, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = vqz.encode(data, quality=1, model=model)
    return out, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_a_truncated_exif_is_dropped_with_one_warning(model):
    exif = camera_exif(1).tobytes()
    data, messages = _encode_warnings(save(photo(), "PNG", None, XMP), model)
    assert not messages
    image = photo()
    buffer = io.BytesIO()
    image.save(buffer, "PNG", exif=exif[: len(exif) // 2])
    data, messages = _encode_warnings(buffer.getvalue(), model)
    assert len(messages) == 1 and "EXIF" in messages[0]
    assert unpack_file(data).exif is None and vqz.decode_array(data).shape == (24, 40, 3)


def test_a_corrupt_icc_profile_is_dropped_with_one_warning(model):
    buffer = io.BytesIO()
    photo().save(buffer, "PNG", icc_profile=b"not a profile" * 20)
    data, messages = _encode_warnings(buffer.getvalue(), model)
    assert len(messages) == 1 and "ICC" in messages[0]
    assert unpack_file(data).icc is None and vqz.decode_array(data).shape == (24, 40, 3)


def test_a_100_mb_xmp_is_dropped_with_one_warning_and_the_pixels_encode(tmp_path, model):
    huge = b"<x:xmpmeta>" + b" " * (100 << 20) + b"</x:xmpmeta>"
    source = tmp_path / "huge.png"
    text = PngInfo()
    text.add_itxt("XML:com.adobe.xmp", huge.decode(), zip=False)
    photo().save(source, pnginfo=text)
    del huge, text
    result = _run("encode", source, "-q", 1, "-o", tmp_path / "h.vqz")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("vqz: warning:") and "XMP" in lines[0], lines
    assert unpack_file((tmp_path / "h.vqz").read_bytes()).xmp is None


# ---------------------------------------------------------------------------- container
HEADER = Header("vqz-test-model", bytes(range(8)), width=77, height=33, quality=3, grid_height=5, grid_width=10)
PAYLOADS = [b"\x01\x02\x03\x04" * 7, b"", b"\xff" * 300]


def test_chunks_round_trip_and_old_layout_is_unchanged():
    data = pack(HEADER, PAYLOADS, b"alpha", exif=b"II*\0" + b"e" * 30, xmp=XMP, icc=b"icc" * 50)
    parsed = unpack_file(data)
    assert (parsed.exif, parsed.xmp, parsed.icc, parsed.alpha) == (b"II*\0" + b"e" * 30, XMP, b"icc" * 50, b"alpha")
    assert parsed.payloads == PAYLOADS and data[5] == 0x03
    assert pack(HEADER, PAYLOADS)[5] == 0  # files without metadata: byte for byte as before


def test_every_single_bit_flip_in_the_chunks_is_detected():
    data = pack(HEADER, [b"\x01\x02\x03\x04"], exif=b"II*\0abcd", xmp=b"<x/>", icc=b"icc!")
    start = data.index(b"EXIF") - 1
    for bit in range(start * 8, len(data) * 8):
        corrupt = bytearray(data)
        corrupt[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(FormatError, match="CRC"):
            unpack_file(bytes(corrupt))


def _body_with_chunk(tag: bytes, length_varint: bytes, count: int = 1) -> bytes:
    import zlib

    model_id = HEADER.model_id.encode()
    body = (b"\x89VQZ" + struct.pack("<BBB", 2, 0x02, len(model_id)) + model_id + HEADER.model_hash
            + struct.pack("<IIBBHH", 10, 10, 1, 1, 2, 2) + b"\x04" + bytes([count]) + tag + length_varint
            + b"\0\0\0\1" + b"x" * 8)
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("tag, length, count, message", [
    (b"XMP ", b"\x80\x80\xa0\x32", 1, "outside"),  # 100 MB declared: refused before allocating
    (b"EXIF", b"\xf8\xff\x03", 1, "outside"),  # the EXIF cap + 1
    (b"EXIF", b"\x00", 1, "outside"),  # empty
    (b"JUNK", b"\x08", 1, "unknown metadata chunk"),
    (b"EXIF", b"\x08", 0, "count"),
    (b"EXIF", b"\x08", 4, "count"),
])
def test_bad_chunk_tables_are_refused(tag, length, count, message):
    with pytest.raises(FormatError, match=message):
        unpack_file(_body_with_chunk(tag, length, count))


def test_exif_at_the_cap_is_accepted_and_repeated_chunks_are_refused():
    assert len(unpack_file(pack(HEADER, PAYLOADS, exif=b"I" * MAX_EXIF_BYTES)).exif) == MAX_EXIF_BYTES
    with pytest.raises(FormatError):
        pack(HEADER, PAYLOADS, exif=b"I" * (MAX_EXIF_BYTES + 1))
    data = pack(HEADER, PAYLOADS, exif=b"II*\0abcd", xmp=b"<x/>")
    swapped = data.replace(b"EXIF", b"XMP ", 1)
    import zlib

    swapped = swapped[:-4] + struct.pack("<I", zlib.crc32(swapped[:-4]))
    with pytest.raises(FormatError, match="repeated or out of order"):
        unpack_file(swapped)


def test_metadata_edits_in_place():
    raw = camera_exif(6).tobytes()[6:]
    upright = md.set_orientation(raw, 1)
    assert len(upright) == len(raw) and tags(upright)["ifd0"][0x0112] == 1
    assert sum(a != b for a, b in zip(raw, upright)) == 1
    assert md.set_orientation(camera_exif(1).tobytes()[6:].replace(b"\x12\x01", b"\x13\x01"), 1)  # no tag: unchanged
    with pytest.raises(md.MetadataError):
        md.validate_exif(raw[:40])
    assert md.xmp_orientation_reset(b'<a tiff:Orientation="6"/>') == b'<a tiff:Orientation="1"/>'
    assert md.exif_summary(b"garbage")["camera_make"] is None
