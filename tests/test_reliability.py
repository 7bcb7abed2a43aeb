"""Reliability, round 2: nothing skipped in silence, broken models and weights refused in one line, every image
format found, a full disk said in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from typer.testing import CliRunner

from poolvec.extractor import Extractor, ExtractorError, build_backbone, iter_image_files
from poolvec.extractor.backbones import _check_reachable
from poolvec.indexer import ImageIndex, IndexerError
from poolvec.indexer.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
POOLVEC = Path(sys.executable).with_name("poolvec")
runner = CliRunner()


def test_unreadable_folders_and_paths_past_path_max_are_reported(tmp_path, photo_dir):
    top = tmp_path / "top"
    locked = top / "locked"
    locked.mkdir(parents=True)
    shutil.copy(photo_dir / "coffee.jpg", top / "coffee.jpg")
    shutil.copy(photo_dir / "rocket.jpg", locked / "rocket.jpg")
    deep = os.fsencode(top)
    fd = os.open(deep, os.O_RDONLY)
    for _ in range(20):  # a chain of folders whose path is longer than PATH_MAX (4096 bytes)
        os.mkdir("d" * 250, dir_fd=fd)
        inner = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    with open(os.open("deep.jpg", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "wb") as f:
        f.write((photo_dir / "china.jpg").read_bytes())
    os.close(fd)
    skipped: list[tuple[str, str]] = []
    os.chmod(locked, 0)
    try:
        found = list(iter_image_files(top, on_skip=lambda p, why: skipped.append((p, why))))
    finally:
        os.chmod(locked, 0o755)
    assert any("folder not read: path too long" in why for _, why in skipped)
    if os.geteuid() != 0:  # root reads any folder
        assert any(p == str(locked) and "Permission denied" in why for p, why in skipped)
    assert str(top / "coffee.jpg") in map(str, found)
    assert all(why.startswith("folder not read:") for _, why in skipped)
    res = runner.invoke(app, ["index", str(top), "--db", str(tmp_path / "s.db"), "-q", "--no-tune"])
    assert res.exit_code == 1 and "folder not read: path too long" in res.stderr  # partial, and said why


def test_weights_that_give_nan_are_refused_before_anything_is_stored(tmp_path, photo_dir):
    model = torchvision.models.resnet18(weights=None)
    for p in model.parameters():
        torch.nn.init.constant_(p, float("nan"))
    weights = tmp_path / "nan.pth"
    torch.save(model.state_dict(), weights)
    ex = Extractor("resnet18", weights=str(weights), pooling="gem(p=3) | l2", max_side=96, optimize=False)
    with pytest.raises(ExtractorError, match="NaN or infinite features for every image"):
        ex.embed(sorted(photo_dir.glob("*.jpg"))[:2])
    db = tmp_path / "nan.db"
    model_options = [
        "--backbone",
        "resnet18",
        "--weights",
        str(weights),
        "--pooling",
        "gem(p=3) | l2",
        "--max-side",
        "96",
    ]
    res = runner.invoke(app, ["index", str(photo_dir), "--db", str(db), *model_options, "-q"])
    assert res.exit_code == 2 and "broken" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    index = ImageIndex(str(db))
    assert len(index) == 0  # nothing indexed "successfully"


def test_a_zero_query_vector_is_refused(tmp_path, photos):
    index = ImageIndex(str(tmp_path / "z.db"), tuning=False)
    index.add(sorted(photos.glob("*.jpg"))[:2])
    for bad in (np.zeros(1280, np.float32), np.full(1280, np.inf, np.float32)):
        with pytest.raises(IndexerError, match="matches nothing"):
            index.search(bad)


@pytest.mark.parametrize("content", [b"", b"\x08\x00\x00\x00\x00\x00\x00\x00{", b"garbage" * 10])
def test_broken_safetensors_is_one_line_naming_the_file(tmp_path, content):
    path = tmp_path / "w.safetensors"
    path.write_bytes(content)
    with pytest.raises(ExtractorError, match=r"w\.safetensors: not a readable \.safetensors file") as e:
        build_backbone("resnet18", weights=str(path))
    assert "\n" not in str(e.value)


def test_weights_that_do_not_fit_name_the_first_key(tmp_path):
    from safetensors.torch import save_file

    state = torchvision.models.resnet18(weights=None).state_dict()
    state["conv1.weight"] = torch.zeros(32, 3, 7, 7)
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    with pytest.raises(ExtractorError, match=r"'conv1\.weight' is \[32, 3, 7, 7\] in the file, \[64, 3, 7, 7\]"):
        build_backbone("resnet18", weights=str(path))
    del state["conv1.weight"]
    save_file(state, str(path))
    with pytest.raises(ExtractorError, match=r"'conv1\.weight' is missing from the file"):
        build_backbone("resnet18", weights=str(path))


def test_a_download_without_a_network_fails_at_once_and_says_what_to_do(tmp_path):
    with pytest.raises(ExtractorError, match=r"127\.0\.0\.1 is unreachable.*--weights FILE"):
        _check_reachable("https://127.0.0.1:9/models/resnet50.pth", "weights", None)
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0"}
    Image.new("RGB", (64, 48), "red").save(tmp_path / "q.png")
    proc = subprocess.run(
        [POOLVEC, "embed", str(tmp_path / "q.png"), "--backbone", "timm/resnet18", "--out", str(tmp_path / "v.npy")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert "unreachable" in proc.stderr and "--weights FILE" in proc.stderr and proc.stderr.count("\n") == 1


def test_every_raster_format_pillow_decodes_is_found_and_indexed(tmp_path, photo_dir):
    from pillow_heif import register_heif_opener

    register_heif_opener()
    photo = Image.open(photo_dir / "astronaut.jpg").convert("RGB").resize((128, 128))
    folder = tmp_path / "formats"
    folder.mkdir()
    saves = {
        "a.jp2": {},
        "a.pbm": {"mode": "1"},
        "a.pnm": {},
        "a.ico": {},
        "a.tga": {},
        "a.qoi": {},
        "a.avif": {},
        "a.heic": {},
        "a.mpo": {"format": "MPO"},
        "a.apng": {"format": "PNG"},
    }
    for name, how in saves.items():
        img = photo.convert(how.pop("mode", "RGB"))
        img.save(folder / name, **how)
    photo.save(folder / "really_a_png.jpg", format="PNG")  # the extension lies: the content decides
    (folder / "text.jpg").write_text("not an image")
    res = runner.invoke(app, ["index", str(folder), "--db", str(tmp_path / "f.db"), "--json", "--no-tune"])
    assert res.exit_code == 1, res.output  # only the text file is skipped
    import json

    summary = json.loads(res.stdout)
    assert summary["added"] == len(saves) + 1
    assert [f["path"] for f in summary["failed"]] == [str(folder / "text.jpg")]


def test_heic_without_its_plugin_says_which_package_to_install(tmp_path, photo_dir):
    code = textwrap.dedent(
        """
        import sys
        sys.modules["pillow_heif"] = None  # as on a machine without the plugin
        from poolvec.extractor import Extractor
        item = next(Extractor(optimize=False).embed_iter([sys.argv[1]]))
        print(item.error)
        """
    )
    from pillow_heif import register_heif_opener

    register_heif_opener()
    Image.open(photo_dir / "coffee.jpg").save(tmp_path / "c.heic")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "c.heic")], capture_output=True, text=True)
    assert "pillow-heif" in out.stdout and "poolvec[heif]" in out.stdout, out.stderr


def test_a_full_disk_is_one_line_and_loses_nothing_acknowledged(tmp_path, photo_dir):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare to mount a small filesystem")
    mnt = tmp_path / "small"
    mnt.mkdir()
    script = (
        f"mount -t tmpfs -o size=6m tmpfs {mnt} && exec {POOLVEC} index {photo_dir} --db {mnt}/full.db -q --no-tune"
    )
    proc = subprocess.run(["unshare", "--mount", "bash", "-c", script], capture_output=True, text=True, timeout=300)
    if "mount:" in proc.stderr:
        pytest.skip(f"cannot mount here: {proc.stderr.strip()}")
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.count("\n") == 1 and "No space left on device" in proc.stderr, proc.stderr
