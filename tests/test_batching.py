"""Shape-bucketed batching: full batches go out at once, results keep input order, memory stays bounded."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import skimage.data
from PIL import Image

from poolvec.extractor import Extractor
from poolvec.extractor.batching import batched_in_order


def run(keys: list[str | None], sizes: dict[str, int], hold: int = 100):
    """Feed items (position, key) through batched_in_order; return (output order, batches, waiting high-water)."""
    batches: list[list[int]] = []
    done: set[int] = set()
    pulled = 0
    high = 0

    def items():
        nonlocal pulled, high
        for i, k in enumerate(keys):
            pulled += 1
            high = max(high, pulled - len(out))
            yield i, k

    def process(batch):
        assert len({k for _, k in batch}) == 1
        batches.append([i for i, _ in batch])
        done.update(i for i, _ in batch)

    out: list[int] = []
    for i, k in batched_in_order(items(), key=lambda it: it[1], batch_size=sizes.get, process=process, hold=hold):
        assert k is None or i in done  # an item comes out only after its batch ran
        out.append(i)
    return out, batches, high


def test_order_kept_and_batches_are_one_key():
    keys = ["a", "b", "a", None, "a", "b", "c", "a", "b", "b", None, "a"]
    out, batches, _ = run(keys, {"a": 2, "b": 3, "c": 4})
    assert out == list(range(len(keys)))
    assert sorted(itertools.chain(*batches)) == [i for i, k in enumerate(keys) if k is not None]
    assert batches[:3] == [[0, 2], [4, 7], [1, 5, 8]]  # full batches, in the order they filled
    assert batches[3:] == [[6], [9], [11]]  # then the partial ones, oldest waiting item first


def test_full_batch_runs_before_more_input_is_read():
    pulled = []

    def items():
        for i in range(10):
            pulled.append(i)
            yield i

    first_batch_seen_after = []

    def process(batch):
        first_batch_seen_after.append(len(pulled))

    out = list(batched_in_order(items(), key=lambda i: "x", batch_size=lambda k: 4, process=process, hold=50))
    assert out == list(range(10))
    assert first_batch_seen_after == [4, 8, 10]  # streaming, not one window at the end


def test_hold_bounds_waiting_items():
    keys = ["rare"] + ["common"] * 200  # the rare shape's batch never fills on its own
    out, batches, high = run(keys, {"rare": 8, "common": 1000}, hold=16)
    assert out == list(range(201))
    assert batches[0] == [0] and len(batches[1]) <= 16  # the oldest item's batch went out partly full
    assert high <= 16


def test_hold_must_be_positive():
    with pytest.raises(ValueError, match="hold"):
        list(batched_in_order([1], key=lambda i: i, batch_size=lambda k: 1, process=lambda b: None, hold=0))


def test_extractor_forward_starts_when_first_batch_is_full():
    img = Image.fromarray(skimage.data.coffee())  # 600×400 → 320×213: 4 per forward pass on the CPU
    ex = Extractor(workers=0, device="cpu")
    assert ex._batch_for((3, 213, 320)) == 4
    pulled = 0

    def images():
        nonlocal pulled
        for _ in range(10):
            pulled += 1
            yield img

    seen = []
    forward = ex._embed_pixels

    def spy(pixels, post=True):
        seen.append((pulled, len(pixels)))
        return forward(pixels, post)

    ex._embed_pixels = spy
    vectors = np.stack([e.vector for e in ex.embed_iter(images())])
    assert seen == [(4, 4), (8, 4), (10, 2)]
    np.testing.assert_allclose(vectors, np.repeat(vectors[:1], 10, axis=0), atol=1e-6)


def test_auto_batch_size_follows_pixels_on_cpu():
    ex = Extractor(device="cpu")
    assert [ex._batch_for((3, h, w)) for h, w in [(240, 320), (224, 224), (384, 512), (2000, 3000)]] == [4, 6, 1, 1]
    assert Extractor(device="cpu", batch_size=16)._batch_for((3, 240, 320)) == 16
