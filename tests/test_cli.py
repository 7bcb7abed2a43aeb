"""The poolvec CLI: through Typer's CliRunner and as a real console script (exit codes, JSON, errors)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from poolvec.indexer.cli.app import app

runner = CliRunner()
POOLVEC = Path(sys.executable).with_name("poolvec")


def test_index_search_info_json(tmp_path, photos, query_dir):
    db = str(tmp_path / "cli.db")
    res = runner.invoke(app, ["index", str(photos), "--db", db, "--quiet"])
    assert res.exit_code == 0, res.output
    assert "11" in res.stdout
    res = runner.invoke(app, ["search", str(query_dir / "chelsea_edit.jpg"), "-k", "3", "--db", db, "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload[0]["query"].endswith("chelsea_edit.jpg")
    assert [h["rank"] for h in payload[0]["hits"]] == [1, 2, 3]
    assert payload[0]["hits"][0]["path"] == str(photos / "chelsea.jpg")
    assert 0 < payload[0]["hits"][0]["score"] <= 1.0001
    res = runner.invoke(app, ["info", "--db", db, "--json"])
    info = json.loads(res.stdout)
    assert info["count"] == 11 and info["config"]["pooling"]["spec"].startswith("gem(p=3")


def test_partial_exit_code_and_failures_file(tmp_path, photos):
    (photos / "bad.jpg").write_text("<html>not an image</html>")
    failures = tmp_path / "failed.jsonl"
    res = runner.invoke(app, ["index", str(photos), "--db", str(tmp_path / "p.db"), "--failures", str(failures)])
    assert res.exit_code == 1
    lines = failures.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"path": str(photos / "bad.jpg"), "reason": "not a recognised image format"}
    ]
    assert "bad.jpg" in res.stderr


def test_config_mismatch_is_usage_error_one_line(tmp_path, photos):
    db = str(tmp_path / "m.db")
    assert runner.invoke(app, ["index", str(photos), "--db", db, "-q", "--optimize"]).exit_code == 0
    res = runner.invoke(app, ["index", str(photos), "--db", db, "--pooling", "mac | l2", "-q"])
    assert res.exit_code == 2
    assert "another embedding config" in res.stderr and "Traceback" not in res.output
    res = runner.invoke(app, ["index", str(photos), "--db", db, "--pooling", "gem(p=3) | nope"])
    assert res.exit_code == 2 and "nope" in res.stderr


def test_console_script_exit_codes(tmp_path, photos):
    env = {**os.environ, "COLUMNS": "200"}
    db = str(tmp_path / "s.db")
    bad = subprocess.run([POOLVEC, "search", "x.jpg", "--db", db], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "no index at" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not os.path.exists(db)  # a failed command creates nothing
    ok = subprocess.run(
        [POOLVEC, "index", str(photos), "--db", db, "--no-tune"], capture_output=True, text=True, env=env
    )
    assert ok.returncode == 0, ok.stderr
    assert "indexing" not in ok.stderr  # no progress bar when stderr is not a terminal
    hit = subprocess.run(
        [POOLVEC, "search", str(photos / "rocket.jpg"), "--db", db, "-k", "1", "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert json.loads(hit.stdout)[0]["hits"][0]["path"] == str(photos / "rocket.jpg")
    missing = subprocess.run([POOLVEC, "index", str(tmp_path / "nope"), "--db", db], capture_output=True, text=True)
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_search_grid_and_html_render_results(tmp_path, photos, query_dir):
    db = str(tmp_path / "g.db")
    assert runner.invoke(app, ["index", str(photos), "--db", db, "-q"]).exit_code == 0
    grid, page = tmp_path / "sheet.png", tmp_path / "hits.html"
    queries = [str(query_dir / "coffee_edit.jpg"), str(query_dir / "rocket_edit.jpg")]
    res = runner.invoke(app, ["search", *queries, "-k", "4", "--db", db, "--grid", str(grid), "--html", str(page)])
    assert res.exit_code == 0, res.output
    from PIL import Image

    sheet = Image.open(grid)
    assert sheet.size == (6 + 5 * (160 + 6), 6 + 2 * (160 + 34 + 6))  # 2 rows: query + 4 hits each
    text = page.read_text()
    assert text.count("<figure") == 10 and "data:image/jpeg;base64," in text
    assert str(photos / "coffee.jpg") in text


def test_dups_json_and_html_escape_file_names(tmp_path, photos):
    shutil.copy(photos / "china.jpg", photos / "<script>alert(1)<script>.jpg")
    db = str(tmp_path / "d.db")
    assert runner.invoke(app, ["index", str(photos), "--db", db, "-q", "--no-optimize", "--no-tune"]).exit_code == 0
    page = tmp_path / "dups.html"
    res = runner.invoke(app, ["dups", "--db", db, "--json", "--html", str(page)])
    assert res.exit_code == 0, res.output
    groups = json.loads(res.stdout)
    assert groups[0]["kind"] == "exact" and len(groups[0]["paths"]) == 2
    html_text = page.read_text()
    assert "<script>alert" not in html_text and "&lt;script&gt;alert(1)&lt;script&gt;.jpg" in html_text


def test_embed_writes_vectors_and_paths(tmp_path, photos, extractor):
    out_file = tmp_path / "v.npy"
    (photos / "bad.jpg").write_bytes(b"\x00" * 10)
    res = runner.invoke(app, ["embed", str(photos), "--out", str(out_file)])
    assert res.exit_code == 1  # one file skipped
    import numpy as np

    vectors = np.load(out_file)
    rows = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rows] == list(range(11))
    names = [r["path"] for r in rows]
    assert vectors.shape == (11, 1280) and len(names) == 11 and str(photos / "bad.jpg") not in names
    np.testing.assert_allclose(
        vectors[names.index(str(photos / "flower.jpg"))], extractor.embed(photos / "flower.jpg")[0], atol=1e-5
    )


def test_pooling_command_lists_methods_with_dimensions():
    res = runner.invoke(app, ["pooling", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    dims = {m["name"]: m["out_dim"] for m in data["methods"]}
    assert data["channels"] == 1280 and dims["gem"] == 1280 and dims["catavgmax"] == 2560
    assert dims["spp"] == 1280 * (1 + 4 + 16)


def test_index_json_prune_reroot_drop(tmp_path, photos):
    db = str(tmp_path / "j.db")
    res = runner.invoke(app, ["index", str(photos), "--db", db, "--json"])
    assert json.loads(res.stdout)["added"] == 11
    (photos / "retina.jpg").unlink()
    res = runner.invoke(app, ["index", str(photos), "--db", db, "--json", "--prune"])
    summary = json.loads(res.stdout)
    assert (summary["removed"], summary["unchanged"], summary["count"]) == (1, 10, 10)
    moved = tmp_path / "moved"
    shutil.move(photos, moved)
    assert runner.invoke(app, ["reroot", str(photos), str(moved), "--db", db]).exit_code == 0
    res = runner.invoke(app, ["index", str(moved), "--db", db, "--json"])
    assert json.loads(res.stdout)["unchanged"] == 10
    assert runner.invoke(app, ["drop", "--db", db], input="n\n").exit_code == 2
    res = runner.invoke(app, ["drop", "--db", db, "--yes"])
    assert res.exit_code == 0 and "removed the database folder" in res.stdout
    assert not os.path.exists(db)  # it held nothing else
    res = runner.invoke(app, ["info", "--db", db, "--json"])  # as `search` would: there is no index
    assert res.exit_code == 2 and res.stdout == "" and f"no index at {db}" in res.stderr
    assert not os.path.exists(db)


def test_shards_split_one_job(tmp_path, photos):
    db = str(tmp_path / "sh.db")
    counts = []
    for i in range(3):
        res = runner.invoke(app, ["index", str(photos), "--db", db, "--json", "--shard", f"{i}/3"])
        counts.append(json.loads(res.stdout)["added"])
    assert sum(counts) == 11 and max(counts) < 11
    assert runner.invoke(app, ["index", str(photos), "--db", db, "--shard", "3/3"]).exit_code == 2


def test_second_writer_on_a_lite_db_exits_3_fast(held_lite_db, photos):
    res = runner.invoke(app, ["index", str(photos), "--db", held_lite_db, "-q"])
    assert res.exit_code == 3
    assert "another process holds the index" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_index_type_options(tmp_path, photos):
    db = str(tmp_path / "ivf.db")
    res = runner.invoke(
        app, ["index", str(photos), "--db", db, "-q", "--index-type", "IVF_FLAT", "--index-params", '{"nlist": 4}']
    )
    assert res.exit_code == 0, res.output
    info = json.loads(runner.invoke(app, ["info", "--db", db, "--json"]).stdout)
    assert info["vector_index"]["kind"] == "IVF_FLAT" and info["vector_index"]["params"] == {"nlist": 4}
    res = runner.invoke(app, ["index", str(photos), "--db", str(tmp_path / "pq.db"), "--index-type", "IVF_PQ"])
    assert res.exit_code == 2 and "Milvus Lite cannot build a IVF_PQ index" in res.stderr
    bad = runner.invoke(app, ["index", str(photos), "--db", str(tmp_path / "b.db"), "--index-params", "[1]"])
    assert bad.exit_code == 2 and "JSON object" in bad.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["search", "-k", "0", "x.jpg"],
        ["serve", "--port", "99999"],
        ["drop", "--json"],
        ["nosuch"],
        ["search"],
        ["index", "--pooling"],
    ],
)
def test_usage_mistakes_are_one_line_and_exit_2(args):
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr  # not Typer's framed box
    assert lines[0].startswith("error: ") and "--help`)" in lines[0]


@pytest.mark.parametrize("token", ["", "   ", "pässwörd", "two words", "tab\there"])
def test_serve_refuses_a_token_that_would_open_it_or_never_match(token, tmp_path):
    db = tmp_path / "none.db"
    res = runner.invoke(app, ["serve", "--db", str(db), "--token", token])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1 and "--token" in res.stderr
    assert not db.exists()  # refused before anything was opened
