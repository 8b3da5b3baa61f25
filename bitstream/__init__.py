"""The ``.vqz`` container format (see docs/FORMAT.md)."""

from vqz.bitstream.alpha import decode_alpha, encode_alpha
from vqz.bitstream.container import FORMAT_VERSION, MAGIC, Header, VqzFile, header_size, pack, unpack, unpack_file

__all__ = ["FORMAT_VERSION", "MAGIC", "Header", "VqzFile", "decode_alpha", "encode_alpha", "header_size", "pack",
           "unpack", "unpack_file"]
