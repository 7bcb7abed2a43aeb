"""Thumbnails of indexed images for the web page: decoded safely, made once, kept in a memory cache.

Only pixels ever leave the server: a thumbnail is the file decoded by the extractor's own loader (EXIF
orientation, mode → RGB, decompression-bomb guard, only regular files) and re-encoded as JPEG, so whatever the
file holds besides its image is never served. The cache is keyed by the file's identity (id, size asked, and the
file's size and mtime), so a file changed on disk gets a fresh thumbnail.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

from poolvec.extractor.errors import ImageError
from poolvec.extractor.images import thumbnail

#: Thumbnail sizes the server makes (longest side, pixels); other sizes are refused, so the cache stays bounded.
SIZES = (128, 256, 512, 1024)
#: JPEG quality of thumbnails.
QUALITY = 85


@dataclass(frozen=True)
class Thumbnail:
    """JPEG bytes and an ETag that changes when the file does."""

    data: bytes
    etag: str


class ThumbnailCache:
    """Thumbnails by (id, size, file size, mtime), least recently used dropped past ``max_bytes``; thread-safe."""

    def __init__(self, max_bytes: int = 128 << 20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, Thumbnail] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.made = 0  # thumbnails decoded and encoded (cache misses)

    def get(self, image_id: int, path: str, size: int) -> Thumbnail:
        """The thumbnail of the indexed file ``path`` (looked up by the caller from ``image_id``), fitting
        ``size``×``size``. Raises :class:`ImageError` when the file is gone or cannot be decoded."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ImageError(path, "file not found (moved or deleted since it was indexed)", "not_found") from None
        except OSError as e:
            raise ImageError(path, f"cannot read: {e.strerror or e}") from None
        key = (image_id, size, st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        thumb = Thumbnail(make(path, size), _etag(key))
        with self._lock:
            self.made += 1
            if key not in self._items:
                self._items[key] = thumb
                self._bytes += len(thumb.data)
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old.data)
        return thumb


def make(path: str, size: int) -> bytes:
    """JPEG bytes of ``path`` shrunk to fit ``size``×``size``."""
    buf = io.BytesIO()
    thumbnail(path, size).save(buf, "JPEG", quality=QUALITY, optimize=True)
    return buf.getvalue()


def _etag(key: tuple) -> str:
    return '"' + hashlib.blake2b(repr(key).encode(), digest_size=12).hexdigest() + '"'
