"""Decoding image files into RGB PIL images, safely (finding them: :mod:`.files`).

Decoding applies the EXIF orientation, converts every mode to RGB (alpha composited on white), refuses
decompression bombs before any pixel is decoded, and for JPEGs decodes at a reduced DCT scale when the
image will be shrunk anyway (``Image.draft``: 2–4× less decode time on large photos); other formats are reduced by
the same integer factor right after decoding. Decoding holds a share of one process-wide :class:`DecodeBudget`, so
that many large images decoded at once (a server's concurrent uploads) cannot add up past it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import io
import os
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from poolvec.extractor.defaults import DEFAULT_DECODE_MEMORY, DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from poolvec.extractor.errors import ImageError
from poolvec.extractor.files import PLUGINS

#: ``Image.info`` key where :func:`load_image` records the image's full upright (width, height): a JPEG decoded at a
#: reduced DCT scale is smaller than the picture it holds.
FULL_SIZE = "poolvec.full_size"


@dataclass(frozen=True)
class EncodedImage:
    """An image file's bytes read elsewhere (e.g. by Ray Data on another machine), named by the file's path.

    Decoded exactly as the file would be (same guards, DCT-scaled JPEG decode, EXIF orientation), so its vector
    equals the file's.
    """

    name: str
    data: bytes

    def __repr__(self) -> str:
        return f"EncodedImage({self.name!r}, {len(self.data)} bytes)"


class DecodeBudget:
    """Bytes of decoded pixels the process may hold at once, shared by every thread that decodes.

    A decode waits until its estimated size fits beside the others; one larger than the whole budget runs alone.
    When the last decode of a large image ends, freed memory is handed back to the system (glibc keeps freed
    blocks otherwise: 16 concurrent 89-megapixel uploads left 0.8–1.9 GB held by a server; docs/BENCHMARKS.md).
    """

    #: Decodes at least this large hand memory back to the system when the budget next falls idle.
    TRIM_BYTES = 64 << 20

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self._large = False
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        """Hold ``nbytes`` of the budget for the ``with`` block (waiting for room first)."""
        with self._cond:
            while self.used and self.used + nbytes > self.limit:
                self._cond.wait()
            self.used += nbytes
            self.peak = max(self.peak, self.used)
            self._large |= nbytes >= self.TRIM_BYTES
        try:
            yield
        finally:
            with self._cond:
                self.used -= nbytes
                trim = self._large and self.used == 0
                self._large &= not trim
                self._cond.notify_all()
            if trim:
                give_back_memory()


#: The process's decoding budget (``poolvec serve --decode-memory-mb`` sets its limit).
DECODE_BUDGET = DecodeBudget(DEFAULT_DECODE_MEMORY)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def give_back_memory() -> bool:
    """Return freed heap memory to the system (glibc's ``malloc_trim``); False where the C library has none."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def fitted_size(width: int, height: int, side: int) -> tuple[int, int]:
    """The size of a ``width`` × ``height`` image shrunk (never enlarged) so that its longer side is at most
    ``side``: the one rule of the tuner, the verifier and the review."""
    scale = min(1.0, side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def decoded_bytes(width: int, height: int, mode: str) -> int:
    """Estimated memory to decode a ``width`` × ``height`` image of ``mode`` into RGB: Pillow keeps 4 bytes a pixel
    for RGB, and any other mode is converted (a second copy)."""
    return width * height * 4 * (1 if mode in ("RGB", "RGBA") else 2)


def load_image(
    path: str | os.PathLike[str] | EncodedImage,
    *,
    target: Callable[[int, int], tuple[int, int]] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    budget: DecodeBudget | None = None,
) -> Image.Image:
    """Decode ``path`` into an upright RGB image; raise :class:`ImageError` naming the reason.

    ``target(width, height) -> (w, h)`` tells the size the caller will resize to: JPEGs are then decoded at the
    smallest DCT scale that still gives at least that many pixels, and other formats are reduced by the largest
    integer factor that keeps at least that size (:meth:`PIL.Image.Image.reduce`, a box filter), both while holding
    their share of ``budget`` (:class:`DecodeBudget`, the process's by default). ``max_pixels`` refuses
    images whose header declares more pixels (decompression bombs) before decoding them; ``max_bytes`` refuses
    larger files before reading them. Only regular files are opened (a FIFO would block forever). An
    :class:`EncodedImage` is decoded from its bytes under the same rules.
    """
    encoded = path if isinstance(path, EncodedImage) else None
    name = encoded.name if encoded is not None else os.fspath(path)
    _register_plugins()
    try:
        if encoded is None:
            st = os.stat(name)
            if not stat.S_ISREG(st.st_mode):
                what = "is a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (FIFO, device or socket)"
                raise ImageError(name, what, "not_image")
            size = st.st_size
        else:
            size = len(encoded.data)
        if max_bytes is not None and size > max_bytes:
            raise ImageError(
                name, f"file too large ({size} bytes > {max_bytes}); raise max_bytes to allow it", "too_large"
            )
        with Image.open(io.BytesIO(encoded.data) if encoded is not None else name) as img:
            w, h = img.size
            if max_pixels is not None and w * h > max_pixels:
                raise ImageError(
                    name, f"too many pixels ({w}×{h} > {max_pixels}); raise max_pixels to allow it", "too_large"
                )
            tw, th = target(w, h) if target is not None else (w, h)
            if img.format == "JPEG" and tw < w and th < h:
                img.draft("RGB", (tw, th))
            with (budget or DECODE_BUDGET).hold(decoded_bytes(*img.size, img.mode)):
                out = _decode(img, (w, h), (tw, th))
                if out is not img:
                    img.close()  # free the full-size pixels before the budget lets the next decode start
                return out
    except ImageError:
        raise
    except FileNotFoundError:
        reason = "broken symbolic link" if os.path.islink(name) else "file not found"
        raise ImageError(name, reason, "not_found") from None
    except IsADirectoryError:
        raise ImageError(name, "is a directory", "not_image") from None
    except PermissionError:
        raise ImageError(name, "permission denied") from None
    except UnidentifiedImageError:
        plugin = PLUGINS.get(os.path.splitext(name)[1].lower())
        if plugin is not None and not _register_plugins():
            raise ImageError(
                name, f"this format needs the {plugin} plugin: pip install 'poolvec[heif]'", "not_image"
            ) from None
        raise ImageError(name, "not a recognised image format", "not_image") from None
    except Image.DecompressionBombError as e:
        raise ImageError(name, f"too many pixels (Pillow's decompression-bomb guard: {e})", "too_large") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(name, f"cannot decode: {e}") from None


def _decode(img: Image.Image, full: tuple[int, int], target: tuple[int, int]) -> Image.Image:
    """Load ``img``, turn it upright (in place: no copy when it already is), reduce it by an integer factor towards
    ``target`` (never below it) and make it RGB; records the full upright size under :data:`FULL_SIZE`."""
    img.load()
    loaded = img.size
    ImageOps.exif_transpose(img, in_place=True)
    turned = img.size != loaded
    tw, th = target[::-1] if turned else target
    factor = min(img.size[0] // max(1, tw), img.size[1] // max(1, th))
    if factor >= 2 and img.mode in ("RGB", "RGBA", "L", "LA", "I", "F", "CMYK"):
        img = img.reduce(factor)  # JPEGs mostly were DCT-scaled while decoding (factor 1 here)
    out = to_rgb(img)
    w, h = full
    out.info[FULL_SIZE] = (h, w) if turned else (w, h)
    return out


@functools.cache
def thumbnail(path: str | os.PathLike[str], size: int) -> Image.Image:
    """The upright RGB image of ``path`` fitting ``size``×``size`` (JPEGs decoded at a reduced DCT scale); raises
    :class:`ImageError`. The thumbnails of the server, the contact sheets and the HTML pages."""
    img = load_image(path, target=lambda w, h: (size, size))
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    return img


def _register_plugins() -> bool:
    """Let Pillow open HEIC/HEIF when pillow-heif is installed (once); returns whether it is."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def full_size(img: Image.Image) -> tuple[int, int]:
    """The full upright (width, height) of an image from :func:`load_image`, even if it was decoded smaller."""
    return tuple(img.info.get(FULL_SIZE, img.size))  # type: ignore[return-value]


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is composited on white, 16-bit greys are rescaled."""
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v * (1 / 256)).convert("L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")
