"""Results people would rather see than read: a contact-sheet image and a self-contained HTML page.

Both take (query, hits) pairs or duplicate groups and draw thumbnails with scores; a verified match has its
matched region outlined in green on each image and its inliers in the caption. File names are escaped in HTML, and
an image that cannot be opened is drawn as a grey tile with its name, never an error. :func:`correspondence_picture`
draws two images side by side with their matched points (``poolvec compare``).
"""

from __future__ import annotations

import base64
import functools
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont, ImageOps

from poolvec.extractor.images import thumbnail as fitted
from poolvec.indexer.dups.find import DuplicateGroup
from poolvec.indexer.milvus import names
from poolvec.indexer.query import Box, Hit

if TYPE_CHECKING:
    from poolvec.indexer.verify.compare import Comparison

THUMB = 160
#: The outline of a matched region.
MATCHED = (0, 170, 60)
#: Lines drawn at most between matched points (an even sample of them).
LINES = 60
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


def outlined(image: Image.Image, box: Box | None, width: int = 2) -> Image.Image:
    """``image`` with the region ``box`` (fractions ``x0, y0, x1, y1``) outlined; the image itself when None."""
    if box is None:
        return image
    image = image.copy()
    w, h = image.size
    x0, y0, x1, y1 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    ImageDraw.Draw(image).rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=MATCHED, width=width)
    return image


def _caption(hit: Hit, rank: int) -> str:
    tick = f"  ✓{hit.inliers}" if hit.verified else ""
    return f"#{rank}  {hit.score:.3f}{tick}"


def _tile(path: str, caption: str, size: int, highlight: bool = False, box: Box | None = None) -> Image.Image:
    tile = Image.new("RGB", (size, size + LABEL), (255, 255, 255))
    thumb = outlined(thumbnail(path, size), box)
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


#: One tile: an image, its caption, and the region to outline (None: none).
Tile = tuple[str, str] | tuple[str, str, Box | None]


def contact_sheet(rows: Sequence[tuple[str, str, list[Tile]]], out: str | os.PathLike[str], size: int = THUMB) -> Path:
    """Draw one row per (lead image, its caption, [(image, caption[, box]), …]) and save as PNG/JPEG; returns the
    path."""
    width = max(1 + len(items) for _, _, items in rows) if rows else 1
    cell_w, cell_h = size + PAD, size + LABEL + PAD
    sheet = Image.new("RGB", (PAD + width * cell_w, PAD + max(1, len(rows)) * cell_h), (235, 235, 235))
    for r, (lead, label, items) in enumerate(rows):
        y = PAD + r * cell_h
        sheet.paste(_tile(lead, label, size, highlight=True), (PAD, y))
        for c, (path, caption, *box) in enumerate(items, start=1):
            sheet.paste(_tile(path, caption, size, box=box[0] if box else None), (PAD + c * cell_w, y))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def search_sheet(results: Sequence[tuple[str, list[Hit]]], out: str | os.PathLike[str], size: int = THUMB) -> Path:
    """Contact sheet of search results: the query, then its hits with rank and score (✓ and the inliers when
    verified, the matched region outlined)."""
    rows = [(q, "query", [(h.path, _caption(h, i), h.box_hit) for i, h in enumerate(hits, 1)]) for q, hits in results]
    return contact_sheet(rows, out, size)


def _data_uri(path: str, size: int, box: Box | None = None) -> str:
    buf = io.BytesIO()
    outlined(ImageOps.exif_transpose(thumbnail(path, size)), box).save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa}}
section{{margin-bottom:2em}} h2{{font-size:1.05em;word-break:break-all}}
.row{{display:flex;flex-wrap:wrap;gap:10px}}
figure{{margin:0;width:{size}px;background:#fff;padding:4px;border:1px solid #ddd}}
figure.lead{{border:2px solid #c00}} img{{width:{size}px;height:{size}px;object-fit:contain;background:#eee}}
figcaption{{font-size:12px;word-break:break-all}} .score{{color:#0a3;font-weight:600}} .ok{{color:#0a3}}
</style></head><body><h1>{title}</h1>
{body}
</body></html>
"""


def _figure(path: str, caption: str, size: int, lead: bool = False, box: Box | None = None) -> str:
    cls = ' class="lead"' if lead else ""
    src = _data_uri(path, size, box)
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
        figs += [_figure(h.path, _html_caption(h, i), size, box=h.box_hit) for i, h in enumerate(hits, 1)]
        sections.append(
            f'<section><h2>{html.escape(names.shown(query))}</h2><div class="row">{"".join(figs)}</div></section>'
        )
    return _write(out, _PAGE.format(title="poolvec search", size=size, body="\n".join(sections)))


def _html_caption(hit: Hit, rank: int) -> str:
    tick = f' <span class="ok" title="verified: matched points">✓ {hit.inliers}</span>' if hit.verified else ""
    return f'#{rank} <span class="score">{hit.score:.4f}</span>{tick}'


def member_boxes(group: DuplicateGroup) -> dict[str, Box]:
    """Each member's matched region in the strongest verified pair it belongs to (members of no verified pair are
    left out)."""
    at = dict(zip(group.ids, group.paths, strict=False))
    boxes: dict[str, tuple[int, Box]] = {}
    for p in group.pairs:
        for i, b in ((p.a, p.box_a), (p.b, p.box_b)):
            if p.verified and b is not None and i in at and p.inliers > boxes.get(at[i], (-1, b))[0]:
                boxes[at[i]] = (p.inliers, b)
    return {path: b for path, (_, b) in boxes.items()}


def duplicates_html(groups: Sequence[DuplicateGroup], out: str | os.PathLike[str], size: int = THUMB) -> Path:
    """A self-contained HTML page of duplicate groups (exact first, then near with their lowest score)."""
    sections = []
    for n, g in enumerate(groups, 1):
        title = f"group {n}: {g.kind}" + (f" (similarity ≥ {g.score:.3f})" if g.kind == "near" else " (same bytes)")
        boxes = member_boxes(g)
        figs = "".join(_figure(p, g.kind + (" ✓" if p in boxes else ""), size, box=boxes.get(p)) for p in g.paths)
        sections.append(f'<section><h2>{html.escape(title)}</h2><div class="row">{figs}</div></section>')
    body = "\n".join(sections) or "<p>No duplicates found.</p>"
    return _write(out, _PAGE.format(title="poolvec duplicates", size=size, body=body))


def duplicates_sheet(groups: Sequence[DuplicateGroup], out: str | os.PathLike[str], size: int = THUMB) -> Path:
    """Contact sheet of duplicate groups, one row each (exact copies, then near ones with their lowest score)."""
    rows = []
    for n, g in enumerate(groups, 1):
        boxes = member_boxes(g)
        members = [(p, g.kind + (" ✓" if p in boxes else ""), boxes.get(p)) for p in g.paths]
        lead = f"{n} · {g.kind}" if g.kind == "exact" else f"{n} · ≥ {g.score:.3f}"
        rows.append((members[0][0], lead, members[1:]))
    return contact_sheet(rows, out, size)


def correspondence_picture(comparison: Comparison, out: str | os.PathLike[str], height: int = 400) -> Path:
    """The two images of a comparison side by side at one height, the matched region outlined in each and a line
    between each pair of matched points (green when verified, orange when not)."""
    c = comparison.correspondence
    tiles = []
    for path, size in ((comparison.a, comparison.size_a), (comparison.b, comparison.size_b)):
        img = thumbnail(path, 4096)
        scale = height / img.height
        tiles.append((img.resize((max(1, round(img.width * scale)), height)), size))
    (ia, sa), (ib, sb) = tiles
    boxes = (c.box_a, c.box_b) if c.inliers else (None, None)
    canvas = Image.new("RGB", (ia.width + PAD + ib.width, height + LABEL), (255, 255, 255))
    canvas.paste(outlined(ia, boxes[0], 3), (0, 0))
    canvas.paste(outlined(ib, boxes[1], 3), (ia.width + PAD, 0))
    draw = ImageDraw.Draw(canvas)
    colour = MATCHED if c.verified else (230, 120, 0)
    if c.points_a is not None and c.points_b is not None:
        fa, fb = (ia.width / sa[0], height / sa[1]), (ib.width / sb[0], height / sb[1])
        for n, ((xa, ya), (xb, yb)) in enumerate(zip(c.points_a, c.points_b, strict=True)):
            if n % max(1, len(c.points_a) // LINES):
                continue  # every point would hide the pictures: an even sample of the lines
            draw.line((xa * fa[0], ya * fa[1], ia.width + PAD + xb * fb[0], yb * fb[1]), fill=colour, width=1)
    draw.text((4, height + 8), comparison.verdict(), fill=(0, 0, 0), font=_font(14))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out


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
