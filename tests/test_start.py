"""What a new user meets first: an instant CLI, help that reads well, one-line errors with README's exit codes,
nothing left behind by a failed command, and ``import poolvec``."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from poolvec.indexer.cli.app import EXIT_CODES, app

ROOT = Path(__file__).resolve().parents[1]
POOLVEC = Path(sys.executable).with_name("poolvec")
runner = CliRunner()
HEAVY = ("torch", "pymilvus", "milvus_lite", "timm", "torchvision", "PIL", "numpy")

# Runs the console script's entry point in-process and reports which heavy libraries it imported.
PROBE = textwrap.dedent(
    """
    import json, sys
    from poolvec.indexer.cli.app import main
    sys.argv = ["poolvec", *sys.argv[1:]]
    try:
        main()
    except SystemExit as e:
        code = e.code
    heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
    print(json.dumps({{"code": code, "heavy": heavy}}), file=sys.__stderr__)
    """
).format(HEAVY=HEAVY)


def probe(*args: str, cwd: Path = ROOT) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=cwd)
    return json.loads(proc.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["-h"],
        ["--version"],
        ["index", "--help"],
        ["pooling"],
        ["index", "--bogus"],
        ["search", "x.jpg", "--db", "myindex"],
        ["index", "no/such/folder"],
    ],
)
def test_help_version_pooling_and_usage_errors_load_no_model_and_no_milvus(args, tmp_path):
    result = probe(*args, cwd=tmp_path)
    assert result["heavy"] == [], result
    assert result["code"] in (0, 2, None)
    assert list(tmp_path.iterdir()) == []  # and create nothing


def test_a_held_database_is_reported_before_any_model_loads(held_lite_db, photos):
    result = probe("index", str(photos), "--db", held_lite_db)
    assert result["code"] == 3 and "torch" not in result["heavy"]


def test_pooling_alone_does_not_load_the_compiler():
    # torch._dynamo costs ~1 s of every start; only torch.compile needs it (torchvision, hence a backbone, pulls it
    # in anyway, but pooling your own feature maps must not).
    code = "import sys, torch, pooling; pooling.build('rmac | l2')(torch.rand(1, 8, 9, 7))"
    code += "; print('torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False"]


def test_the_console_script_ends_fast_with_its_status_and_its_output(photo_dir, tmp_path):
    # main() leaves with os._exit after the exit handlers registered by the command: its status, its output and
    # Lite's release of the database must survive that.
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "coffee.jpg").write_bytes((photo_dir / "coffee.jpg").read_bytes())
    (tmp_path / "in" / "broken.jpg").write_bytes(b"not an image")
    script = "import sys; sys.argv[0] = 'poolvec'; from poolvec.indexer.cli.app import main; main()"

    def poolvec(*args: str) -> subprocess.CompletedProcess:
        db = str(tmp_path / "t.db")
        return subprocess.run([sys.executable, "-c", script, *args, "--db", db], capture_output=True, text=True)

    index = poolvec("index", str(tmp_path / "in"), "--no-tune", "--json")
    assert index.returncode == 1  # partial: one file skipped
    report = json.loads(index.stdout)  # all of stdout arrived
    assert report["added"] == 1 and [Path(f["path"]).name for f in report["failed"]] == ["broken.jpg"]
    search = poolvec("search", str(tmp_path / "in" / "coffee.jpg"), "--json", "-k", "50")
    assert search.returncode == 0  # Milvus Lite's own exit handler released the database on the way out
    hits = json.loads(search.stdout)[0]["hits"]
    assert [Path(h["path"]).name for h in hits] == ["coffee.jpg"]
    missing = poolvec("search", str(tmp_path / "nope.jpg"))
    assert missing.returncode == 2


def test_help_reads_like_typers_examples():
    top = " ".join(runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout.split())
    for code, text in EXIT_CODES.items():
        assert f"{code} {text.split(' (')[0].split(';')[0]}" in top  # README's exit-code table
    page = runner.invoke(app, ["index", "-h"], env={"COLUMNS": "200"}).stdout
    assert "<bool>" not in page and "<list[" not in page and "<str>" not in page
    assert "--db,--uri" in page and "PATH|URL" in page and "FOLDER" in page
    where = runner.invoke(app, ["search", "--help"], env={"COLUMNS": "200"}).stdout
    assert "path, root, size, mtime_ns, width, height, sha256" in " ".join(where.split())


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.startswith("poolvec ")


def test_import_poolvec_gives_the_public_api():
    code = "import sys, poolvec; assert 'torch' not in sys.modules; from poolvec import ImageIndex, Extractor; "
    code += "print(poolvec.__version__, ImageIndex.__module__, Extractor.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1:] == ["poolvec.indexer.index", "poolvec.extractor.extractor"]


def test_lite_database_names_and_failed_commands_leave_nothing(tmp_path, photos, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["index", str(photos), "--db", "myindex"])
    assert res.exit_code == 2 and "ends in .db" in res.stderr and "'myindex.db'" in res.stderr
    for args in (
        ["search", str(photos / "coffee.jpg"), "--db", "typo.db"],
        ["dups", "--db", "typo.db"],
        ["index", "nowhere", "--db", "typo.db"],
        ["index", str(photos), "--db", "typo.db", "--pooling", "gem(p=3) | nope"],
        ["drop", "--db", "typo.db", "--yes"],
    ):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert len(res.stderr.strip().splitlines()) == 1, (args, res.stderr)
    assert list(tmp_path.iterdir()) == [photos]


@pytest.fixture(scope="module")
def small_db(tmp_path_factory, photo_dir):
    db = str(tmp_path_factory.mktemp("small") / "s.db")
    res = runner.invoke(app, ["index", str(photo_dir), "--db", db, "-q", "--no-tune"])
    assert res.exit_code == 0, res.output
    return db


def test_empty_results_say_so(small_db, photo_dir):
    query = str(photo_dir / "coffee.jpg")
    res = runner.invoke(app, ["search", query, "--db", small_db, "--min-score", "1.5"])
    assert res.exit_code == 0 and "no hits" in res.stdout
    res = runner.invoke(app, ["search", query, "--db", small_db, "--under", "/nowhere", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)[0]["hits"] == []
    res = runner.invoke(app, ["search", query, "--db", small_db, "--qe", "-1"])
    assert res.exit_code == 2


def test_where_is_a_usage_error_and_cannot_escape_the_other_filters(small_db, photo_dir):
    query = str(photo_dir / "coffee.jpg")
    for expr, why in [
        ("1==1) or (1==1", "never opened"),
        ("colour == 3", "unknown field 'colour'"),
        ("(" * 500 + "size > 0" + ")" * 500, "nest deeper"),
        ("width >>> 3", "Milvus refused"),
    ]:
        res = runner.invoke(app, ["search", query, "--db", small_db, "--under", "/nowhere", "--where", expr])
        assert res.exit_code == 2, (expr, res.output)
        assert why in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    res = runner.invoke(app, ["search", query, "--db", small_db, "--where", "width >= 600", "--json"])
    hits = json.loads(res.stdout)[0]["hits"]
    assert hits and all(h["width"] >= 600 for h in hits)


def test_reroot_of_a_folder_that_is_not_indexed_says_so(small_db, tmp_path):
    res = runner.invoke(app, ["reroot", str(tmp_path / "nowhere"), str(tmp_path / "else"), "--db", small_db])
    assert res.exit_code == 2 and "nothing is indexed under" in res.stderr


def test_config_mismatch_names_the_specs_as_written(small_db, photo_dir):
    res = runner.invoke(app, ["index", str(photo_dir), "--db", small_db, "--pooling", "mac | l2"])
    assert res.exit_code == 2
    assert "pooling: gem | l2 | lw | l2 → mac | l2" in res.stderr and '"name"' not in res.stderr


def test_index_type_of_an_existing_collection_is_not_silently_ignored(small_db, photo_dir):
    res = runner.invoke(app, ["index", str(photo_dir), "--db", small_db, "--index-type", "FLAT"])
    assert res.exit_code == 2 and "keeps its vector index" in res.stderr
    res = runner.invoke(app, ["index", str(photo_dir), "--db", small_db, "--index-type", "HNSW", "-q"])
    assert res.exit_code == 0


def test_unexpected_errors_have_their_own_code_and_one_line(small_db, photo_dir, monkeypatch):
    from poolvec.indexer.index import ImageIndex

    def broken(self, *args, **kwargs):
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(ImageIndex, "search_many", broken)
    res = runner.invoke(app, ["search", str(photo_dir / "coffee.jpg"), "--db", small_db])
    assert res.exit_code == 4 and len(res.stderr.strip().splitlines()) == 1
    assert "RuntimeError: something nobody expected" in res.stderr and "--debug" in res.stderr
    res = runner.invoke(app, ["--debug", "search", str(photo_dir / "coffee.jpg"), "--db", small_db])
    assert isinstance(res.exception, RuntimeError)  # --debug lets the traceback through


def test_a_dead_server_is_one_line_on_a_real_terminal_stream():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    proc = subprocess.run(
        [POOLVEC, "info", "--uri", f"http://127.0.0.1:{port}"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 3 and proc.stderr.count("\n") == 1, proc.stderr
    assert "cannot reach Milvus" in proc.stderr
