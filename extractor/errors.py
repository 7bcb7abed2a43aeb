"""Exceptions a user can cause in the extractor: one base type, one for unusable images.

Each carries its ``kind`` — what went wrong, in the words of the error policy (:mod:`poolvec.indexer.errors`),
which maps a kind to an exit code and an HTTP status. Nothing decides by reading the message.
"""

from __future__ import annotations

#: Why an image cannot be used: the file is not there, is too big (bytes or pixels), is not an image format we
#: decode, or could not be read or decoded.
IMAGE_KINDS = ("not_found", "too_large", "not_image", "unreadable")


class ExtractorError(Exception):
    """A problem the user can fix: a bad backbone name, missing weights, an unreadable image."""

    kind = "usage"


class ImageError(ExtractorError):
    """An image that cannot be used; ``path`` names it, ``reason`` says why in one line, ``kind`` is one of
    :data:`IMAGE_KINDS`."""

    def __init__(self, path: str, reason: str, kind: str = "unreadable") -> None:
        if kind not in IMAGE_KINDS:
            raise ValueError(f"image error kind must be one of {IMAGE_KINDS}, got {kind!r}")
        self.path = path
        self.reason = reason
        self.kind = kind
        super().__init__(f"{path}: {reason}")
