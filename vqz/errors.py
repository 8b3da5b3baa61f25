"""The package's exception hierarchy.

Library code raises these; the CLI turns each into one line on stderr and a
non-zero exit status. Nothing else should escape a public entry point.
"""

from __future__ import annotations


class VqzError(Exception):
    """Base class of every error vqz raises on purpose."""


class FormatError(VqzError):
    """A ``.vqz`` byte stream is malformed, truncated, corrupt or of an unknown version."""


class ModelError(VqzError):
    """A model is missing, does not match a file, or its weights are invalid."""


class ImageError(VqzError):
    """An input image cannot be read or is not supported."""
