"""A corpus of bad and odd inputs, generated here: every file gets its expected outcome, the run completes,
good files are all indexed, and the exit code says "partial" when something was skipped."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pytest
import skimage.data
from PIL import Image
from typer.testing import CliRunner

from poolvec.extractor import Extractor, ImageError, load_image
from poolvec.indexer import ImageIndex
from poolvec.indexer.cli.app import app

EMBEDDED = "embedded"


def _photo() -> Image.Image:
    return Image.fromarray(skimage.data.astronaut()).resize((256, 256))


def build_corpus(folder) -> dict[str, str]:
    """Write the corpus; returns file name → expected outcome (EMBEDDED or a fragment of the skip reason)."""
    photo = _photo()
    expected: dict[str, str] = {}

    def save(name: str, img: Image.Image, outcome: str = EMBEDDED, **kw) -> None:
        img.save(folder / name, **kw)
        expected[name] = outcome

    def write(name: str, data: bytes, outcome: str) -> None:
        (folder / name).write_bytes(data)
        expected[name] = outcome

    write("zero.jpg", b"", "not a recognised image")
    write("page.jpg", b"<!doctype html><html><body>404</body></html>", "not a recognised image")
    write("doc.jpg", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n", "not a recognised image")
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90)
    write("truncated.jpg", buf.getvalue()[: len(buf.getvalue()) // 3], "cannot decode")
    buf = io.BytesIO()
    photo.save(buf, "PNG")
    write("truncated.png", buf.getvalue()[: len(buf.getvalue()) // 2], "cannot decode")
    save("bomb.png", Image.new("1", (30_000, 30_000)), "too many pixels")
    save("cmyk.jpg", photo.convert("CMYK"), quality=90)
    save("gray16.png", Image.fromarray(np.asarray(photo.convert("L"), np.uint16) * 257))
    save("bilevel.png", photo.convert("1"))
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE)
    save("palette_transparent.png", palette, transparency=0)
    save("la.png", photo.convert("LA"))
    save("rgba.png", photo.convert("RGBA"))
    save("gray.jpg", photo.convert("L"), quality=90)
    frames = [photo, photo.rotate(90), photo.rotate(180)]
    save("animated.gif", frames[0], save_all=True, append_images=frames[1:], duration=100)
    save("animated.webp", frames[0], save_all=True, append_images=frames[1:], duration=100)
    save("one_pixel.png", Image.new("RGB", (1, 1), (200, 30, 30)))
    save("panorama.png", photo.resize((10_000, 10)))
    save("x" * 200 + ".jpg", photo, quality=80)
    os.mkdir(folder / "folder.jpg")  # a directory named like an image: not a file, not listed
    os.symlink(folder / "nowhere.jpg", folder / "dangling.jpg")
    expected["dangling.jpg"] = "broken symbolic link"
    os.symlink(folder / "loop_b.jpg", folder / "loop_a.jpg")
    os.symlink(folder / "loop_a.jpg", folder / "loop_b.jpg")
    expected["loop_a.jpg"] = expected["loop_b.jpg"] = "symbolic links"
    os.mkfifo(folder / "fifo.jpg")  # reading it would block forever (root can read anything else)
    expected["fifo.jpg"] = "not a regular file"
    for raw in (b"caf\xe9.jpg", b"new\nline.jpg", b"tab\there.jpg", b"quote\"s [and] 'more'.jpg", b"\x1b[31mred.jpg"):
        photo.save(os.path.join(os.fsencode(folder), raw), "JPEG")  # odd names are data: indexed like any other
        expected[os.fsdecode(raw)] = EMBEDDED
    return expected


def test_every_bad_input_has_its_outcome_and_good_files_are_indexed(tmp_path, photo_dir, extractor):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    expected = build_corpus(corpus)
    for good in sorted(photo_dir.glob("*.jpg"))[:3]:
        shutil.copy(good, corpus / good.name)
        expected[good.name] = EMBEDDED
    index = ImageIndex(str(tmp_path / "bad.db"), extractor=extractor, tuning=False)
    report = index.add_folder(corpus)
    failed = {os.path.basename(p): reason for p, reason in report.failed}
    for name, outcome in expected.items():
        if outcome == EMBEDDED:
            assert name not in failed, (name, failed.get(name))
        else:
            assert outcome in failed.get(name, ""), (name, failed.get(name))
    assert set(failed) == {n for n, o in expected.items() if o != EMBEDDED}
    assert report.added == sum(o == EMBEDDED for o in expected.values()) == len(index)
    assert all("\n" not in r for r in failed.values())  # one line each

    again = index.add_folder(corpus)  # nothing already indexed is lost, nothing re-embedded
    assert again.unchanged == len(index) and again.added == 0


def test_cli_exit_code_is_partial_on_the_corpus(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    build_corpus(corpus)
    res = CliRunner().invoke(app, ["index", str(corpus), "--db", str(tmp_path / "c.db"), "-q"])
    assert res.exit_code == 1
    assert "fifo.jpg: not a regular file" in res.stderr


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_embeds_like_the_rotated_pixels(tmp_path, extractor, orientation):
    base = _photo().crop((0, 0, 256, 192))
    exif = Image.Exif()
    exif[0x0112] = orientation
    tagged = tmp_path / "tagged.png"
    base.save(tagged, exif=exif)
    ops = {
        2: [Image.Transpose.FLIP_LEFT_RIGHT],
        3: [Image.Transpose.ROTATE_180],
        4: [Image.Transpose.FLIP_TOP_BOTTOM],
        5: [Image.Transpose.TRANSPOSE],
        6: [Image.Transpose.ROTATE_270],
        7: [Image.Transpose.TRANSVERSE],
        8: [Image.Transpose.ROTATE_90],
    }[orientation]
    upright = base
    for op in ops:
        upright = upright.transpose(op)
    physical = tmp_path / "upright.png"
    upright.save(physical)
    np.testing.assert_allclose(extractor.embed(tagged), extractor.embed(physical), atol=1e-6)
    assert load_image(tagged).size == upright.size


def test_animated_files_use_the_first_frame(tmp_path, extractor):
    photo = _photo()
    photo.save(tmp_path / "anim.webp", save_all=True, append_images=[photo.rotate(90)], lossless=True)
    photo.save(tmp_path / "first.webp", lossless=True)
    np.testing.assert_allclose(
        extractor.embed(tmp_path / "anim.webp"), extractor.embed(tmp_path / "first.webp"), atol=1e-6
    )


def test_file_size_limit(tmp_path):
    path = tmp_path / "big.jpg"
    _photo().save(path, quality=95)
    ex = Extractor(max_bytes=1000)
    with pytest.raises(ImageError, match="file too large"):
        ex.embed(path)
    report = ImageIndex(str(tmp_path / "s.db"), extractor=ex, tuning=False).add([path])
    assert "file too large" in report.failed[0][1]


def test_file_gone_between_scan_and_read(tmp_path, extractor):
    report = ImageIndex(str(tmp_path / "g.db"), extractor=extractor, tuning=False).add([tmp_path / "vanished.jpg"])
    assert report.failed == [(str(tmp_path / "vanished.jpg"), "No such file or directory")]


def test_index_from_a_newer_format_is_refused_untouched(tmp_path, extractor, photo_dir):
    db = str(tmp_path / "future.db")
    index = ImageIndex(db, extractor=extractor, tuning=False)
    index.add([sorted(photo_dir.glob("*.jpg"))[0]])
    config = {**index.config, "format": 99}
    index.store.client.alter_collection_properties(
        index.collection, {"poolvec.config": __import__("json").dumps(config)}
    )
    with pytest.raises(Exception, match="newer poolvec"):
        ImageIndex(db)
    assert index.store.count() == 1
