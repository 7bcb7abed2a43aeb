"""The in-process neighbour graph of ``dups`` (poolvec.indexer.dups.graph), against float64 references by hand."""

from __future__ import annotations

import numpy as np
import pytest

from poolvec.indexer.dups.graph import Rows, components, gather, nearest, normalised, pairs, same_hash


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k nearest others in float64, best first."""
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, 1), order


def test_exact_neighbours_equal_a_float64_search():
    x = unit(np.random.default_rng(0), 500, 64)
    x[10] = x[3]  # an identical copy: it stays the other's first neighbour (the row itself is left out by position)
    scores, found = nearest(x.astype(np.float16), 5)
    ref_s, ref_i = reference(x.astype(np.float16).astype(np.float64), 5)
    assert found[3, 0] == 10 and found[10, 0] == 3
    assert not (found == np.arange(500)[:, None]).any()
    np.testing.assert_allclose(scores, ref_s, atol=1e-5)
    assert (found[:, 0] == ref_i[:, 0]).mean() > 0.99  # ties in float16 aside


def test_ivf_neighbours_find_every_planted_copy():
    rng = np.random.default_rng(1)
    x = unit(rng, 6000, 48)
    copies = 2 * rng.choice(3000, 60, replace=False)  # even rows copy the odd row after them
    for c in copies:  # a copy at cosine 0.9 of another row
        o = (c + 1) % 6000
        noise = rng.standard_normal(48)
        noise -= noise @ x[o] * x[o]
        x[c] = 0.9 * x[o] + np.sqrt(1 - 0.81) * noise / np.linalg.norm(noise)
    scores, found = nearest(x.astype(np.float16), 10, exact_upto=1000)
    ref_s, _ = reference(x, 10)
    for c in copies:  # far neighbours are approximate (isotropic noise is IVF's worst case); copies are found
        assert found[c, 0] == c + 1 and found[c + 1, 0] == c
        assert scores[c, 0] == pytest.approx(ref_s[c, 0], abs=2e-3)  # float16 storage


def test_tiny_collections():
    assert nearest(np.zeros((0, 8), np.float16), 10)[0].shape == (0, 0)
    scores, found = nearest(np.eye(2, 8, dtype=np.float16), 10)
    assert found.tolist() == [[1], [0]] and scores.tolist() == [[0.0], [0.0]]


def test_normalised_scores_by_hand():
    # row 0's neighbours best first: 1 at 0.9, 2 at 0.5, 3 at 0.3 → its background mean(0.5, 0.3) = 0.4 (the nearest
    # left out); row 1's is mean(0.2, 0.0) = 0.1, row 2's 0.15, row 3's 0.05
    scores = np.array([[0.9, 0.5, 0.3], [0.9, 0.2, 0.0], [0.5, 0.2, 0.1], [0.3, 0.1, 0.0]])
    found = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 2, 1]])
    out = normalised(scores, found, beta=1.0, skip=1)
    assert out[0, 0] == pytest.approx(0.9 - (0.4 + 0.1) / 2)
    assert out[0, 1] == pytest.approx(0.5 - (0.4 + 0.15) / 2)
    assert out[3, 2] == pytest.approx(0.0 - (0.05 + 0.1) / 2)
    lonely = normalised(np.array([[0.7], [0.7]]), np.array([[1], [0]]), beta=1.0, skip=1)
    assert lonely.ravel().tolist() == pytest.approx([0.7, 0.7])  # two images: no background, the cosine itself
    missing = normalised(
        np.array([[0.8, -np.inf], [0.8, 0.4], [0.4, 0.0]]), np.array([[1, -1], [0, 2], [1, 0]]), beta=1.0, skip=1
    )
    assert missing[0, 0] == pytest.approx(0.8 - 0.4 / 2)  # row 0's missing neighbour is no background


def test_pairs_keep_each_pair_once_with_its_best_score():
    scores = np.array([[0.9, 0.2], [0.8, 0.5], [0.5, 0.1]])
    found = np.array([[1, 2], [0, 2], [1, -1]])
    a, b, s = pairs(scores, found, floor=0.3)
    got = sorted(zip(a.tolist(), b.tolist(), s.tolist(), strict=True))
    assert got == [(0, 1, pytest.approx(0.9)), (1, 2, pytest.approx(0.5))]


def test_rows_gathered_from_pages_and_grouped_by_hash():
    rng = np.random.default_rng(2)
    vecs = unit(rng, 2500, 16)
    rows = [{"id": i, "path": f"/p/{i}", "sha256": f"h{i % 1200}", "vector": vecs[i].tolist()} for i in range(2500)]
    seen = []
    got = gather((rows[n : n + 700] for n in range(0, 2500, 700)), progress=lambda *a: seen.append(a))
    assert isinstance(got, Rows) and len(got) == 2500 and got.paths[2499] == "/p/2499"
    np.testing.assert_allclose(got.vectors.astype(np.float64), vecs, atol=1e-3)
    assert seen[-1] == ("read", 2500, None)
    groups = sorted(sorted(g) for g in same_hash(got))
    assert len(groups) == 1200 and groups[0] == [0, 1200, 2400] and groups[-1] == [1199, 2399]


def test_components_equal_a_breadth_first_search():
    rng = np.random.default_rng(3)
    for n, m in ((1, 0), (2, 1), (50, 20), (2000, 1500), (2000, 4000)):
        a, b = rng.integers(0, n, m), rng.integers(0, n, m)
        label = components(n, a, b)
        links: dict[int, set[int]] = {i: set() for i in range(n)}
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            links[x].add(y)
            links[y].add(x)
        seen: dict[int, int] = {}
        for start in range(n):  # the reference: each node's component by breadth-first search
            if start in seen:
                continue
            seen[start], queue = start, [start]
            while queue:
                for y in links[queue.pop()]:
                    if y not in seen:
                        seen[y] = start
                        queue.append(y)
        same = {(seen[i], int(label[i])) for i in range(n)}
        assert len(same) == len({seen[i] for i in range(n)}) == len(set(label.tolist()))  # a bijection
    chain = components(6, np.array([4, 3, 2, 1, 0]), np.array([5, 4, 3, 2, 1]))  # the longest path to jump
    assert chain.tolist() == [0] * 6
