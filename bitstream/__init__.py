"""The ``.vqz`` container format (see docs/FORMAT.md)."""

from vqz.bitstream.container import FORMAT_VERSION, MAGIC, Header, header_size, pack, unpack

__all__ = ["FORMAT_VERSION", "MAGIC", "Header", "header_size", "pack", "unpack"]
