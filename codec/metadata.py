"""Image metadata that travels with the pixels: EXIF, XMP and the ICC profile.

* :class:`Metadata` holds the three blocks as bytes: ``exif`` is the raw TIFF-structured
  EXIF block (``II*\\0...`` or ``MM\\0*...``, without JPEG's ``Exif\\0\\0`` prefix), ``xmp``
  the XMP packet (UTF-8), ``icc`` the ICC profile the pixels are in.
* :func:`from_pil` takes them from a Pillow image (JPEG, PNG, WebP carry an EXIF block;
  a TIFF's EXIF is its own first IFD, from which the tags that describe the TIFF file's
  layout are left out). Malformed blocks are dropped with a one-line ``UserWarning``,
  blocks over the container's caps too: metadata never stops the pixels.
* The EXIF block is kept byte for byte. Two edits are made *in place* in its raw bytes,
  so every other byte stays where it was: the orientation tag (0x0112) is rewritten as 1
  once the orientation has been applied to the pixels (:func:`set_orientation`), and
  ``strip gps`` removes the GPS IFD pointer (0x8825) from IFD 0 and zeroes the GPS IFD
  and its values (:func:`remove_gps`). An XMP ``tiff:Orientation`` is rewritten as 1 the
  same way (same length, nothing else touched).
* :func:`save_options` turns metadata into Pillow save arguments for PNG, JPEG, TIFF and
  WebP outputs; :func:`exif_summary` reads camera make and model, date and whether GPS is
  present, for ``vqz info``.

No torch here: ``vqz info`` and the Pillow plugin's ``open`` use this module.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, replace

from vqz.bitstream.container import MAX_EXIF_BYTES, MAX_ICC_BYTES, MAX_XMP_BYTES, pack, unpack_file

STRIP_CHOICES = ("all", "exif", "xmp", "icc", "gps")
EXIF_PREFIX = b"Exif\x00\x00"
_CAPS = {"exif": MAX_EXIF_BYTES, "xmp": MAX_XMP_BYTES, "icc": MAX_ICC_BYTES}
_NAMES = {"exif": "EXIF", "xmp": "XMP", "icc": "ICC profile"}

ORIENTATION = 0x0112
EXIF_IFD = 0x8769
GPS_IFD = 0x8825
_MAKE, _MODEL, _DATETIME, _DATETIME_ORIGINAL = 0x010F, 0x0110, 0x0132, 0x9003
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
#: Tags of a TIFF's first IFD that describe the file itself (layout, pixels, embedded blocks), not the photo.
_TIFF_LAYOUT_TAGS = frozenset({
    254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 284, 290, 291, 292, 293, 296,
    282, 283, 317, 320, 322, 323, 324, 325, 338, 339, 340, 341, 347, 530, 531, 532, 700, 33723, 34377, 34675,
})


class MetadataError(ValueError):
    """A metadata block is malformed (it is then dropped with a warning)."""


@dataclass(frozen=True)
class Metadata:
    exif: bytes | None = None
    xmp: bytes | None = None
    icc: bytes | None = None

    def __bool__(self) -> bool:
        return any((self.exif, self.xmp, self.icc))

    def chunks(self) -> dict[str, bytes | None]:
        """Keyword arguments for :func:`vqz.bitstream.pack`."""
        return {"exif": self.exif or None, "xmp": self.xmp or None, "icc": self.icc or None}

    def stripped(self, what: Iterable[str]) -> Metadata:
        """Without the blocks named in ``what`` (``STRIP_CHOICES``); ``gps``: the EXIF's GPS IFD only."""
        what = set(what)
        unknown = what - set(STRIP_CHOICES)
        if unknown:
            raise ValueError(f"strip takes {', '.join(STRIP_CHOICES)}; got {', '.join(sorted(unknown))}")
        if "all" in what:
            return Metadata()
        out = replace(self, **{name: None for name in ("exif", "xmp", "icc") if name in what})
        if "gps" in what and out.exif:
            try:
                out = replace(out, exif=remove_gps(out.exif))
            except MetadataError as exc:
                _warn(f"dropped the EXIF block: its GPS data cannot be removed ({exc})")
                out = replace(out, exif=None)
        return out


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


def read_metadata(vqz_bytes: bytes) -> Metadata:
    """The metadata of a ``.vqz`` file (parses and verifies the container)."""
    parsed = unpack_file(vqz_bytes)
    return Metadata(parsed.exif, parsed.xmp, parsed.icc)


def attach(vqz_bytes: bytes, metadata: Metadata | None) -> bytes:
    """A ``.vqz`` file with ``metadata``'s chunks (replacing any it had)."""
    if not metadata:
        return vqz_bytes
    parsed = unpack_file(vqz_bytes)
    return pack(parsed.header, parsed.payloads, parsed.alpha, residual=parsed.residual, **metadata.chunks())


# ---------------------------------------------------------------------------- raw TIFF/EXIF
class _Tiff:
    """Bounds-checked reader of the IFDs of a raw TIFF-structured EXIF block."""

    def __init__(self, raw: bytes) -> None:
        if len(raw) < 8 or raw[:4] not in (b"II*\x00", b"MM\x00*"):
            raise MetadataError("not a TIFF-structured EXIF block")
        self.raw = raw
        self.endian = "<" if raw[:2] == b"II" else ">"

    def u16(self, offset: int) -> int:
        return self._unpack("H", offset)

    def u32(self, offset: int) -> int:
        return self._unpack("I", offset)

    def _unpack(self, fmt: str, offset: int) -> int:
        size = struct.calcsize(fmt)
        if offset < 0 or offset + size > len(self.raw):
            raise MetadataError("EXIF block is truncated")
        return struct.unpack_from(self.endian + fmt, self.raw, offset)[0]

    def entries(self, ifd: int) -> list[tuple[int, int, int, int, int]]:
        """(tag, type, count, entry offset, data offset) per entry of the IFD at ``ifd``."""
        count = self.u16(ifd)
        if ifd + 2 + 12 * count + 4 > len(self.raw):
            raise MetadataError("EXIF block is truncated (in an IFD)")
        out = []
        for i in range(count):
            entry = ifd + 2 + 12 * i
            tag, kind, number = self.u16(entry), self.u16(entry + 2), self.u32(entry + 4)
            size = _TYPE_SIZES.get(kind, 1) * number
            data = entry + 8 if size <= 4 else self.u32(entry + 8)
            if data + size > len(self.raw):
                raise MetadataError(f"EXIF tag 0x{tag:04x} points past the end of the block")
            out.append((tag, kind, number, entry, data))
        return out

    def ifd0(self) -> int:
        return self.u32(4)

    def sub_ifd(self, tag: int) -> int | None:
        for entry_tag, kind, number, _, data in self.entries(self.ifd0()):
            if entry_tag == tag:
                if kind not in (4, 13) or number != 1:
                    raise MetadataError(f"EXIF tag 0x{tag:04x} is not an IFD pointer")
                return self.u32(data)
        return None

    def ascii(self, ifd: int, tag: int) -> str | None:
        for entry_tag, kind, number, _, data in self.entries(ifd):
            if entry_tag == tag and kind == 2:
                return self.raw[data : data + number].split(b"\0", 1)[0].decode("utf-8", "replace").strip() or None
        return None


def validate_exif(raw: bytes) -> None:
    """MetadataError unless IFD 0 and its EXIF and GPS IFDs lie inside the block."""
    tiff = _Tiff(raw)
    tiff.entries(tiff.ifd0())
    for tag in (EXIF_IFD, GPS_IFD):
        offset = tiff.sub_ifd(tag)
        if offset is not None:
            tiff.entries(offset)


def set_orientation(raw: bytes, value: int = 1) -> bytes:
    """``raw`` with IFD 0's orientation tag rewritten as ``value`` in place (unchanged if absent)."""
    tiff = _Tiff(raw)
    for tag, kind, number, _, data in tiff.entries(tiff.ifd0()):
        if tag == ORIENTATION:
            if kind != 3 or number != 1:
                raise MetadataError("EXIF orientation tag is not one SHORT")
            out = bytearray(raw)
            struct.pack_into(tiff.endian + "H", out, data, value)
            return bytes(out)
    return raw


def remove_gps(raw: bytes) -> bytes:
    """``raw`` without its GPS IFD: the pointer entry removed from IFD 0 (the entries after it
    move up, the count drops by one), the GPS IFD and the values it points to zeroed; every
    other byte stays where it was. Unchanged if there is no GPS IFD."""
    tiff = _Tiff(raw)
    ifd0 = tiff.ifd0()
    entries = tiff.entries(ifd0)
    pointer = [e for e in entries if e[0] == GPS_IFD]
    if not pointer:
        return raw
    gps = tiff.sub_ifd(GPS_IFD)
    assert gps is not None
    gps_entries = tiff.entries(gps)
    out = bytearray(raw)
    for _, kind, number, _, data in gps_entries:
        size = _TYPE_SIZES.get(kind, 1) * number
        if size > 4:
            out[data : data + size] = bytes(size)
    end = gps + 2 + 12 * len(gps_entries) + 4
    out[gps:end] = bytes(end - gps)
    entry = pointer[0][3]
    table_end = ifd0 + 2 + 12 * len(entries) + 4  # includes the next-IFD offset
    out[entry : table_end - 12] = raw[entry + 12 : table_end]
    out[table_end - 12 : table_end] = bytes(12)
    struct.pack_into(tiff.endian + "H", out, ifd0, len(entries) - 1)
    return bytes(out)


def exif_summary(raw: bytes | None) -> dict[str, object]:
    """``{"camera_make", "camera_model", "date", "gps"}`` from an EXIF block (None where absent or unreadable)."""
    out: dict[str, object] = {"camera_make": None, "camera_model": None, "date": None, "gps": False}
    if not raw:
        return out
    try:
        tiff = _Tiff(raw)
        ifd0 = tiff.ifd0()
        out["camera_make"] = tiff.ascii(ifd0, _MAKE)
        out["camera_model"] = tiff.ascii(ifd0, _MODEL)
        exif_ifd = tiff.sub_ifd(EXIF_IFD)
        date = tiff.ascii(exif_ifd, _DATETIME_ORIGINAL) if exif_ifd is not None else None
        out["date"] = date or tiff.ascii(ifd0, _DATETIME)
        out["gps"] = tiff.sub_ifd(GPS_IFD) is not None
    except MetadataError:
        pass
    return out


_XMP_ORIENTATION = re.compile(rb'(tiff:Orientation\s*=\s*["\']|<tiff:Orientation>\s*)([2-8])')


def xmp_orientation_reset(xmp: bytes) -> bytes:
    """An XMP packet with ``tiff:Orientation`` (attribute or element) rewritten as 1, same length."""
    return _XMP_ORIENTATION.sub(lambda m: m.group(1) + b"1", xmp)


# ---------------------------------------------------------------------------- from Pillow
def _as_bytes(value: object) -> bytes | None:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, tuple) and len(value) == 1:
        return _as_bytes(value[0])
    return None


def _tiff_exif(image: object) -> bytes | None:
    """A TIFF file's EXIF: its first IFD's photo tags (with the EXIF and GPS IFDs), serialised by Pillow."""
    from PIL import Image

    source = image.getexif()  # type: ignore[attr-defined]
    exif = Image.Exif()
    for tag in source:
        if tag in (EXIF_IFD, GPS_IFD):
            exif[tag] = source.get_ifd(tag)
        elif tag not in _TIFF_LAYOUT_TAGS:
            exif[tag] = source[tag]
    if not len(exif):
        return None
    data = exif.tobytes()
    return data[len(EXIF_PREFIX):] if data.startswith(EXIF_PREFIX) else data


def from_pil(image: object) -> Metadata:
    """The EXIF, XMP and ICC profile of an opened Pillow image, each checked (see module doc).

    The EXIF orientation is left as it is (see :func:`upright`).
    """
    info = getattr(image, "info", {}) or {}
    exif = _as_bytes(info.get("exif"))
    if exif is None and hasattr(image, "tag_v2"):
        try:
            exif = _tiff_exif(image)
        except Exception as exc:  # a malformed TIFF directory, of many possible kinds
            _warn(f"dropped an unreadable EXIF block ({exc})")
    if exif is not None and exif.startswith(EXIF_PREFIX):
        exif = exif[len(EXIF_PREFIX):]
    xmp = _as_bytes(info.get("xmp", info.get("XML:com.adobe.xmp")))
    icc = _as_bytes(info.get("icc_profile"))
    if exif is not None:
        try:
            validate_exif(exif)
        except MetadataError as exc:
            _warn(f"dropped a malformed EXIF block ({exc})")
            exif = None
    return _capped(Metadata(exif or None, xmp or None, icc or None))


def _capped(metadata: Metadata) -> Metadata:
    for name, cap in _CAPS.items():
        value = getattr(metadata, name)
        if value is not None and len(value) > cap:
            _warn(f"dropped the {_NAMES[name]} ({len(value)} bytes; a .vqz file holds at most {cap})")
            metadata = replace(metadata, **{name: None})
    return metadata


def checked(exif: bytes | None = None, xmp: bytes | str | None = None, icc: bytes | None = None) -> Metadata:
    """Metadata given explicitly (API / plugin arguments), checked and capped like :func:`from_pil`'s."""
    exif = _as_bytes(exif)
    if exif is not None and exif.startswith(EXIF_PREFIX):
        exif = exif[len(EXIF_PREFIX):]
    if exif:
        try:
            validate_exif(exif)
        except MetadataError as exc:
            _warn(f"dropped a malformed EXIF block ({exc})")
            exif = None
    return _capped(Metadata(exif or None, _as_bytes(xmp) or None, _as_bytes(icc) or None))


def upright(metadata: Metadata, orientation: int) -> Metadata:
    """After the pixels were turned by EXIF ``orientation``: the orientation tags rewritten as 1."""
    if orientation == 1:
        return metadata
    exif, xmp = metadata.exif, metadata.xmp
    if exif:
        try:
            exif = set_orientation(exif, 1)
        except MetadataError as exc:
            _warn(f"dropped the EXIF block: its orientation tag cannot be reset ({exc})")
            exif = None
    if xmp:
        xmp = xmp_orientation_reset(xmp)
    return Metadata(exif, xmp, metadata.icc)


def check_icc(icc: bytes) -> str | None:
    """The colour space of a readable ICC profile (``RGB``, ``GRAY``, ``CMYK``, ...), else None."""
    try:
        from PIL import ImageCms

        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return profile.profile.xcolor_space.strip()
    except Exception:  # ImageCms.PyCMSError, OSError, ImportError, ...
        return None


# ---------------------------------------------------------------------------- to Pillow
#: Output formats and what they can carry.
CARRIES = {"PNG": ("exif", "xmp", "icc"), "JPEG": ("exif", "xmp", "icc"), "TIFF": ("exif", "xmp", "icc"),
           "WEBP": ("exif", "xmp", "icc"), "BMP": (), "PPM": ()}
_JPEG_MAX_XMP = 65533 - 29


def save_options(metadata: Metadata | None, format_name: str) -> dict[str, object]:
    """Pillow ``save`` keyword arguments that write ``metadata`` into a ``format_name`` file;
    what the format cannot carry is dropped with a one-line warning."""
    if not metadata:
        return {}
    carried = CARRIES.get(format_name, ())
    lost = [_NAMES[name] for name in ("exif", "xmp", "icc") if getattr(metadata, name) and name not in carried]
    if lost:
        _warn(f"{format_name} cannot carry the image's {', '.join(lost)}; not written")
    options: dict[str, object] = {}
    exif, xmp, icc = (getattr(metadata, n) if n in carried else None for n in ("exif", "xmp", "icc"))
    if format_name == "JPEG" and xmp and len(xmp) > _JPEG_MAX_XMP:
        _warn(f"the XMP packet ({len(xmp)} bytes) does not fit a JPEG APP1 segment; not written")
        xmp = None
    if icc:
        options["icc_profile"] = icc
    if format_name == "PNG":
        if exif:
            options["exif"] = exif
        if xmp:
            from PIL.PngImagePlugin import PngInfo

            text = PngInfo()
            text.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"), zip=False)
            options["pnginfo"] = text
    elif format_name == "TIFF":
        from PIL import Image

        tags = Image.Exif()
        if exif:
            tags.load(EXIF_PREFIX + exif)  # the writer expands its EXIF and GPS IFDs
        if xmp:
            tags[700] = xmp
        if len(tags):
            options["tiffinfo"] = tags
    else:  # JPEG needs the APP1 prefix; a WebP EXIF chunk holds the raw block
        if exif:
            options["exif"] = EXIF_PREFIX + exif if format_name == "JPEG" else exif
        if xmp:
            options["xmp"] = xmp
    return options

