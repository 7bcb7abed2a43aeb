"""Results people would rather see than read: a contact-sheet image and a self-contained HTML page.

Both take (query, hits) pairs or duplicate groups and draw thumbnails with scores; file names are escaped in
HTML, and an image that cannot be opened is drawn as a grey tile with its name, never an error.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from poolvec.extractor.images import thumbnail as fitted
from poolvec.indexer.dups.find import DuplicateGroup
from poolvec.indexer.milvus import names
from poolvec.indexer.query import Hit

THUMB = 160
LABEL = 34
PAD = 6
#: DejaVu Sans, shipped with the package (indexer/data, licence beside it): Pillow's built-in fonts have no "ü"
#: and its bitmap one no real spacing ("#1 0.917" came out as "#10.917").
FONT_FILE = Path(__file__).resolve().parent / "data" / "DejaVuSans.ttf"


@functools.cache
def _font(size: int = 12) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype(str(FONT_FILE), size)
    except OSError:  # a trimmed install without the font: Pillow's own scalable font still spaces text right
        return ImageFont.load_default(size=size)


def thumbnail(path: str | os.PathLike[str], size: int = THUMB) -> Image.Image:
    """An upright RGB thumbnail fitting ``size``×``size``; a grey tile if the file cannot be read."""
    try:
        return fitted(path, size)
    except Exception:
        return Image.new("RGB", (size, size), (128, 128, 128))


def _tile(path: str, caption: str, size: int, highlight: bool = False) -> Image.Image:
    tile = Image.new("RGB", (size, size + LABEL), (255, 255, 255))
    thumb = thumbnail(path, size)
    tile.paste(thumb, ((size - thumb.width) // 2, (size - thumb.height) // 2))
    draw = ImageDraw.Draw(tile)
    font = _font()
    name = names.shown(os.path.basename(path))
    name = name if len(name) <= 24 else name[:11] + "…" + name[-11:]
    draw.text((3, size + 2), name, fill=(0, 0, 0), font=font)
    draw.text((3, size + 17), caption, fill=(0, 0, 160) if not highlight else (160, 0, 0), font=font)
    if highlight:
        draw.rectangle((0, 0, size - 1, size - 1), outline=(200, 0, 0), width=3)
    return tile


def contact_sheet(
    rows: Sequence[tuple[str, str, list[tuple[str, str]]]], out: str | os.PathLike[str], size: int = THUMB
) -> Path:
    """Draw one row per (lead image, its caption, [(image, caption), …]) and save as PNG/JPEG; returns the path."""
    width = max(1 + len(items) for _, _, items in rows) if rows else 1
    cell_w, cell_h = size + PAD, size + LABEL + PAD
    sheet = Image.new("RGB", (PAD + width * cell_w, PAD + max(1, len(rows)) * cell_h), (235, 235, 235))
    for r, (lead, label, items) in enumerate(rows):
        y = PAD + r * cell_h
        sheet.paste(_tile(lead, label, size, highlight=True), (PAD, y))
        for c, (path, caption) in enumerate(items, start=1):
            sheet.paste(_tile(path, caption, size), (PAD + c * cell_w, y))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def search_sheet(results: Sequence[tuple[str, list[Hit]]], out: str | os.PathLike[str], size: int = THUMB) -> Path:
    """Contact sheet of search results: the query, then its hits with rank and score."""
    rows = [(q, "query", [(h.path, f"#{i}  {h.score:.3f}") for i, h in enumerate(hits, 1)]) for q, hits in results]
    return contact_sheet(rows, out, size)


def _data_uri(path: str, size: int) -> str:
    buf = io.BytesIO()
    ImageOps.exif_transpose(thumbnail(path, size)).save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa}}
section{{margin-bottom:2em}} h2{{font-size:1.05em;word-break:break-all}}
.row{{display:flex;flex-wrap:wrap;gap:10px}}
figure{{margin:0;width:{size}px;background:#fff;padding:4px;border:1px solid #ddd}}
figure.lead{{border:2px solid #c00}} img{{width:{size}px;height:{size}px;object-fit:contain;background:#eee}}
figcaption{{font-size:12px;word-break:break-all}} .score{{color:#0a3;font-weight:600}}
</style></head><body><h1>{title}</h1>
{body}
</body></html>
"""


def _figure(path: str, caption: str, size: int, lead: bool = False) -> str:
    cls = ' class="lead"' if lead else ""
    src = _data_uri(path, size)
    link = Path(os.path.abspath(path)).as_uri()  # absolute: the page works wherever it is written
    return (
        f'<figure{cls}><a href="{html.escape(link)}">'
        f'<img src="{src}" alt="{html.escape(names.shown(os.path.basename(path)))}"></a>'
        f"<figcaption>{caption}<br>{html.escape(names.shown(path))}</figcaption></figure>"
    )


def search_html(results: Sequence[tuple[str, list[Hit]]], out: str | os.PathLike[str], size: int = THUMB) -> Path:
    """A self-contained HTML page (thumbnails inlined) of each query and its hits."""
    sections = []
    for query, hits in results:
        figs = [_figure(query, "<b>query</b>", size, lead=True)]
        figs += [_figure(h.path, f'#{i} <span class="score">{h.score:.4f}</span>', size) for i, h in enumerate(hits, 1)]
        sections.append(
            f'<section><h2>{html.escape(names.shown(query))}</h2><div class="row">{"".join(figs)}</div></section>'
        )
    return _write(out, _PAGE.format(title="poolvec search", size=size, body="\n".join(sections)))


def duplicates_html(groups: Sequence[DuplicateGroup], out: str | os.PathLike[str], size: int = THUMB) -> Path:
    """A self-contained HTML page of duplicate groups (exact first, then near with their lowest score)."""
    sections = []
    for n, g in enumerate(groups, 1):
        title = f"group {n}: {g.kind}" + (f" (similarity ≥ {g.score:.3f})" if g.kind == "near" else " (same bytes)")
        figs = "".join(_figure(p, g.kind, size) for p in g.paths)
        sections.append(f'<section><h2>{html.escape(title)}</h2><div class="row">{figs}</div></section>')
    body = "\n".join(sections) or "<p>No duplicates found.</p>"
    return _write(out, _PAGE.format(title="poolvec duplicates", size=size, body=body))


def duplicates_sheet(groups: Sequence[DuplicateGroup], out: str | os.PathLike[str], size: int = THUMB) -> Path:
    """Contact sheet of duplicate groups, one row each (exact copies, then near ones with their lowest score)."""
    rows = [
        (
            g.paths[0],
            f"{n} · {g.kind}" if g.kind == "exact" else f"{n} · ≥ {g.score:.3f}",
            [(p, g.kind) for p in g.paths[1:]],
        )
        for n, g in enumerate(groups, 1)
    ]
    return contact_sheet(rows, out, size)


def _write(out: str | os.PathLike[str], text: str) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


def search_outputs(
    results: Sequence[tuple[str, list[Hit]]], grid: str | os.PathLike[str] | None, html: str | os.PathLike[str] | None
) -> None:
    """Write the contact sheet and/or the page of search results that were asked for (``None``: not asked)."""
    if grid is not None:
        search_sheet(results, grid)
    if html is not None:
        search_html(results, html)


def duplicates_outputs(
    groups: Sequence[DuplicateGroup], grid: str | os.PathLike[str] | None, html: str | os.PathLike[str] | None
) -> None:
    """Write the contact sheet and/or the page of duplicate groups that were asked for (``None``: not asked)."""
    if grid is not None:
        duplicates_sheet(groups, grid)
    if html is not None:
        duplicates_html(groups, html)
