"""`poolvec serve`: the HTTP API on a real Milvus Lite index of real photos, served by uvicorn on 127.0.0.1, and
the page driven in headless Chromium (Debian's, through Playwright).

One index for the module: the 11 sample photos plus an exact copy of coffee (named with a comma, for the CSV
export), an exact copy of rocket named like an HTML injection, and a half-size re-encoded astronaut (a
near-duplicate).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from PIL import Image
from typer.testing import CliRunner

from poolvec.indexer import ImageIndex, IndexerError
from poolvec.indexer.cli.app import app as cli
from poolvec.indexer.serve.app import create_app
from poolvec.indexer.serve.guard import host_name as _host_name
from poolvec.indexer.serve.running import ServeSettings, bind, is_loopback, page_url, uvicorn_config
from poolvec.indexer.serve.worker import IndexWorker, Query

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
XSS = "<img src=x onerror=alert(1)>.jpg"
COPY = "coffee, copy.jpg"
SMALL = "astronaut_small.jpg"
MAX_UPLOAD = 2 << 20
#: Photos with an exact copy in the served folder: either file may come first (equal vectors, equal scores).
TWINS = {"coffee": {"coffee.jpg", COPY}, "rocket": {"rocket.jpg", XSS}}
CHROMIUM = "/usr/bin/chromium"
POOLVEC = Path(sys.executable).with_name("poolvec")


@contextlib.contextmanager
def live(app, host: str = "127.0.0.1", settings: ServeSettings | None = None):
    """Run ``app`` with uvicorn in a thread on a free loopback port, configured as ``poolvec serve`` runs it; yields
    its base URL."""
    sock = bind(host, 0)
    server = uvicorn.Server(uvicorn_config(app, settings or ServeSettings()))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@dataclass
class Served:
    url: str
    db: str
    folder: Path
    index: ImageIndex
    app: object

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.url + path, headers={**AUTH, **kw.pop("headers", {})}, timeout=60, **kw)

    def upload(self, path: Path | None = None, *, data: bytes | None = None, name: str | None = None, **params):
        content = data if data is not None else path.read_bytes()
        files = {"image": (name or path.name, content, "application/octet-stream")}
        return httpx.post(self.url + "/api/search", files=files, params=params, headers=AUTH, timeout=60)


@pytest.fixture(scope="module")
def served(tmp_path_factory, photo_dir, extractor):
    folder = tmp_path_factory.mktemp("served") / "photos"
    shutil.copytree(photo_dir, folder)
    shutil.copyfile(folder / "coffee.jpg", folder / COPY)
    shutil.copyfile(folder / "rocket.jpg", folder / XSS)
    with Image.open(folder / "astronaut.jpg") as img:
        img.resize((img.width // 2, img.height // 2), Image.Resampling.LANCZOS).save(folder / SMALL, quality=75)
    db = str(folder.parent / "served.db")
    index = ImageIndex(db, extractor=extractor, tuning=False)
    assert index.add_folder(folder).added == 14
    app = create_app(index, ServeSettings(token=TOKEN, max_upload_bytes=MAX_UPLOAD))
    with live(app) as url:
        yield Served(url, db, folder, index, app)


def _detail(response: httpx.Response) -> str:
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail, detail
    return detail


# -- the API -------------------------------------------------------------------------------------------------
def test_upload_finds_the_original_first_as_the_cli_does(served, query_dir):
    res = served.upload(query_dir / "chelsea_edit.jpg", k=5)
    assert res.status_code == 200, res.text
    got = res.json()
    assert got["query"] == "chelsea_edit.jpg"
    assert got["hits"][0]["path"] == str(served.folder / "chelsea.jpg")
    # the same object `poolvec search --json` prints for the same file
    args = ["search", str(query_dir / "chelsea_edit.jpg"), "-k", "5", "--db", served.db, "--json"]
    cli_out = CliRunner().invoke(cli, args)
    assert cli_out.exit_code == 0, cli_out.output
    (expected,) = json.loads(cli_out.stdout)
    assert [set(h) for h in got["hits"]] == [set(h) for h in expected["hits"]]
    for ours, theirs in zip(got["hits"], expected["hits"], strict=True):
        assert ours["score"] == pytest.approx(theirs["score"], abs=1e-5)
        assert {k: v for k, v in ours.items() if k != "score"} == {k: v for k, v in theirs.items() if k != "score"}


def test_search_by_stored_id_uses_its_vector(served):
    first = served.upload(served.folder / "flower.jpg", k=1).json()["hits"][0]
    res = served.get("/api/search", params={"id": first["id"], "k": 3})
    assert res.status_code == 200, res.text
    got = res.json()
    assert got["query"] == str(served.folder / "flower.jpg")
    assert got["hits"][0]["id"] == first["id"] and got["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert [h["rank"] for h in got["hits"]] == [1, 2, 3]
    missing = served.get("/api/search", params={"id": 12345})
    assert missing.status_code == 404 and "no image with id 12345" in _detail(missing)


def test_k_min_score_and_folder_filters(served, query_dir):
    query = query_dir / "coffee_edit.jpg"
    hits = served.upload(query, k=3).json()["hits"]
    assert len(hits) == 3 and {Path(h["path"]).name for h in hits[:2]} == {"coffee.jpg", COPY}
    cut = hits[2]["score"] + 1e-6  # above the third: only the two copies of coffee (equal bytes, equal scores) pass
    strong = served.upload(query, k=10, min_score=cut).json()["hits"]
    assert [h["id"] for h in strong] == [h["id"] for h in hits[:2]]
    assert served.upload(query, under=str(served.folder / "nowhere")).json()["hits"] == []
    assert len(served.upload(query, under=str(served.folder), k=14).json()["hits"]) == 14
    relative = served.upload(query, under="photos")
    assert relative.status_code == 422 and "absolute" in _detail(relative)
    too_many = served.upload(query, k=1000)
    assert too_many.status_code == 422 and _detail(too_many).startswith("k:")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bad_uploads_get_a_4xx_with_one_line(served, tmp_path):
    jpeg = (served.folder / "china.jpg").read_bytes()
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, "PNG")  # 100 Mpixel declared, 12 KB on disk
    cases = [
        (dict(data=b"<html>no</html>", name="notes.txt"), 415, "notes.txt: not a recognised image format"),
        (dict(data=jpeg[: len(jpeg) // 2], name="half.jpg"), 422, "half.jpg: cannot decode"),
        (dict(data=bomb.getvalue(), name="bomb.png"), 413, "bomb.png: too many pixels"),
        (dict(data=b"", name="empty.jpg"), 400, "empty.jpg: empty upload"),
        (dict(data=b"\xff\xd8\xff" + os.urandom(MAX_UPLOAD), name="big.jpg"), 413, "too large"),
    ]
    for kwargs, status, text in cases:
        res = served.upload(**kwargs)
        assert res.status_code == status, (kwargs["name"], res.status_code, res.text)
        assert text in _detail(res), (kwargs["name"], res.text)
    multipart = {**AUTH, "content-type": "multipart/form-data; boundary=b"}
    declared = httpx.post(served.url + "/api/search", content=b"x" * (MAX_UPLOAD + (1 << 20)), headers=multipart)
    assert declared.status_code == 413 and "request too large" in _detail(declared)  # refused before reading

    def chunks():  # no Content-Length: counted while it arrives
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
        yield from (b"\xff" * (1 << 16) for _ in range(MAX_UPLOAD >> 15))
        yield b"\r\n--b--\r\n"

    streamed = httpx.post(served.url + "/api/search", content=chunks(), headers=multipart)
    assert streamed.status_code == 413 and "request too large" in _detail(streamed)
    missing = httpx.post(served.url + "/api/search", data={"other": "x"}, headers=AUTH)
    assert missing.status_code == 422 and _detail(missing) == "image: Field required"
    assert served.upload(served.folder / "china.jpg").status_code == 200  # the server goes on
    assert os.listdir(served.app.state.upload_dir) == []  # no upload left behind


def test_token_is_required_on_the_api_only(served):
    assert httpx.get(served.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(served.url + "/").status_code == 200  # the page holds no data
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        res = httpx.get(served.url + "/api/info", headers=headers)
        assert res.status_code == 401 and "token" in _detail(res)
        assert res.headers["www-authenticate"] == "Bearer"
    assert served.get("/api/info").status_code == 200


def test_thumbnails_by_id_only_from_indexed_files(served):
    hit = served.upload(served.folder / "astronaut.jpg", k=1).json()["hits"][0]
    res = served.get(f"/api/images/{hit['id']}/thumbnail")
    assert res.status_code == 200 and res.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(res.content)) as img:
        assert img.format == "JPEG" and max(img.size) == 256
        assert img.width / img.height == pytest.approx(hit["width"] / hit["height"], rel=0.01)
    again = served.get(f"/api/images/{hit['id']}/thumbnail", headers={"If-None-Match": res.headers["etag"]})
    assert again.status_code == 304
    made = served.app.state.thumbnails.made
    assert served.get(f"/api/images/{hit['id']}/thumbnail").content == res.content
    assert served.app.state.thumbnails.made == made  # made once, then from the cache
    assert served.get(f"/api/images/{hit['id']}/thumbnail", params={"size": 300}).status_code == 422
    assert served.get("/api/images/12345/thumbnail").status_code == 404
    assert served.get(f"/api/images/{1 << 64}/thumbnail").status_code == 422
    for probe in ("/api/images/..%2F..%2Fetc%2Fpasswd/thumbnail", "/api/images/%2Fetc%2Fpasswd/thumbnail"):
        assert served.get(probe).status_code in (404, 422)
    moved = served.folder / "retina.jpg"
    rid = served.upload(moved, k=1).json()["hits"][0]["id"]
    moved.rename(moved.with_suffix(".bak"))
    try:
        gone = served.get(f"/api/images/{rid}/thumbnail")
        assert gone.status_code == 404 and "moved or deleted" in _detail(gone)
    finally:
        moved.with_suffix(".bak").rename(moved)
    assert served.get(f"/api/images/{rid}/thumbnail").status_code == 200


def test_host_guard_and_security_headers(served):
    evil = httpx.get(served.url + "/api/info", headers={**AUTH, "Host": "attacker.example"})
    assert evil.status_code == 421 and "loopback" in _detail(evil)
    page = httpx.get(served.url + "/", headers={"Host": "localhost"})
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "'unsafe-inline'" not in page.headers["content-security-policy"]


def test_duplicates_match_the_cli(served):
    res = served.get("/api/dups")
    assert res.status_code == 200, res.text
    got = res.json()
    assert got["normalized"] is True and got["verified"] is True and got["threshold"] == got["default_threshold"] == 0
    kinds = [g["kind"] for g in got["groups"]]
    assert kinds == sorted(kinds, key=lambda k: k != "exact")  # exact copies first
    by_names = {frozenset(Path(p).name for p in g["paths"]): g for g in got["groups"]}
    assert by_names[frozenset({"coffee.jpg", COPY})]["kind"] == "exact"
    assert by_names[frozenset({"rocket.jpg", XSS})]["kind"] == "exact"
    near = next(g for names, g in by_names.items() if {"astronaut.jpg", SMALL} <= names)
    assert near["kind"] == "near"
    (pair,) = [
        p for p in near["pairs"] if {near["paths"][p["a"]], near["paths"][p["b"]]} >= {str(served.folder / SMALL)}
    ]
    assert pair["verified"] is True and pair["inliers"] >= 15 and len(pair["box_a"]) == len(pair["box_b"]) == 4
    for group in got["groups"]:
        assert [m["path"] for m in group["members"]] == group["paths"]
        for m in group["members"]:
            with Image.open(m["path"]) as img:
                assert (m["width"], m["height"]) == img.size and m["size"] == os.path.getsize(m["path"])
    cli_out = CliRunner().invoke(cli, ["dups", "--db", served.db, "--json"])
    expected = json.loads(cli_out.stdout)
    assert [(g["kind"], g["paths"]) for g in got["groups"]] == [(g["kind"], g["paths"]) for g in expected]
    assert got["total"] == len(got["groups"]) >= 3
    paged = served.get("/api/dups", params={"offset": 1, "limit": 2}).json()
    assert paged["total"] == got["total"] and paged["groups"] == got["groups"][1:3]
    assert served.get("/api/dups", params={"offset": got["total"]}).json()["groups"] == []
    assert served.get("/api/dups", params={"limit": 0}).status_code == 422
    strict = served.get("/api/dups", params={"threshold": 0.99}).json()
    assert {g["kind"] for g in strict["groups"]} == {"exact"}
    raw = served.get("/api/dups", params={"normalize": "false"}).json()
    assert raw["normalized"] is False and raw["threshold"] == 0.3
    unverified = served.get("/api/dups", params={"verify": "false"}).json()
    assert unverified["verified"] is False and unverified["threshold"] == 0.15
    assert all(p["verified"] is None for g in unverified["groups"] for p in g["pairs"])
    raw = served.get("/api/dups", params={"normalize": "false", "verify": "false"}).json()
    assert raw["threshold"] == 0.5
    bad = served.get("/api/dups", params={"threshold": 5})
    assert bad.status_code == 422 and "threshold must be in" in _detail(bad)
    for nonsense in ("nan", "inf", "-inf"):  # a bad parameter is 422 on every route (README's table)
        bad = served.get("/api/dups", params={"threshold": nonsense})
        assert bad.status_code == 422 and "threshold must be in" in _detail(bad), nonsense


def test_a_request_that_stops_half_way_is_closed(served):
    settings = ServeSettings(token=TOKEN, request_timeout=1.5, warm_up=False)
    app = create_app(served.index, settings)
    with live(app, settings=settings) as url:
        port = int(url.rsplit(":", 1)[1])
        stalled = []
        for partial in (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"", POST_HALF):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(partial)
            stalled.append(sock)
        started = time.monotonic()
        for sock in stalled:
            sock.settimeout(10)
            assert sock.recv(1024) == b""  # closed by the server, no answer
            sock.close()
        assert time.monotonic() - started < 5
        assert httpx.get(url + "/healthz").status_code == 200  # whole requests still answered
        slow = httpx.post(  # a slow answer is not cut: the deadline is for receiving the request
            url + "/api/search", files={"image": ("q.jpg", b"x" * 10)}, headers=AUTH, timeout=30
        )
        assert slow.status_code in (415, 422)


#: A search upload whose body stops half-way.
POST_HALF = (
    b"POST /api/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    b'Content-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n\r\n'
)


def test_info_and_openapi(served):
    info = served.get("/api/info").json()
    assert info["count"] == 14 and info["dim"] == 1280 and info["config"]["pooling"]["spec"].startswith("gem(p=3")
    assert "state" not in json.dumps(info["config"])  # fitted parameters left out (megabytes)
    assert info["server"]["token_required"] is True and info["server"]["max_upload_bytes"] == MAX_UPLOAD
    spec = httpx.get(served.url + "/openapi.json").json()
    assert set(spec["paths"]["/api/search"]) == {"get", "post"}
    for path in ("/api/dups", "/api/info", "/api/images/{image_id}/thumbnail", "/healthz"):
        assert path in spec["paths"]
    docs = httpx.get(served.url + "/docs").text
    assert "/static-offline-docs/swagger-ui-bundle.js" in docs and "cdn." not in docs
    assert httpx.get(served.url + "/static-offline-docs/swagger-ui-bundle.js").status_code == 200


def test_concurrent_uploads_each_get_their_own_answer(served, query_dir):
    names = ["chelsea", "coffee", "rocket", "china", "flower", "retina", "hubble_deep_field", "immunohistochemistry"]
    with ThreadPoolExecutor(len(names)) as pool:
        answers = list(pool.map(lambda n: served.upload(query_dir / f"{n}_edit.jpg", k=2), names))
    for name, res in zip(names, answers, strict=True):
        assert res.status_code == 200, res.text
        assert Path(res.json()["hits"][0]["path"]).name in TWINS.get(name, {name + ".jpg"}), (name, res.text)


def test_queries_waiting_together_share_one_embedding_pass(served, query_dir):
    names = ["chelsea", "coffee", "china", "flower", "retina", "rocket"]

    async def run(batched: bool):
        worker = IndexWorker(served.index)
        await worker.start(warm_up=False)
        try:
            queries = [Query(source=str(query_dir / f"{n}_edit.jpg"), k=3) for n in names]
            if batched:
                results = await asyncio.gather(*(worker.search(q) for q in queries))
            else:
                results = [await worker.search(q) for q in queries]
            return results, worker.snapshot()
        finally:
            await worker.stop()

    together, stats = asyncio.run(run(batched=True))
    assert stats["passes"] == 1 and stats["largest_pass"] == len(names)
    alone, stats = asyncio.run(run(batched=False))
    assert stats["passes"] == len(names)
    for name, (_, hits), (_, ref) in zip(names, together, alone, strict=True):
        assert Path(hits[0].path).name in TWINS.get(name, {name + ".jpg"})
        assert {h.id for h in hits} == {h.id for h in ref}  # batch-mates change nothing
        assert [h.score for h in hits] == pytest.approx([h.score for h in ref], abs=1e-5)


def test_serve_refuses_an_empty_index_and_a_taken_port(tmp_path):
    empty = CliRunner().invoke(cli, ["serve", "--db", str(tmp_path / "empty.db")])
    assert empty.exit_code == 2 and "no index at" in empty.stderr and len(empty.stderr.strip().splitlines()) == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(IndexerError, match=r"cannot listen on 127\.0\.0\.1"):
            bind("127.0.0.1", taken.getsockname()[1])


def test_address_helpers():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("example.org")
    assert _host_name("[::1]:8765") == "::1" and _host_name("LocalHost:80") == "localhost"
    assert _host_name("127.0.0.1") == "127.0.0.1"
    assert page_url("0.0.0.0", 9000, "t") == "http://127.0.0.1:9000/#token=t"
    assert page_url("::1", 8765) == "http://[::1]:8765/"


def test_serve_on_each_backend(db, photos, query_dir, extractor):
    """The same server over Milvus Lite and (in tests/test_server.py's inner run) a real Milvus server."""
    for extra in photos.iterdir():
        if extra.stem not in ("chelsea", "coffee", "rocket", "astronaut"):
            extra.unlink()
    odd = os.fsencode(photos) + b"/caf\xe9 \x1b.jpg"  # not UTF-8, with a control character: stored losslessly
    shutil.copyfile(photos / "coffee.jpg", odd)
    index = ImageIndex(db, extractor=extractor, tuning=False)
    index.add_folder(photos)
    with live(create_app(index)) as url:
        files = {"image": ("q.jpg", (query_dir / "rocket_edit.jpg").read_bytes())}
        hits = httpx.post(url + "/api/search", files=files, params={"k": 4}, timeout=60).json()["hits"]
        assert Path(hits[0]["path"]) == photos / "rocket.jpg" and len(hits) == 4
        by_id = httpx.get(url + "/api/search", params={"id": hits[0]["id"], "k": 1}, timeout=60).json()
        assert by_id["hits"][0]["id"] == hits[0]["id"]
        thumb = httpx.get(url + f"/api/images/{hits[0]['id']}/thumbnail", params={"size": 128}, timeout=60)
        assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).size[0] == 128
        assert httpx.get(url + "/api/info", timeout=60).json()["count"] == 5
        files = {"image": ("q.jpg", (query_dir / "coffee_edit.jpg").read_bytes())}
        coffee = httpx.post(url + "/api/search", files=files, params={"k": 2}, timeout=60).json()["hits"]
        (named,) = [h for h in coffee if "path_bytes" in h]
        assert base64.b64decode(named["path_bytes"]) == odd and named["path"].endswith("caf\\xe9 \\x1b.jpg")
        assert httpx.get(url + f"/api/images/{named['id']}/thumbnail", timeout=60).status_code == 200
        dups = httpx.get(url + "/api/dups", timeout=60).json()["groups"]
        exact = next(g for g in dups if g["kind"] == "exact")
        assert odd in [base64.b64decode(b) for b in exact["paths_bytes"] if b]
        assert any("path_bytes" in m for m in exact["members"])


# -- the command -----------------------------------------------------------------------------------------------
def test_poolvec_serve_command(tmp_path, photo_dir, query_dir):
    folder = tmp_path / "few"
    folder.mkdir()
    for name in ("chelsea.jpg", "coffee.jpg", "rocket.jpg"):
        shutil.copyfile(photo_dir / name, folder / name)
    db = str(tmp_path / "cmd.db")
    env = {**os.environ, "COLUMNS": "200"}
    made = subprocess.run([POOLVEC, "index", str(folder), "--db", db, "--no-tune", "-q"], env=env, timeout=300)
    assert made.returncode == 0
    command = [POOLVEC, "serve", "--db", db, "--port", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert "(3 images) at http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = line.rsplit(" at ", 1)[1].strip().rstrip("/")
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.2)
        files = {"image": ("q.jpg", (query_dir / "coffee_edit.jpg").read_bytes())}
        hits = httpx.post(url + "/api/search", files=files, timeout=60).json()["hits"]
        assert Path(hits[0]["path"]) == folder / "coffee.jpg"
        assert httpx.get(url + "/").text.startswith("<!doctype html>")
        proc.send_signal(signal.SIGTERM)  # what systemd and `docker stop` send: a graceful stop, as Ctrl-C
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- the page, in a real browser -------------------------------------------------------------------------------
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Drops a file the way a person's drag and drop does: a DataTransfer holding a File, on the drop zone.
DROP = """async ({b64, name}) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], name, {type: "image/jpeg"}));
    return data;
}"""


def _keep(shot: Path) -> None:
    """Copy a screenshot to $POOLVEC_ARTIFACTS, where CI collects test artefacts."""
    target = os.environ.get("POOLVEC_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / shot.name)


def _browser():
    """Playwright and Debian's Chromium, or a skip saying what is missing (a failure under CI, which installs both)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "playwright is not installed (pip install -e '.[test]')"
    else:
        if os.path.exists(CHROMIUM):
            return sync_playwright
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(problem)
    pytest.skip(problem)


def pair_of(badge, until, shot: Path | None = None) -> None:
    """Click a verified match's badge: the two images side by side, each with its matched region outlined."""
    page = badge.page
    badge.click()
    until("document.querySelector('#pair-dialog').open")
    until("[...document.querySelectorAll('#pair-dialog img')].every((i) => i.naturalWidth > 0)")
    boxes = page.eval_on_selector_all(
        "#pair-dialog .match-box",
        "bs => bs.map(b => { const r = b.getBoundingClientRect();"
        " const f = b.parentElement.getBoundingClientRect(); return [r.width / f.width, r.height / f.height]; })",
    )
    assert len(boxes) == 2 and all(0.2 < w <= 1.01 and 0.2 < h <= 1.01 for w, h in boxes), boxes
    assert "matched points" in page.text_content("#pair-caption")
    if shot is not None:
        page.screenshot(path=str(shot))
        _keep(shot)
    page.click("#pair-close")
    until("!document.querySelector('#pair-dialog').open")


def test_page_in_chromium(served, query_dir, tmp_path):
    sync_playwright = _browser()
    requests: list[str] = []
    problems: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            accept_downloads=True,
        )
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

            def until(script: str, arg=None, timeout: float = 60) -> None:
                """Poll a JavaScript predicate from here (Playwright's wait_for_function evaluates strings in the
                page, which the page's Content-Security-Policy rightly forbids)."""
                deadline = time.monotonic() + timeout
                while not page.evaluate(script if script.lstrip().startswith("(") else f"() => {script}", arg):
                    assert time.monotonic() < deadline, f"timed out waiting for {script}"
                    page.wait_for_timeout(100)

            def drop(path: Path) -> None:
                b64 = base64.b64encode(path.read_bytes()).decode()
                data = page.evaluate_handle(DROP, {"b64": b64, "name": path.name})
                page.dispatch_event("#drop", "drop", {"dataTransfer": data})

            def first_hit_is(name: str) -> None:
                until(
                    "(name) => { const c = document.querySelector('#hits .card .name');"
                    " const img = document.querySelector('#hits .card img');"
                    " return c && c.textContent === name && img && img.naturalWidth > 0; }",
                    arg=name,
                )

            page.goto(served.url + f"/#token={TOKEN}")
            until("document.querySelector('#summary').textContent.startsWith('14 images')")
            assert "token" not in page.url  # taken out of the address bar

            drop(query_dir / "chelsea_edit.jpg")
            first_hit_is("chelsea.jpg")
            assert page.text_content("#query-name") == "chelsea_edit.jpg"
            assert page.locator("#hits .card").count() == 14  # k = min(24, 14)
            shot = tmp_path / "serve-search.png"
            page.screenshot(path=str(shot), full_page=True)
            _keep(shot)

            # a verified hit explains itself: the query and the hit side by side, the matched region outlined
            pair_of(page.locator("#hits .card").first.locator(".verified"), until, tmp_path / "serve-pair.png")

            second = page.locator("#hits .card").nth(1)
            second_name = second.locator(".name").text_content()
            second.click()
            first_hit_is(second_name)
            assert page.text_content("#query-name").endswith("/" + second_name)

            page.set_input_files("#pick", str(query_dir / "flower_edit.jpg"))
            first_hit_is("flower.jpg")
            b64 = base64.b64encode((query_dir / "coffee_edit.jpg").read_bytes()).decode()
            page.evaluate(
                "async (arg) => { const data = await (" + DROP + ")(arg);"
                " document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data})); }",
                {"b64": b64, "name": "pasted.jpg"},
            )
            until("document.querySelector('#query-name').textContent === 'pasted.jpg'")
            until(
                "(names) => { const c = document.querySelector('#hits .card .name');"
                " return c && names.includes(c.textContent); }",
                arg=["coffee.jpg", COPY],
            )

            drop(query_dir / "rocket_edit.jpg")  # the copy of rocket is named like an HTML injection
            until(
                "(xss) => [...document.querySelectorAll('#hits .card .name')].some((n) => n.textContent === xss)",
                arg=XSS,
            )
            assert page.locator('img[src="x"]').count() == 0

            page.click("button[data-view=dups]")
            page.wait_for_selector("#groups .group")
            groups = page.eval_on_selector_all(
                "#groups .group",
                "gs => gs.map(g => ({kind: g.classList.contains('exact') ? 'exact' : 'near',"
                " names: [...g.querySelectorAll('.name')].map(n => n.textContent)}))",
            )
            kinds = [g["kind"] for g in groups]
            assert kinds == sorted(kinds, key=lambda k: k != "exact") and kinds[0] == "exact"
            assert {"astronaut.jpg", SMALL} in [set(g["names"]) for g in groups]
            assert {"rocket.jpg", XSS} in [set(g["names"]) for g in groups]
            assert page.locator('img[src="x"]').count() == 0
            until("[...document.querySelectorAll('#groups img')].every((i) => i.naturalWidth > 0)")
            shot = tmp_path / "serve-duplicates.png"
            page.screenshot(path=str(shot), full_page=True)
            _keep(shot)
            pair_of(page.locator("#groups .group.near .pairs .verified").first, until)

            page.eval_on_selector("#threshold", "s => { s.value = '0.9'; s.dispatchEvent(new Event('change')); }")
            until("document.querySelector('#dups-summary').textContent.includes('≥ 0.90')")
            assert page.eval_on_selector_all("#groups .group", "gs => gs.map(g => g.className)") == ["group exact"] * 2
            page.eval_on_selector("#threshold", "s => { s.value = '0.15'; s.dispatchEvent(new Event('change')); }")
            until("document.querySelectorAll('#groups .group').length === 4")

            with page.expect_download() as download:
                page.click("#export-csv")
            rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
            api = served.get("/api/dups").json()["groups"]
            assert [r["path"] for r in rows] == [p for g in api for p in g["paths"]]
            assert str(served.folder / COPY) in [r["path"] for r in rows]  # a comma in a name survives the CSV
            assert {r["id"] for r in rows} == {str(m["id"]) for g in api for m in g["members"]}  # 63-bit ids exact

            page.click("button[data-view=info]")
            until("document.querySelector('#info-table td') !== null")
            info = dict(
                zip(
                    page.eval_on_selector_all("#info-table th", "ns => ns.map(n => n.textContent)"),
                    page.eval_on_selector_all("#info-table td", "ns => ns.map(n => n.textContent)"),
                    strict=True,
                )
            )
            assert info["images"] == "14" and info["pooling"].startswith("gem(p=3")

            fresh = context.new_page()  # a new tab keeps no token: the page asks for it
            fresh.on("pageerror", lambda e: problems.append(str(e)))
            fresh.goto(served.url + "/")
            fresh.wait_for_selector("#token-dialog[open]")
            fresh.fill("#token-input", TOKEN)
            fresh.click("#token-form button")
            fresh.wait_for_selector("#token-dialog", state="hidden")
            deadline = time.monotonic() + 60
            while not fresh.text_content("#summary").startswith("14 images"):
                assert time.monotonic() < deadline, fresh.text_content("#status")
                fresh.wait_for_timeout(100)
            fresh.close()

            page.goto(served.url + "/docs")  # the OpenAPI page, with no network beyond this server
            page.locator(".opblock-summary-path", has_text="/api/search").first.wait_for()
        finally:
            context.close()
    assert dialogs == [], dialogs
    assert problems == [], problems
    foreign = [u for u in requests if not u.startswith((served.url, "blob:", "data:"))]
    assert foreign == [], foreign


def test_the_page_shows_its_first_page_of_groups_then_loads_the_rest(tmp_path, extractor):
    """With more groups than a page holds, the page asks for its first page alone (shown at once) and then for the
    rest behind it: two requests, every group reachable through the pager. 120 exact-copy pairs of real files,
    their rows written through the store (exact copies are grouped by their hashes: nothing to embed)."""
    import hashlib

    import numpy as np

    from poolvec.indexer.milvus.schema import make_row
    from poolvec.indexer.milvus.store import MilvusStore
    from poolvec.indexer.milvus.vector_index import VectorIndex

    sync_playwright = _browser()
    folder = tmp_path / "pairs"
    folder.mkdir()
    store = MilvusStore(str(tmp_path / "pairs.db"), "images")
    store.create(extractor.recipe, VectorIndex())
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((extractor.recipe.dim, 120)))[0].T  # a vector per pair, orthogonal
    rows = []
    for g in range(120):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(buf, "PNG")
        for name in (f"p{g:03d}.png", f"p{g:03d}-copy.png"):
            path = folder / name
            path.write_bytes(buf.getvalue())
            info = {"size": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns, "width": 16, "height": 16}
            info["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
            rows.append(make_row(str(path), str(folder), basis[g], info))
    store.upsert(rows)
    store.flush()
    store.close()
    index = ImageIndex(tmp_path / "pairs.db", "images", extractor=extractor)
    asked: list[str] = []
    problems: list[str] = []
    with live(create_app(index, ServeSettings(warm_up=False))) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.on("request", lambda r: asked.append(r.url) if "/api/dups" in r.url else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(url)
            page.click(".tab[data-view=dups]")
            deadline = time.monotonic() + 60
            while not page.text_content("#dups-summary").startswith("120 groups: 120 of exact copies"):
                assert time.monotonic() < deadline, page.text_content("#dups-summary")
                page.wait_for_timeout(100)
            assert page.text_content("#page-info") == "page 1 of 3"
            assert page.locator("#groups section.group").count() == 50
            page.click("#page-next")
            page.click("#page-next")
            assert page.text_content("#page-info") == "page 3 of 3"
            shown = page.eval_on_selector_all("#groups section.group .name", "ns => ns.map(n => n.textContent)")
        finally:
            browser.close()
    index.close()
    assert not problems, problems
    assert len(asked) == 2, asked
    first, rest = (dict(p.split("=", 1) for p in u.split("?", 1)[1].split("&")) for u in asked)
    assert first["limit"] == "50" and "offset" not in first, first
    assert rest["offset"] == "50" and "limit" not in rest and rest["threshold"], rest
    assert len(shown) == 40 and {f"p{g:03d}.png" for g in range(100, 120)} <= set(shown)  # the last 20 groups
