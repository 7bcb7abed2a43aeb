"""Reviewing duplicates (issue 25): decisions that stick in Milvus, the copy to keep with its reason (a derived copy
never over its source), resolutions journaled and undone — files' bytes and paths, index rows — and kill -9."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from poolvec.indexer import ImageIndex
from poolvec.indexer.cli.app import app
from poolvec.indexer.review.keeper import KeepRules, suggest
from poolvec.indexer.review.quality import ijg_table, jpeg_quality, measure, sharpness

ROOT = Path(__file__).resolve().parents[1]
#: Photos the derivation thresholds were not chosen on (those were astronaut, chelsea, coffee, rocket, camera).
HELD_OUT = ("china", "flower", "retina", "hubble_deep_field", "motorcycle_left", "immunohistochemistry")
runner = CliRunner()


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("POOLVEC_STATE_DIR", str(tmp_path / "state"))


def save_jpeg(img: Image.Image, path: Path, quality: int) -> Path:
    img.convert("RGB").save(path, quality=quality)
    return path


def derived_copies(src: Path, folder: Path) -> dict[str, Path]:
    """The source re-saved at quality 90, and copies made from that: halved, enlarged 1.5×, recompressed at 70 and
    at 97 (a higher quality number than its source)."""
    folder.mkdir(parents=True, exist_ok=True)
    original = save_jpeg(Image.open(src), folder / f"{src.stem}.jpg", 90)
    img = Image.open(original)
    w, h = img.size
    return {
        "original": original,
        "downscaled": save_jpeg(img.resize((w // 2, h // 2), Image.Resampling.LANCZOS), folder / "small.jpg", 90),
        "upscaled": save_jpeg(img.resize((w * 2, h * 2), Image.Resampling.BICUBIC), folder / "big.jpg", 95),
        "recompressed": save_jpeg(img, folder / "q70.jpg", 70),
        "recompressed_higher": save_jpeg(img, folder / "q97.jpg", 97),
    }


@pytest.mark.parametrize("name", HELD_OUT)
def test_a_derived_copy_is_never_suggested_over_its_original(photo_dir, tmp_path, name):
    copies = derived_copies(photo_dir / f"{name}.jpg", tmp_path / name)
    paths = [str(p) for p in copies.values()]
    measured = functools.cache(measure)  # each file read once for the four rule orders
    for rules in (KeepRules(), KeepRules.parse("quality"), KeepRules.parse("sharpness"), KeepRules.parse("date")):
        choice = suggest(paths, rules, measured)
        assert choice.keep == str(copies["original"]), (rules.order, choice.reason, choice.derived)
    choice = suggest(paths, measurer=measured)
    assert set(choice.derived) == {str(p) for k, p in copies.items() if k != "original"}, choice.derived
    assert "from" in choice.reason  # the reason says which member the others were made from


def test_rules_decide_between_copies_made_apart_and_say_why(photo_dir, tmp_path):
    """Two copies cropped differently from one picture (neither made from the other): the rules decide, in order."""
    src = Image.open(photo_dir / "flower.jpg")
    w, h = src.size
    left = src.crop((0, 0, w * 9 // 10, h * 9 // 10)).resize((400, 300), Image.Resampling.LANCZOS)
    a = save_jpeg(left, tmp_path / "a.jpg", 60)
    right = src.crop((w // 10, h // 10, w, h)).resize((320, 240), Image.Resampling.BILINEAR)
    b = save_jpeg(right, tmp_path / "b.jpg", 95)
    choice = suggest([str(a), str(b)])
    assert choice.keep == str(a) and choice.reason == "400×300 vs 320×240"
    choice = suggest([str(a), str(b)], KeepRules.parse("quality"))
    assert choice.keep == str(b) and choice.reason == "JPEG quality 95 vs JPEG quality 60"
    choice = suggest([str(a), str(b)], KeepRules(prefer=(str(tmp_path / "nowhere"), str(b))))
    assert choice.keep == str(b) and choice.reason.startswith("under ")
    with pytest.raises(Exception, match="keep rules"):
        KeepRules.parse("pixels,colour")


@pytest.mark.parametrize("quality", [10, 35, 50, 75, 90, 97])
def test_jpeg_quality_is_read_from_the_quantisation_tables(photo_dir, quality):
    buf = io.BytesIO()
    Image.open(photo_dir / "china.jpg").save(buf, "JPEG", quality=quality)
    tables = Image.open(buf).quantization
    assert jpeg_quality(tables[0]) == quality
    assert sorted(tables[0]) == sorted(ijg_table(quality).astype(int).ravel().tolist())  # libjpeg's own table


def test_sharpness_is_the_variance_of_the_laplacian(photo_dir):
    g = np.asarray(Image.open(photo_dir / "retina.jpg").convert("L"), np.float64)
    reference = ndimage.laplace(g)[1:-1, 1:-1].var()  # scipy's 4-neighbour Laplacian, float64
    assert sharpness(g) == pytest.approx(reference, rel=1e-12)
    blurred = np.asarray(Image.open(photo_dir / "retina.jpg").convert("L").resize((64, 64)).resize(g.shape[::-1]))
    assert sharpness(blurred) < sharpness(g) / 3


def tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``root``: relative path → (sha256, mtime_ns)."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def rows(index: ImageIndex) -> dict[str, tuple]:
    got = {}
    for batch in index.store.iterate("", fields=("path", "size", "mtime_ns", "sha256", "vector")):
        for r in batch:
            got[r["path"]] = (r["size"], r["mtime_ns"], r["sha256"], np.round(np.asarray(r["vector"]), 6).tobytes())
    return got


@pytest.fixture
def library(tmp_path, photo_dir, extractor):
    """A photo library: 4 originals, a folder of derived copies of one and an exact copy of another, indexed."""
    lib = tmp_path / "library"
    (lib / "2019").mkdir(parents=True)
    for name in ("china", "flower", "retina", "coffee"):
        save_jpeg(Image.open(photo_dir / f"{name}.jpg"), lib / "2019" / f"{name}.jpg", 92)
    copies = lib / "copies"
    copies.mkdir()
    img = Image.open(lib / "2019" / "china.jpg")
    save_jpeg(img.resize((img.width // 2, img.height // 2), Image.Resampling.LANCZOS), copies / "china_small.jpg", 85)
    save_jpeg(img, copies / "china_q60.jpg", 60)
    (copies / "flower_copy.jpg").write_bytes((lib / "2019" / "flower.jpg").read_bytes())
    index = ImageIndex(tmp_path / "lib.db", extractor=extractor, tuning=False)  # the session's model, loaded once
    index.add_folder(lib)
    return index, lib


def group_sets(index: ImageIndex, **kw) -> list[set[str]]:
    return [{os.path.basename(p) for p in g.paths} for g in index.find_duplicates(**kw)]


def test_decisions_stick_until_new_content_comes(library, photo_dir):
    index, lib = library
    china = {"china.jpg", "china_small.jpg", "china_q60.jpg"}
    assert sorted(map(sorted, group_sets(index))) == sorted([["flower.jpg", "flower_copy.jpg"], sorted(china)])
    index.decide_distinct(
        [lib / "2019" / "china.jpg", lib / "copies" / "china_small.jpg", lib / "copies" / "china_q60.jpg"]
    )
    assert group_sets(index) == [{"flower.jpg", "flower_copy.jpg"}]
    assert china in group_sets(index, decided=False)  # --all shows it again
    reopened = ImageIndex(index.uri)
    assert group_sets(reopened) == [{"flower.jpg", "flower_copy.jpg"}]  # stored with the index
    save_jpeg(Image.open(lib / "2019" / "china.jpg"), lib / "copies" / "china_again.jpg", 75)
    reopened.add_folder(lib)
    assert {"china.jpg", "china_again.jpg"} <= next(g for g in group_sets(reopened) if "china.jpg" in g)
    with pytest.raises(Exception, match="not in the index"):
        reopened.decide_distinct([photo_dir / "china.jpg", lib / "2019" / "china.jpg"])
    reopened.drop()
    assert not reopened.store.client.has_collection(reopened.store.decisions_collection)


def test_resolve_move_then_undo_restores_every_file_and_row(library, tmp_path):
    index, lib = library
    before_files, before_rows = tree(lib), rows(index)
    groups = index.find_duplicates()
    trash = tmp_path / "trash"
    dry = index.resolve(groups, "move", trash=trash)
    assert (dry.dry_run, dry.files, dry.groups) == (True, 3, 2) and dry.refused == []
    assert dry.bytes_freed == sum(os.path.getsize(lib / "copies" / n) for n in os.listdir(lib / "copies"))
    assert tree(lib) == before_files and not trash.exists()  # a dry run touches nothing
    done = index.resolve(groups, "move", trash=trash, dry_run=False)
    assert done.files == 3 and done.journal is not None
    assert sorted(os.listdir(lib / "copies")) == []  # the derived and exact copies went, the originals stayed
    assert sorted(tree(trash)) == [
        "library/copies/china_q60.jpg",
        "library/copies/china_small.jpg",
        "library/copies/flower_copy.jpg",
    ]
    assert set(rows(index)) == {str(lib / "2019" / f"{n}.jpg") for n in ("china", "flower", "retina", "coffee")}
    assert index.find_duplicates() == []
    report = index.undo()
    assert (report.restored, report.rows, report.lost) == (3, 3, [])
    assert tree(lib) == before_files and rows(index) == before_rows  # bytes, paths, mtimes; rows to the vector
    assert tree(trash) == {}
    with pytest.raises(Exception, match="nothing to undo"):
        index.undo()


def test_a_file_in_two_groups_gets_one_decision_and_no_group_loses_its_last_copy(library, tmp_path):
    from poolvec.indexer.dups.find import DuplicateGroup
    from poolvec.indexer.milvus.schema import path_id
    from poolvec.indexer.review.resolve import Planned

    index, lib = library
    a, b, small = (
        str(p)
        for p in (lib / "2019" / "flower.jpg", lib / "copies" / "flower_copy.jpg", lib / "copies" / "china_small.jpg")
    )
    exact = DuplicateGroup("exact", [a, b], 1.0, [path_id(a), path_id(b)])
    near = DuplicateGroup("near", sorted([a, b, small]), 0.5, [path_id(p) for p in sorted([a, b, small])])
    report = index.resolve([exact, near], "move", trash=tmp_path / "t")
    assert report.files == 2 and report.groups == 1  # merged: one keeper for the three
    crossed = [Planned(b, [a]), Planned(a, [b])]  # each the other's copy to keep
    report = index.resolve(crossed, "move", trash=tmp_path / "t")
    assert report.files == 0 and {r for _, r in report.refused} == {"the copy to keep of another group"}


def test_links_for_exact_copies_and_delete(library, tmp_path):
    index, lib = library
    flower = [g for g in index.find_duplicates() if g.kind == "exact"]
    report = index.resolve(flower, "hardlink", trash=tmp_path / "trash", dry_run=False)
    assert report.files == 1
    a, b = os.stat(lib / "2019" / "flower.jpg"), os.stat(lib / "copies" / "flower_copy.jpg")
    assert a.st_ino == b.st_ino and a.st_nlink == 2
    assert all("flower.jpg" not in g for g in group_sets(index))  # links to one file are not duplicates
    near = [g for g in index.find_duplicates(verify=False) if g.kind == "near"]
    refused = index.resolve(near, "symlink", trash=tmp_path / "trash2")
    assert {r for _, r in refused.refused} == {
        f"not the same bytes as {lib / '2019' / 'china.jpg'}: a link would change the picture (use move or delete)"
    }
    index.undo()
    assert os.stat(lib / "copies" / "flower_copy.jpg").st_nlink == 1
    gone = index.resolve(index.find_duplicates(), "delete", trash=tmp_path / "trash3", dry_run=False)
    assert gone.files == 3 and os.listdir(lib / "copies") == [] and tree(tmp_path / "trash3") == {}
    back = index.undo()
    assert back.restored == 0 and len(back.lost) == 3 and back.rows == 0


def test_changed_files_and_the_reference_folder_are_left_alone(library, tmp_path):
    index, lib = library
    small = lib / "copies" / "china_small.jpg"
    os.utime(small, ns=(small.stat().st_atime_ns, small.stat().st_mtime_ns + 10**9))
    report = index.resolve(index.find_duplicates(), "move", trash=tmp_path / "trash")
    assert (str(small), "changed since it was indexed: index it again first") in report.refused
    assert report.files == 2
    archive = lib / "2019"
    found = index.find_duplicates(against=archive)
    assert len(found) == 2
    report = index.resolve(found, "move", trash=tmp_path / "trash", against=archive)
    assert all(not p.startswith(str(archive)) for p, _ in report.refused) and report.files == 2
    index.decide_keep([lib / "copies" / "china_q60.jpg"])
    choice = index.suggest_keeper(next(g for g in index.find_duplicates() if "china" in g.paths[0]))
    assert choice.keep == str(lib / "2019" / "china.jpg")  # still the best copy: a recompressed one never beats it
    assert choice.others == [str(lib / "copies" / "china_small.jpg")]  # and the one to keep is never acted on


KILLED = textwrap.dedent(
    """
    import os, sys
    from poolvec.indexer import ImageIndex
    from poolvec.indexer.review import resolve
    real = resolve._forward
    def forward(step):
        real(step)
        print("moved", flush=True)
        sys.stdin.readline()
    resolve._forward = forward
    index = ImageIndex(sys.argv[1])
    index.resolve(index.find_duplicates(), "move", trash=sys.argv[2], dry_run=False)
    """
)


@pytest.mark.parametrize("then", ["resolve", "undo"])
def test_resolution_killed_mid_way_is_finished_or_undone(library, tmp_path, then):
    index, lib = library
    before_files, before_rows = tree(lib), rows(index)
    index.close()
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(str(tmp_path / "lib.db"))  # its lock, for the child (MILVUS.md)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(tmp_path / "lib.db"), str(tmp_path / "trash")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout.readline().strip() == "moved"  # the first file moved, its row not yet removed
    child.stdin.write("\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "moved"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    index = ImageIndex(tmp_path / "lib.db")
    if then == "resolve":
        report = index.resolve(index.find_duplicates(verify=False), "move", trash=tmp_path / "trash", dry_run=False)
        assert report.resumed
        assert os.listdir(lib / "copies") == [] and len(tree(tmp_path / "trash")) == 3
        assert len(rows(index)) == 4
    else:
        report = index.undo()
        assert report.lost == []
        assert tree(lib) == before_files and rows(index) == before_rows


def test_cli_suggest_resolve_undo_and_decide(library, tmp_path):
    index, lib = library
    db = str(index.uri)
    index.close()
    res = runner.invoke(app, ["dups", "--db", db, "--suggest", "--json"])
    assert res.exit_code == 0, res.output
    items = json.loads(res.stdout)
    china = next(i for i in items if i["keep"].endswith("china.jpg"))
    assert china["derived"][str(lib / "copies" / "china_small.jpg")].startswith("downscaled from")
    res = runner.invoke(app, ["dups", "--db", db, "--resolve", "move", "--trash", str(tmp_path / "t")])
    assert res.exit_code == 0 and "would move 3 files of 2 groups" in res.stdout and "--yes" in res.stdout
    res = runner.invoke(
        app, ["dups", "--db", db, "--resolve", "move", "--trash", str(tmp_path / "t"), "--yes", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["files"] == 3
    res = runner.invoke(app, ["undo", "--db", db])
    assert res.exit_code == 0 and "3 files back in place" in res.stdout
    res = runner.invoke(
        app,
        [
            "decide",
            "not-duplicates",
            str(lib / "2019" / "flower.jpg"),
            str(lib / "copies" / "china_q60.jpg"),
            "--db",
            db,
        ],
    )
    assert res.exit_code == 0 and "1 pairs" in res.stdout
    res = runner.invoke(app, ["decide", "maybe", str(lib / "2019" / "flower.jpg"), "--db", db])
    assert res.exit_code == 2 and "KIND must be one of" in res.stderr
    res = runner.invoke(app, ["dups", "--db", db, "--resolve", "move"])
    assert res.exit_code == 2 and "--trash" in res.stderr


def test_the_server_reviews_through_the_same_core(library, tmp_path):
    from fastapi.testclient import TestClient

    from poolvec.indexer.serve.app import create_app
    from poolvec.indexer.serve.settings import ServeSettings

    index, lib = library
    before = tree(lib)
    app = create_app(index, ServeSettings(token="s3cret", warm_up=False))
    auth = {"Authorization": "Bearer s3cret"}
    with TestClient(app, base_url="http://127.0.0.1") as http:
        assert http.post("/api/undo").status_code == 401  # the token guards every action
        groups = http.get("/api/dups", headers=auth).json()["groups"]
        china = next(g for g in groups if any(p.endswith("china.jpg") for p in g["paths"]))
        ids = [m["id"] for m in china["members"]]
        res = http.get("/api/suggestions", params={"ids": ids}, headers=auth)
        assert res.status_code == 200, res.text
        keep = next(n for n, m in enumerate(china["members"]) if m["path"].endswith("2019/china.jpg"))
        assert res.json()["keep"] == keep and len(res.json()["derived"]) == 2
        res = http.post("/api/decisions", json={"kind": "not-duplicates", "ids": ids}, headers=auth)
        assert res.status_code == 200 and res.json()["stored"] == 3
        assert len(http.get("/api/dups", headers=auth).json()["groups"]) == 1  # decided: not shown again
        res = http.post("/api/resolve", json={"action": "move", "trash": str(tmp_path / "t")}, headers=auth)
        assert res.json()["dry_run"] is True and res.json()["files"] == 1 and tree(lib) == before
        res = http.post("/api/resolve", json={"action": "move", "trash": "relative"}, headers=auth)
        assert res.status_code == 422
        res = http.post(
            "/api/resolve", json={"action": "move", "trash": str(tmp_path / "t"), "dry_run": False}, headers=auth
        )
        assert res.json()["files"] == 1 and not (lib / "copies" / "flower_copy.jpg").exists()
        assert http.get("/api/dups", headers=auth).json()["groups"] == []
        res = http.post("/api/undo", headers=auth)
        assert res.json() == {"restored": 1, "rows": 1, "lost": []} and tree(lib) == before


def regions_with(index: ImageIndex, keeper: str) -> dict[str, tuple[float, ...]]:
    """The matched region the review should outline on each member of ``keeper``'s group (file name → box): from
    the member's verified pair with the keeper, else its verified pair with the most inliers."""
    group = next(g for g in index.find_duplicates() if keeper in map(os.path.basename, g.paths))
    names = {i: os.path.basename(p) for i, p in zip(group.ids, group.paths, strict=True)}  # pairs name ids
    best: dict[str, tuple[bool, int, tuple[float, ...]]] = {}
    for p in group.pairs:
        if not p.verified:
            continue
        for me, other, box in ((p.a, p.b, p.box_a), (p.b, p.a, p.box_b)):
            rank = (names[other] == keeper, p.inliers, tuple(box))
            if box is not None and (names[me] not in best or rank[:2] > best[names[me]][:2]):
                best[names[me]] = rank
    return {name: rank[2] for name, rank in best.items()}


def test_review_in_chromium_decide_apply_undo(library, tmp_path):
    """The page's review mode: the suggested copy marked with its reason, a synchronised zoom, keyboard shortcuts
    (next, not duplicates, apply to all with a confirmation, undo), files and rows checked after each."""
    from test_serve import CHROMIUM, CHROMIUM_ARGS, _browser, _keep, live

    from poolvec.indexer.serve.app import create_app
    from poolvec.indexer.serve.settings import ServeSettings

    sync_playwright = _browser()
    index, lib = library
    before = tree(lib)
    trash = tmp_path / "trash"
    dialogs: list[str] = []
    problems: list[str] = []
    app = create_app(index, ServeSettings(token="t0ken", warm_up=False))
    with live(app) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))

            def until(script: str, timeout: float = 60) -> None:
                deadline = time.monotonic() + timeout
                while not page.evaluate(f"() => {script}"):
                    assert time.monotonic() < deadline, f"timed out waiting for {script}"
                    page.wait_for_timeout(100)

            page.goto(url + "/#token=t0ken")
            page.click(".tab[data-view=dups]")
            until("document.querySelectorAll('#groups section.group').length === 2")
            page.click("#review-open")
            until("document.querySelector('#rv-reason').textContent.startsWith('keep ')")
            until("[...document.querySelectorAll('#rv-members img')].every((i) => i.naturalWidth > 0)")
            reason = page.text_content("#rv-reason")
            group = page.eval_on_selector_all("#rv-members .name", "ns => ns.map(n => n.textContent)")
            if "china.jpg" not in group:  # the flower group came first: on to the china one
                page.keyboard.press("ArrowRight")
                until("document.querySelector('#rv-pos').textContent.startsWith('group 2')")
                until("document.querySelector('#rv-reason').textContent.startsWith('keep china.jpg')")
                reason = page.text_content("#rv-reason")
            assert reason.startswith("keep china.jpg: the others were made from it"), reason
            assert page.text_content("#rv-members figure.keeper .name") == "china.jpg"
            # each member's matched region outlined on its image: its verified pair with the kept copy's box
            drawn = page.eval_on_selector_all(
                "#rv-members figure",
                """fs => Object.fromEntries(fs.map((f) => {
                    const box = f.querySelector(".rv-frame .match-box"), img = f.querySelector("img");
                    if (!box) return [f.querySelector(".name").textContent, null];
                    const b = box.getBoundingClientRect(), i = img.getBoundingClientRect();
                    return [f.querySelector(".name").textContent, [(b.left - i.left) / i.width,
                        (b.top - i.top) / i.height, (b.right - i.left) / i.width, (b.bottom - i.top) / i.height]];
                }))""",
            )
            expected = regions_with(index, "china.jpg")
            assert len(expected) >= 2 and set(drawn) == {"china.jpg", "china_small.jpg", "china_q60.jpg"}, drawn
            for name, box in expected.items():
                assert drawn[name] is not None and np.allclose(drawn[name], box, atol=0.02), (name, drawn, expected)
            page.fill("#rv-zoom", "2")
            page.dispatch_event("#rv-zoom", "input")
            widths = page.eval_on_selector_all("#rv-members .zoom", "bs => bs.map(b => b.scrollWidth / b.clientWidth)")
            assert all(1.9 < w < 2.1 for w in widths), widths
            page.eval_on_selector("#rv-members .zoom", "b => { b.scrollLeft = b.scrollWidth; }")
            page.wait_for_timeout(200)
            ends = page.eval_on_selector_all(
                "#rv-members .zoom", "bs => bs.map(b => b.scrollLeft / (b.scrollWidth - b.clientWidth))"
            )
            assert all(e > 0.95 for e in ends), ends  # one scroll position for all
            shot = tmp_path / "review-group.png"
            page.screenshot(path=str(shot), full_page=True)
            _keep(shot)

            page.focus("#rv-members figure")  # keys typed in a field are the field's
            page.keyboard.press("d")  # the china pictures are not duplicates, say we
            until("document.querySelector('#rv-pos').textContent === 'group 1 of 1'")
            assert group_sets(index) == [{"flower.jpg", "flower_copy.jpg"}]  # stored in Milvus
            page.fill("#rv-trash", str(trash))
            page.focus("#rv-members figure")
            page.keyboard.press("a")  # apply the suggestion to every group left: a confirmation first
            until("document.querySelector('#rv-pos').textContent === 'no groups left'")
            assert dialogs and dialogs[-1].startswith(f"Move 1 files of 1 groups to {trash}")
            assert not (lib / "copies" / "flower_copy.jpg").exists() and len(tree(trash)) == 1
            shot = tmp_path / "review-applied.png"
            page.screenshot(path=str(shot), full_page=True)
            _keep(shot)
            page.keyboard.press("u")
            until("document.querySelector('#rv-pos').textContent === 'group 1 of 1'")
            assert tree(lib) == before and tree(trash) == {}
        finally:
            browser.close()
    assert problems == []
