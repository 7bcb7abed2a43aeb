"""File names are data: any bytes Linux allows are indexed, searched, filtered, pruned, rerooted and written out
exactly, and shown escaped — never used as delimiters, never skipped for their name."""

from __future__ import annotations

import base64
import json
import os
import random
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from poolvec.indexer import ImageIndex
from poolvec.indexer.cli.app import app
from poolvec.indexer.milvus import names

runner = CliRunner()
#: Names a real archive can hold: Latin-1 bytes, a newline, a tab, quotes and brackets, an escape sequence, a name
#: that looks like rich markup, and a character from the block the stored form uses.
HOSTILE = [
    b"caf\xe9.jpg",
    b"new\nline.jpg",
    b"tab\there.jpg",
    b"quote\"s 'and' [bold]red[reset].jpg",
    b"\x1b[31mred.jpg",
    "private \U000f0041 use.jpg".encode(),
]


def test_stored_form_is_lossless_utf8_without_controls_and_keeps_prefixes():
    rng = random.Random(0)
    alphabet = [*range(1, 256), *range(1, 47), *range(48, 128)]  # any byte but NUL and "/"; ASCII twice as likely
    alphabet = [b for b in alphabet if b != 47]
    for _ in range(2000):
        raw = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
        if rng.random() < 0.2:
            raw += "\U000f0000\U000f0080x".encode()  # the block itself, as real characters
        path = os.fsdecode(b"/photos/" + raw)
        text = names.stored(path)
        text.encode("utf-8")  # valid UTF-8: Milvus takes it
        assert not any(ord(c) < 32 or ord(c) == 127 for c in text)  # filter literals take it
        assert os.fsencode(names.real(text)) == b"/photos/" + raw  # lossless
        assert text.startswith(names.stored("/photos/"))  # character by character: folders stay prefixes
    assert names.stored("/plain/ascii.jpg") == "/plain/ascii.jpg"  # indexes built before keep their rows


def test_shown_form_escapes_what_a_terminal_would_act_on():
    assert names.shown(os.fsdecode(b"caf\xe9\n\x1b.jpg")) == "caf\\xe9\\x0a\\x1b.jpg"
    assert names.shown("café.jpg") == "café.jpg"
    assert names.json_fields("café.jpg") == {"path": "café.jpg"}
    raw = b"caf\xe9.jpg"
    fields = names.json_fields(os.fsdecode(raw))
    assert fields["path"] == "caf\\xe9.jpg" and base64.b64decode(fields["path_bytes"]) == raw


@pytest.fixture
def hostile(tmp_path, photo_dir):
    """A folder of real photos under hostile names, one of them in a sub-folder whose name holds a newline."""
    top = tmp_path / "archive"
    sub = os.path.join(os.fsencode(top), b"odd\nfolder \xff")
    os.makedirs(sub)
    sources = sorted(photo_dir.glob("*.jpg"))
    made = {}
    for raw, src in zip(HOSTILE, sources, strict=False):
        target = os.path.join(os.fsencode(top), raw)
        shutil.copy(src, target)
        made[os.fsdecode(target)] = src
    inner = os.path.join(sub, b"inner \xfe.jpg")
    shutil.copy(sources[-1], inner)
    made[os.fsdecode(inner)] = sources[-1]
    return top, os.fsdecode(sub), made


def test_hostile_names_round_trip_through_the_cli(tmp_path, hostile):
    top, sub, made = hostile
    db = str(tmp_path / "h.db")
    failures = tmp_path / "failed.jsonl"
    res = runner.invoke(app, ["index", str(top), "--db", db, "--json", "--failures", str(failures), "--no-tune"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["added"] == len(made) and failures.read_text() == ""

    # search: every name comes back as the exact bytes, via path_bytes where the text form is escaped
    for path, src in made.items():
        res = runner.invoke(app, ["search", str(src), "--db", db, "-k", "20", "--json"])
        assert res.exit_code == 0, res.output
        hits = json.loads(res.stdout)[0]["hits"]
        got = {base64.b64decode(h["path_bytes"]) if "path_bytes" in h else h["path"].encode() for h in hits}
        assert os.fsencode(path) in got
    # the table shows them escaped, brackets and all, one line per hit
    query = made[os.fsdecode(os.path.join(os.fsencode(top), HOSTILE[3]))]
    res = runner.invoke(app, ["search", str(query), "--db", db], env={"COLUMNS": "400"})
    assert "[bold]red[reset].jpg" in res.stdout and "\x1b" not in res.stdout

    # a folder whose name holds a newline and a non-UTF-8 byte can be filtered on
    inner_src = made[os.fsdecode(os.path.join(os.fsencode(sub), b"inner \xfe.jpg"))]
    res = runner.invoke(app, ["search", str(inner_src), "--db", db, "--under", sub, "--json"])
    hits = json.loads(res.stdout)[0]["hits"]
    assert len(hits) == 1 and base64.b64decode(hits[0]["path_bytes"]).endswith(b"inner \xfe.jpg")

    # pruned by its real name once gone
    gone = os.path.join(os.fsencode(top), HOSTILE[0])
    os.unlink(gone)
    res = runner.invoke(app, ["index", str(top), "--db", db, "--prune", "--json"])
    assert json.loads(res.stdout)["removed"] == 1

    # rerooted, the odd folder and all, and found again unchanged at the new place
    moved = tmp_path / "moved \xe9"
    shutil.move(top, moved)
    res = runner.invoke(app, ["reroot", str(top), str(moved), "--db", db])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["index", str(moved), "--db", db, "--json"])
    summary = json.loads(res.stdout)
    assert (summary["added"], summary["unchanged"]) == (0, len(made) - 1)


def test_embed_rows_and_thumbnails_keep_odd_names(tmp_path, hostile):
    top, _, made = hostile
    out = tmp_path / "v.npy"
    res = runner.invoke(app, ["embed", str(top), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    got = [base64.b64decode(r["path_bytes"]) if "path_bytes" in r else r["path"].encode() for r in rows]
    assert sorted(got) == sorted(os.fsencode(p) for p in made) and len(np.load(out)) == len(made)
    res = runner.invoke(app, ["embed", str(top), "--out", str(tmp_path / "w.npy"), "--nul"])
    assert res.exit_code == 0, res.output
    raw = (tmp_path / "w.txt").read_bytes().split(b"\0")[:-1]
    assert raw == got  # the same rows, as raw bytes for xargs -0

    from poolvec.indexer import render

    odd = os.fsdecode(os.path.join(os.fsencode(top), HOSTILE[0]))
    tile = render.thumbnail(odd)
    assert np.asarray(tile).std() > 10  # the photo itself, not the grey tile of an unreadable file


def test_failures_file_is_one_json_object_per_file(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    for raw in (b"broken\nname.jpg", b"tab\tbroken \xe9.png"):
        with open(os.path.join(os.fsencode(folder), raw), "wb") as f:
            f.write(b"not an image")
    Image.new("RGB", (64, 48), "red").save(folder / "fine.png")
    failures = tmp_path / "f.jsonl"
    res = runner.invoke(app, ["index", str(folder), "--db", str(tmp_path / "f.db"), "--failures", str(failures)])
    assert res.exit_code == 1
    lines = failures.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    got = sorted(base64.b64decode(r["path_bytes"]) for r in map(json.loads, lines))
    assert got == sorted(os.path.join(os.fsencode(folder), r) for r in (b"broken\nname.jpg", b"tab\tbroken \xe9.png"))
    assert all(json.loads(line)["reason"] == "not a recognised image format" for line in lines)
    assert len(res.stderr.strip().splitlines()) == 2  # one line per skipped file, its name escaped


def test_api_hits_carry_the_real_name(tmp_path, hostile, extractor):
    top, _, made = hostile
    index = ImageIndex(str(tmp_path / "api.db"), extractor=extractor, tuning=False)
    index.add_folder(top)
    for path, src in list(made.items())[:3]:
        hit = index.search(str(src), k=1)[0]
        assert hit.path == path and os.path.isfile(hit.path)
