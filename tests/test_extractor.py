"""The Extractor end to end on real photos: shapes, order, batching invariance, bad files, input types."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

import poolvec.extractor.extractor as extractor_module
from poolvec.extractor import Extractor, ExtractorError, ImageError, load_image
from poolvec.extractor.preprocess import to_tensor


def test_embed_paths_unit_vectors(extractor, photo_dir):
    paths = sorted(photo_dir.glob("*.jpg"))[:4]
    v = extractor.embed(paths)
    assert v.shape == (4, 1280) and v.dtype == np.float32  # gem(p=3) | l2 | lw | l2
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert extractor.dim == 1280


def test_vectors_do_not_depend_on_batching_or_order(photo_dir):
    paths = sorted(photo_dir.glob("*.jpg"))
    a = Extractor(batch_size=16, workers=2).embed(paths)
    b = Extractor(batch_size=1, workers=0).embed(paths[::-1])[::-1]
    np.testing.assert_allclose(a, b, atol=2e-5)


def test_bad_file_reported_rest_embedded(extractor, photo_dir, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    paths = sorted(photo_dir.glob("*.jpg"))[:3]
    items = list(extractor.embed_iter([paths[0], bad, paths[1], paths[2]]))
    assert [i.ok for i in items] == [True, False, True, True]
    assert items[1].source == str(bad) and "not a recognised image" in items[1].error
    assert items[0].width > 0 and items[0].vector.shape == (1280,)
    with pytest.raises(ImageError, match=r"broken\.jpg"):
        extractor.embed([paths[0], bad])


def test_path_pil_array_tensor_inputs_agree(extractor, tmp_path):
    arr = skimage.data.coffee()
    path = tmp_path / "coffee.png"  # lossless, so every input carries the same pixels
    Image.fromarray(arr).save(path)
    vs = extractor.embed([path, Image.fromarray(arr), arr, torch.from_numpy(arr).permute(2, 0, 1)])
    for v in vs[1:]:
        np.testing.assert_allclose(v, vs[0], atol=1e-5)


def test_query_copy_is_nearest_to_its_original(extractor, photo_dir):
    orig = Image.open(photo_dir / "chelsea.jpg")
    copy = orig.crop((20, 10, 430, 290)).resize((300, 205))
    db = extractor.embed(sorted(photo_dir.glob("*.jpg")))
    q = extractor.embed(copy)[0]
    names = [p.stem for p in sorted(photo_dir.glob("*.jpg"))]
    assert names[int(np.argmax(db @ q))] == "chelsea"


def test_multiscale_and_reduced_precision_paths_run(photo_dir):
    paths = sorted(photo_dir.glob("*.jpg"))[:2]
    plain = "gem(p=3) | l2"  # the paths under test, without the whitening that spreads small differences apart
    single = Extractor(pooling=plain).embed(paths)
    multi = Extractor(pooling=plain, scales=(1, 0.7071, 0.5)).embed(paths)
    assert multi.shape == single.shape
    np.testing.assert_allclose(np.linalg.norm(multi, axis=1), 1, atol=1e-5)
    assert (multi * single).sum(1).min() > 0.8  # same images, close but not identical
    assert not np.allclose(multi, single)
    bf16 = Extractor(pooling=plain, precision="bf16", device="cpu").embed(paths)
    assert (bf16 * single).sum(1).min() > 0.95


def test_config_round_trip_rebuilds_same_vectors(extractor, photo_dir):
    path = sorted(photo_dir.glob("*.jpg"))[0]
    again = Extractor.from_config(extractor.config())
    assert again.config() == extractor.config()
    np.testing.assert_array_equal(again.embed(path), extractor.embed(path))


def test_square_policy_and_other_backbone(photo_dir):
    ex = Extractor("resnet18", weights=None, size=224, crop=True, pooling="mac | l2")
    v = ex.embed(sorted(photo_dir.glob("*.jpg"))[:2])
    assert v.shape == (2, 512) and ex.config()["input"]["size"] == 224


def test_milvus_model_embedding_function_interface(extractor, photo_dir):
    paths = [str(p) for p in sorted(photo_dir.glob("*.jpg"))[:2]]
    docs = extractor.encode_documents(paths)
    queries = extractor.encode_queries(paths)
    assert isinstance(docs, list) and len(docs) == 2 and docs[0].shape == (extractor.dim,)
    np.testing.assert_array_equal(docs[0], queries[0])
    np.testing.assert_array_equal(extractor(paths)[1], docs[1])
    try:
        from milvus_model.base import BaseEmbeddingFunction
    except ImportError:
        return
    for name in ("__call__", "encode_queries"):  # the abstract methods of milvus-model's base class
        assert callable(getattr(extractor, name)) and hasattr(BaseEmbeddingFunction, name)


def test_fit_pca_pooling_on_real_photos(photo_dir):
    ex = Extractor(pooling="gem(p=3) | l2 | pca(dim=8, whiten=true) | l2", max_side=160)
    assert ex.pipeline.needs_fit and ex.dim == 8
    with pytest.raises(Exception, match="fit"):
        ex.embed(sorted(photo_dir.glob("*.jpg"))[0])
    ex.fit(sorted(photo_dir.glob("*.jpg")))
    v = ex.embed(sorted(photo_dir.glob("*.jpg")))
    assert v.shape == (11, 8)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    again = Extractor.from_config(ex.config())
    np.testing.assert_allclose(again.embed(sorted(photo_dir.glob("*.jpg"))), v, atol=1e-6)


def test_torchvision_decoder_path_on_cpu(photo_dir, tmp_path, extractor):
    """The GPU-decode code path (torchvision decode_jpeg + device resize), run on the CPU."""
    paths = sorted(photo_dir.glob("*.jpg"))[:4]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(paths[0].read_bytes()[:500])
    ex = Extractor(decoder="torchvision", device="cpu")
    assert ex.config()["input"]["decoder"] == "torchvision" and ex.config() != extractor.config()
    items = list(ex.embed_iter([*paths, bad]))
    assert [i.ok for i in items] == [True] * 4 + [False]
    assert "decode" in items[-1].error or "recognised" in items[-1].error
    tv = np.stack([i.vector for i in items[:4]])
    pil = extractor.embed(paths)
    assert (tv * pil).sum(1).min() > 0.97  # same images, slightly different pixels
    assert items[0].width == Image.open(paths[0]).width
    png = tmp_path / "x.png"
    Image.open(paths[0]).save(png)  # non-JPEG files still go through Pillow
    np.testing.assert_allclose(ex.embed(png), extractor.embed(png), atol=1e-6)
    assert Extractor.from_config(ex.config()).policy.decoder == "torchvision"


def test_optimized_forward_matches_eager(photo_dir, extractor):
    paths = sorted(photo_dir.glob("*.jpg"))  # several shapes: each is checked against eager once
    fast = Extractor(optimize=True)
    np.testing.assert_allclose(fast.embed(paths), extractor.embed(paths), atol=1e-5)
    assert fast.optimize and fast._traced is not None and len(fast._checked) >= 2


def test_trace_checks_stop_after_the_first_shapes(photo_dir, extractor, monkeypatch):
    monkeypatch.setattr(extractor_module, "TRACE_CHECKS", 2)
    paths = sorted(photo_dir.glob("*.jpg"))
    fast = Extractor(optimize=True)
    np.testing.assert_allclose(fast.embed(paths), extractor.embed(paths), atol=1e-5)
    assert fast.optimize and len(fast._checked) == 2


def test_auto_optimize_traces_bulk_work_not_single_queries(photo_dir, extractor, monkeypatch):
    monkeypatch.setattr(extractor_module, "AUTO_TRACE_AFTER", 8)
    paths = sorted(photo_dir.glob("*.jpg"))
    ex = Extractor(device="cpu")
    assert ex.optimize == "auto"
    one = ex.embed(paths[0])
    assert ex._traced is None  # a query stays eager: no one-off trace cost
    np.testing.assert_array_equal(one, extractor.embed(paths[0]))
    many = np.concatenate([ex.embed(paths), ex.embed(paths)])
    assert ex._traced is not None and ex.optimize == "auto"
    np.testing.assert_allclose(many, np.concatenate([extractor.embed(paths)] * 2), atol=1e-5)
    assert not Extractor(device="cpu", optimize=False)._traces()
    with pytest.raises(ExtractorError, match="optimize"):
        Extractor(optimize="yes")


class ShapeBound(torch.nn.Module):
    """A backbone whose trace is only right for the shape it was traced on (a Python int from the shape)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.spec = inner, inner.spec

    def forward(self, x):
        keep = max(1, int(x.shape[-1]) // 64)
        return self.inner(x)[..., :keep]


def test_trace_bound_to_one_shape_falls_back_to_eager(photo_dir):
    paths = sorted(photo_dir.glob("*.jpg"))[:3]
    ex = Extractor("resnet18", weights=None, pooling="gem(p=3) | l2", optimize=True, device="cpu")
    ex.backbone = ShapeBound(ex.backbone).eval()
    with pytest.warns(UserWarning, match="differs from eager"):
        first = ex.embed(paths)
    assert not ex.optimize
    np.testing.assert_allclose(first, ex.embed(paths), atol=1e-6)


def test_vectors_match_the_pillow_resize_of_earlier_indexes(photo_dir, extractor):
    """Indexes built when images were resized by Pillow stay searchable: the vectors agree to cosine 0.9999."""
    paths = sorted(photo_dir.glob("*.jpg"))
    new = extractor.embed(paths)
    old = []
    for p in paths:
        img = load_image(p, target=extractor.policy.target_size)
        size = extractor.policy.target_size(*img.size)
        pixels = to_tensor(img.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0))
        old.append(extractor._embed_pixels(pixels[None])[0])
    cos = (np.stack(old) * new).sum(1)
    assert cos.min() > 0.9999 and not np.array_equal(np.stack(old), new)
