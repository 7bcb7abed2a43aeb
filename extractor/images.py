"""Finding image files and decoding them into RGB PIL images, safely.

Decoding applies the EXIF orientation, converts every mode to RGB (alpha composited on white), refuses
decompression bombs before any pixel is decoded, and for JPEGs decodes at a reduced DCT scale when the
image will be shrunk anyway (``Image.draft``: 2–4× less decode time on large photos).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

#: Extensions indexed by default (lower case): the raster formats Pillow's wheels decode (JPEG and its MPO/JFIF
#: variants, PNG/APNG, WebP, AVIF, GIF, TIFF, BMP, JPEG 2000, the Netpbm family, ICO/ICNS, TGA, QOI), plus HEIC/HEIF,
#: which need the pillow-heif plugin (``pip install "poolvec[heif]"``; without it such files are skipped with that
#: reason). The extension only chooses which files are looked at: the content decides how a file is decoded, so a PNG
#: named ``.jpg`` is read as the PNG it is, and a text file named ``.jpg`` is skipped as "not a recognised image".
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".png", ".apng", ".webp", ".avif", ".gif", ".bmp", ".dib"}
    | {".tif", ".tiff", ".jp2", ".j2k", ".jpf", ".jpx", ".pbm", ".pgm", ".ppm", ".pnm", ".pfm"}
    | {".ico", ".icns", ".tga", ".qoi", ".heic", ".heif"}
)
#: Extensions whose decoder is a plugin, and the package that brings it.
PLUGINS = {".heic": "pillow-heif", ".heif": "pillow-heif"}

#: Pillow's own decompression-bomb threshold (about 89.5 megapixels), used as our default limit.
DEFAULT_MAX_PIXELS: int = 1024 * 1024 * 1024 // 4 // 3
#: ``Image.info`` key where :func:`load_image` records the image's full upright (width, height): a JPEG decoded at a
#: reduced DCT scale is smaller than the picture it holds.
FULL_SIZE = "poolvec.full_size"
#: Files larger than this are skipped unread (no photo format needs more; a 100 MP 16-bit TIFF is 600 MB).
DEFAULT_MAX_BYTES: int = 1024 * 1024 * 1024


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


def iter_image_files(
    root: str | os.PathLike[str],
    *,
    recursive: bool = True,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
    follow_symlinks: bool = False,
    on_skip: Callable[[str, str], None] | None = None,
) -> Iterator[Path]:
    """Yield the image files under ``root`` in a stable (sorted) order, as absolute paths.

    Files are chosen by extension (case-insensitive; the content decides how a file is decoded, so a PNG named
    ``.jpg`` is read as the PNG it is). Directories named like images are not files and are not listed.
    Symlinked files are listed (a dangling one then fails with its reason when read); symlinked directories are
    followed only with ``follow_symlinks`` (loops are cut). A folder that cannot be read (permission, a path
    longer than the system allows) is passed to ``on_skip(path, reason)`` — nothing is skipped in silence.
    """
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    top = Path(root).expanduser().absolute()
    if top.is_file():
        yield top
        return
    if not top.is_dir():
        raise ImageError(str(top), "no such file or directory")
    seen: set[tuple[int, int]] = set()

    def skip(path: str, e: OSError) -> None:
        if on_skip is not None:
            reason = "path too long for the system" if e.errno == errno.ENAMETOOLONG else (e.strerror or str(e))
            on_skip(path, f"folder not read: {reason}")

    def walk(folder: Path) -> Iterator[Path]:
        try:
            st = folder.stat()
            key = (st.st_dev, st.st_ino)
            if key in seen:
                return
            seen.add(key)
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            skip(str(folder), e)
            return
        subdirs = []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=follow_symlinks):
                    subdirs.append(Path(entry.path))
                elif Path(entry.name).suffix.lower() in exts:
                    yield Path(entry.path)
            except OSError as e:
                skip(entry.path, e)
        if recursive:
            for sub in subdirs:
                yield from walk(sub)

    yield from walk(top)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a file's bytes, read in 1 MiB chunks (content identity of images and weights)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_image(
    path: str | os.PathLike[str] | EncodedImage,
    *,
    target: Callable[[int, int], tuple[int, int]] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> Image.Image:
    """Decode ``path`` into an upright RGB image; raise :class:`ImageError` naming the reason.

    ``target(width, height) -> (w, h)`` tells the size the caller will resize to: JPEGs are then decoded at the
    smallest DCT scale that still gives at least that many pixels. ``max_pixels`` refuses
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
                kind = "is a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (FIFO, device or socket)"
                raise ImageError(name, kind)
            size = st.st_size
        else:
            size = len(encoded.data)
        if max_bytes is not None and size > max_bytes:
            raise ImageError(name, f"file too large ({size} bytes > {max_bytes}); raise max_bytes to allow it")
        with Image.open(io.BytesIO(encoded.data) if encoded is not None else name) as img:
            w, h = img.size
            if max_pixels is not None and w * h > max_pixels:
                raise ImageError(name, f"too many pixels ({w}×{h} > {max_pixels}); raise max_pixels to allow it")
            if target is not None and img.format == "JPEG":
                tw, th = target(w, h)
                if tw < w and th < h:
                    img.draft("RGB", (tw, th))
            img.load()
            decoded = img.size
            out = to_rgb(ImageOps.exif_transpose(img))
            out.info[FULL_SIZE] = (h, w) if out.size != decoded else (w, h)  # turned upright: sides swapped
            return out
    except ImageError:
        raise
    except FileNotFoundError:
        reason = "broken symbolic link" if os.path.islink(name) else "file not found"
        raise ImageError(name, reason) from None
    except IsADirectoryError:
        raise ImageError(name, "is a directory") from None
    except PermissionError:
        raise ImageError(name, "permission denied") from None
    except UnidentifiedImageError:
        plugin = PLUGINS.get(os.path.splitext(name)[1].lower())
        if plugin is not None and not _register_plugins():
            raise ImageError(name, f"this format needs the {plugin} plugin: pip install 'poolvec[heif]'") from None
        raise ImageError(name, "not a recognised image format") from None
    except Image.DecompressionBombError as e:
        raise ImageError(name, f"too many pixels (Pillow's decompression-bomb guard: {e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(name, f"cannot decode: {e}") from None


@functools.cache
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
