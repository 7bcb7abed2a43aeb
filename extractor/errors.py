"""Exceptions a user can cause in the extractor: one base type, one for unreadable images."""

from __future__ import annotations


class ExtractorError(Exception):
    """A problem the user can fix: a bad backbone name, missing weights, an unreadable image."""


class ImageError(ExtractorError):
    """An image that cannot be used; ``path`` names it and ``reason`` says why, in one line."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")
