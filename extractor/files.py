"""Image files on disk, before any pixel: which files a folder holds, their content hash, and the inputs a
command was given — no Pillow and no torch, so that the CLI checks its arguments before anything heavy loads."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from poolvec.extractor.errors import ImageError

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
        raise ImageError(str(top), "no such file or directory", "not_found")
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


def is_under(path: str, folder: str | os.PathLike[str]) -> bool:
    """Whether the absolute ``path`` is ``folder`` or lies anywhere below it (by name: no link is followed)."""
    top = os.path.abspath(os.fspath(folder)).rstrip(os.sep)
    return path == top or path.startswith(top + os.sep)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a file's bytes, read in 1 MiB chunks (content identity of images and weights)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def require_existing(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse, naming the first one, inputs that do not exist (before anything is loaded or indexed)."""
    for p in paths:
        if not os.path.lexists(p):
            raise ImageError(os.fsdecode(os.fspath(p)), "no such file or folder", kind="not_found")


__all__ = ["IMAGE_EXTENSIONS", "PLUGINS", "file_sha256", "iter_image_files", "require_existing"]
