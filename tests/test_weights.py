"""The packaged weights are real, every weights path loads offline, and no weights file can run code."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import skimage.data
import torch
import torchvision
from PIL import Image

from poolvec.extractor import Extractor, ExtractorError, build_backbone
from poolvec.extractor.preprocess import normalize
from poolvec.extractor.weights import packaged_weights_file, sha256_of

CATS = {281, 282, 283, 284, 285}
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug


def _top1(ex: Extractor, photo: np.ndarray) -> int:
    x = normalize(ex.preprocess(Image.fromarray(photo))[None], ex.policy)
    with torch.inference_mode():
        return int(ex.backbone.classify(x).argmax(1))


def test_packaged_weights_classify_real_photos(extractor):
    assert _top1(extractor, skimage.data.chelsea()) in CATS
    assert _top1(extractor, skimage.data.coffee()) in COFFEE


def test_packaged_weights_file_checksum_matches_its_name():
    path = packaged_weights_file("tf_efficientnet_lite0")
    assert sha256_of(path).startswith(path.stem.rsplit("-", 1)[-1])


def test_lite1_packaged_weights_classify_too():
    ex = Extractor("efficientnet_lite1")
    assert ex.backbone.spec.name == "tf_efficientnet_lite1"
    assert _top1(ex, skimage.data.chelsea()) in CATS


def test_random_weights_are_seeded_and_reproducible():
    a = build_backbone("resnet18", weights=None)
    b = build_backbone("resnet18", weights=None)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    assert a.spec.weights_id == "random(seed=0)"


def test_torchvision_backbone_from_local_file(tmp_path):
    model = torchvision.models.resnet18(weights=None)
    torch.nn.init.constant_(model.conv1.weight, 0.01)
    path = tmp_path / "r18.pth"
    torch.save(model.state_dict(), path)
    bb = build_backbone("resnet18", weights=str(path))
    assert torch.equal(bb.model.conv1.weight, model.conv1.weight)
    assert bb.spec.weights_id == f"file:sha256:{sha256_of(path)}"
    assert bb.spec.channels == 512
    assert bb(torch.zeros(1, 3, 96, 128)).shape == (1, 512, 3, 4)


def test_torchvision_weights_name_uses_torchvision_download_path(tmp_path, monkeypatch):
    """``weights='IMAGENET1K_V1'`` goes through torchvision's real loader; a cached file means no download."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    enum = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    model = torchvision.models.resnet18(weights=None)
    torch.nn.init.constant_(model.fc.bias, 0.5)
    torch.save(model.state_dict(), cache / os.path.basename(enum.url))
    bb = build_backbone("resnet18", weights="IMAGENET1K_V1")
    assert bb.spec.weights_id == "torchvision:ResNet18_Weights.IMAGENET1K_V1"
    assert torch.all(bb.model.fc.bias == 0.5)
    assert bb.spec.mean == (0.485, 0.456, 0.406)


def test_unknown_weights_name_lists_choices():
    with pytest.raises(ExtractorError, match="IMAGENET1K_V2"):
        build_backbone("resnet50", weights="IMAGENET9K")


def test_weights_file_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"conv1.weight": Evil()}, f)
    with pytest.raises(ExtractorError, match="refused"):
        build_backbone("resnet18", weights=str(path))
    assert not marker.exists()


def test_weights_that_do_not_fit_are_named(tmp_path):
    path = tmp_path / "r34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(ExtractorError, match="do not fit"):
        build_backbone("resnet18", weights=str(path))


def test_unknown_backbone_suggests_names():
    with pytest.raises(ExtractorError, match="resnet50"):
        build_backbone("resnet5O")


def test_named_layer_and_default_layer():
    bb = build_backbone("tf_efficientnet_lite0", layer="blocks.5")
    assert bb.spec.channels == 192
    assert build_backbone("vgg11", weights=None).spec.channels == 512
    with pytest.raises(ExtractorError, match="unknown layer"):
        build_backbone("resnet18", weights=None, layer="layer9")
