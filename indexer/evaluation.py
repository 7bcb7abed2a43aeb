"""Retrieval evaluation: metrics, the three ground-truth formats, and scoring of an index or of plain vectors.

Every metric works on rankings of database indices with the query's *junk* items taken out first, exactly as
the revisitop reference (Radenović et al., CVPR 2018, ``python/evaluate.py``) does:

* **AP**: trapezoid average precision (Philbin et al.; revisitop ``compute_ap``): for the j-th positive found
  at 0-based position r, add ``(j / r + (j + 1) / (r + 1)) / 2`` (``1`` for j = r = 0), divide by the number of
  positives. **mAP** averages it over the queries that have positives; queries without any are left out.
* **mP@k**: revisitop's precision at k, where k is capped at the position of the query's last positive.
* **P@k**: positives among the first k results, divided by k.
* **recall@k**: share of queries with at least one positive among their first k results.

Ground truths: revisitop ``gnd_*.pkl`` (Easy/Medium/Hard), class folders (``DIR/<class>/*``: every image queries
the rest), and query → database JSON (``{query: [relevant database paths]}``, copy detection).
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from poolvec.extractor import IMAGE_EXTENSIONS, ImageError, iter_image_files, load_image
from poolvec.indexer.errors import IndexerError
from poolvec.indexer.milvus.schema import path_id

if TYPE_CHECKING:
    from PIL import Image

    from poolvec.indexer.index import ImageIndex

#: The cut-offs reported by default (revisitop reports mP@1, 5, 10).
KS: tuple[int, ...] = (1, 5, 10)
#: Milvus returns at most this many hits per query: the longest ranking an index evaluation can see.
MAX_SEARCH_K = 16384
KINDS = ("revisitop", "classes", "pairs")
#: Positives and junk (database indices) of each query.
Setup = tuple[list[np.ndarray], list[np.ndarray]]
Box = tuple[float, float, float, float]


# -- metrics -------------------------------------------------------------------------------------------------
def positive_positions(ranking: Sequence[int] | np.ndarray, positives: Any, junk: Any = ()) -> np.ndarray:
    """0-based positions of the positives in ``ranking`` once the junk items before them are taken out."""
    ranking = np.asarray(ranking, dtype=np.int64).ravel()
    pos = np.flatnonzero(np.isin(ranking, np.asarray(positives, dtype=np.int64)))
    junk_at = np.flatnonzero(np.isin(ranking, np.asarray(junk, dtype=np.int64)))
    return pos - np.searchsorted(junk_at, pos, side="left")


def average_precision(positions: Sequence[int] | np.ndarray, n_positives: int) -> float:
    """Trapezoid AP of sorted 0-based positive positions (revisitop ``compute_ap``); missing positives add 0."""
    if n_positives < 1:
        raise ValueError("average precision needs at least one positive")
    pos = np.asarray(positions, dtype=np.float64)
    j = np.arange(len(pos), dtype=np.float64)
    before = np.divide(j, pos, out=np.ones_like(pos), where=pos > 0)
    after = (j + 1) / (pos + 1)
    return float(((before + after) / 2).sum() / n_positives)


def revisitop_precision(positions: np.ndarray, n_positives: int, ks: Iterable[int]) -> np.ndarray:
    """revisitop's P@k per k: k is capped at the 1-based position of the last positive (∞ if one is unranked)."""
    pos1 = np.asarray(positions) + 1
    last = float(pos1.max()) if len(pos1) == n_positives and len(pos1) else np.inf
    out = []
    for k in ks:
        kq = min(last, k)
        out.append(float((pos1 <= kq).sum() / kq))
    return np.array(out)


def ranking_metrics(
    rankings: Sequence[Sequence[int]] | np.ndarray,
    positives: Sequence[Any],
    junk: Sequence[Any] | None = None,
    ks: Iterable[int] = KS,
) -> dict[str, Any]:
    """mAP, mP@k, P@k and recall@k of per-query rankings (database indices, best first; -1 = not in the GT).

    Queries without positives are left out of every mean (their per-query values are ``None``), as in revisitop.
    """
    ks = tuple(int(k) for k in ks)
    if len(rankings) != len(positives) or (junk is not None and len(junk) != len(positives)):
        raise ValueError("rankings, positives and junk need one entry per query")
    aps: list[float | None] = []
    firsts: list[int | None] = []
    mp, p, r = np.zeros(len(ks)), np.zeros(len(ks)), np.zeros(len(ks))
    for i, ranking in enumerate(rankings):
        ok = np.unique(np.asarray(positives[i], dtype=np.int64))
        if ok.size == 0:
            aps.append(None)
            firsts.append(None)
            continue
        pos = positive_positions(ranking, ok, () if junk is None else junk[i])
        aps.append(average_precision(pos, ok.size))
        firsts.append(int(pos[0]) + 1 if pos.size else 0)
        mp += revisitop_precision(pos, ok.size, ks)
        p += np.array([(pos < k).sum() / k for k in ks])
        r += np.array([float(pos.size > 0 and pos[0] < k) for k in ks])
    done = [a for a in aps if a is not None]
    n = len(done)
    mean = (lambda v: float(v / n)) if n else (lambda v: float("nan"))
    out: dict[str, Any] = {"mAP": float(np.mean(done)) if n else float("nan")}
    for j, k in enumerate(ks):
        out[f"mP@{k}"] = mean(mp[j])
        out[f"P@{k}"] = mean(p[j])
        out[f"recall@{k}"] = mean(r[j])
    out.update(queries=len(aps), evaluated=n, empty=len(aps) - n, ap=aps, first_positive=firsts)
    return out


def micro_average_precision(
    rankings: Sequence[Sequence[int]] | np.ndarray,
    scores: Sequence[Sequence[float]] | np.ndarray,
    positives: Sequence[Any],
    junk: Sequence[Any] | None = None,
) -> float:
    """µAP (DISC21, Douze et al. 2021): every (query, database image, score) of the rankings in one list, sorted by
    score, and the (non-interpolated) average precision of that list over all positive pairs.

    Unlike mAP, one threshold has to serve every query, so this is the metric of a global duplicate threshold
    (``dups --threshold``, ``search --min-score``). Junk pairs are left out; positives never ranked count as missed.
    """
    all_scores, labels, total = [], [], 0
    for i, (ranking, sc) in enumerate(zip(rankings, scores, strict=True)):
        ok = set(np.asarray(positives[i]).tolist())
        bad = set() if junk is None else set(np.asarray(junk[i]).tolist())
        total += len(ok)
        for r, s in zip(np.asarray(ranking).tolist(), np.asarray(sc).tolist(), strict=True):
            if r in bad:
                continue
            all_scores.append(s)
            labels.append(r in ok)
    if total == 0:
        return float("nan")
    order = np.argsort(-np.asarray(all_scores, dtype=np.float64), kind="stable")
    hit = np.asarray(labels, dtype=bool)[order]
    tp = np.cumsum(hit)
    precision = tp[hit] / (np.flatnonzero(hit) + 1)
    return float(precision.sum() / total)


def exact_search(
    queries: np.ndarray, database: np.ndarray, k: int | None = None, chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """(database indices, inner products), both ``[n_queries, k]``, best first; ties keep database order."""
    q = np.asarray(queries, dtype=np.float32)
    x = np.asarray(database, dtype=np.float32)
    k = x.shape[0] if k is None else min(int(k), x.shape[0])
    idx = np.empty((q.shape[0], k), dtype=np.int64)
    val = np.empty((q.shape[0], k), dtype=np.float32)
    for start in range(0, q.shape[0], chunk):
        sims = q[start : start + chunk] @ x.T
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        idx[start : start + chunk] = order
        val[start : start + chunk] = np.take_along_axis(sims, order, axis=1)
    return idx, val


def exact_rankings(queries: np.ndarray, database: np.ndarray, k: int | None = None, chunk: int = 512) -> np.ndarray:
    """Database indices by descending inner product, ``[n_queries, k]``; ties keep database order (stable)."""
    return exact_search(queries, database, k, chunk)[0]


# -- ground truths -------------------------------------------------------------------------------------------
@dataclass
class GroundTruth:
    """Query and database paths plus, per named setup, the positives and junk (database indices) of each query."""

    kind: str
    source: str
    queries: list[str]
    database: list[str]
    setups: dict[str, Setup]
    #: revisitop query boxes (x1, y1, x2, y2): the query image is cropped to its box before embedding.
    boxes: list[Box | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.database)
        for name, (ok, junk) in self.setups.items():
            if len(ok) != len(self.queries) or len(junk) != len(self.queries):
                raise IndexerError(f"ground truth {self.source}: setup {name!r} does not cover every query")
            for arr in (*ok, *junk):
                if arr.size and (arr.min() < 0 or arr.max() >= n):
                    raise IndexerError(f"ground truth {self.source}: a database index is out of range 0..{n - 1}")
        if not self.boxes:
            self.boxes = [None] * len(self.queries)


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler for ground-truth files: plain containers, numbers, strings and numpy arrays only, never code."""

    ALLOWED = frozenset(
        {("builtins", n) for n in ("list", "dict", "tuple", "set", "frozenset", "int", "float", "str", "bytes")}
        | {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")}
        | {(m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")}
        | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise IndexerError(f"refusing to load {module}.{name} from a ground-truth pickle (data only)")
        return super().find_class(module, name)


def safe_load_pickle(path: str | os.PathLike[str]) -> Any:
    """Load a pickle that may hold only builtins and numpy arrays (a ground-truth file must not run code)."""
    try:
        with open(path, "rb") as f:
            return _SafeUnpickler(f, encoding="latin1").load()
    except OSError as e:
        raise IndexerError(f"{path}: cannot read: {e.strerror or e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise IndexerError(f"{path}: not a valid ground-truth pickle: {e}") from None


def _indices(value: Any) -> np.ndarray:
    return np.asarray([] if value is None else value, dtype=np.int64).ravel()


def revisitop_setups(gnd: Sequence[dict[str, Any]]) -> dict[str, Setup]:
    """Easy (positives: easy; junk: junk + hard), Medium (easy + hard; junk), Hard (hard; junk + easy)."""
    easy = [_indices(g.get("easy")) for g in gnd]
    hard = [_indices(g.get("hard")) for g in gnd]
    junk = [_indices(g.get("junk")) for g in gnd]
    return {
        "easy": (easy, [np.concatenate([j, h]) for j, h in zip(junk, hard, strict=True)]),
        "medium": ([np.concatenate([e, h]) for e, h in zip(easy, hard, strict=True)], junk),
        "hard": (hard, [np.concatenate([j, e]) for j, e in zip(junk, easy, strict=True)]),
    }


def load_revisitop(gnd_path: str | os.PathLike[str], images: str | os.PathLike[str]) -> GroundTruth:
    """A revisitop/cirtorch ``gnd_<dataset>.pkl`` (imlist, qimlist, gnd) with its images under ``images``."""
    data = safe_load_pickle(gnd_path)
    if not isinstance(data, dict) or not {"imlist", "qimlist", "gnd"} <= data.keys():
        raise IndexerError(f"{gnd_path}: expected a dict with imlist, qimlist and gnd (a revisitop gnd_*.pkl)")
    root = Path(images).expanduser().absolute()
    gnd = list(data["gnd"])
    if len(gnd) != len(data["qimlist"]):
        raise IndexerError(f"{gnd_path}: {len(gnd)} gnd entries for {len(data['qimlist'])} queries")
    if gnd and "easy" in gnd[0]:
        setups = revisitop_setups(gnd)
    else:  # original Oxford5k / Paris6k files: one setup, positives 'ok'
        setups = {"ok": ([_indices(g.get("ok")) for g in gnd], [_indices(g.get("junk")) for g in gnd])}
    boxes: list[Box | None] = []
    for g in gnd:
        bbx = g.get("bbx")
        boxes.append(None if bbx is None or len(bbx) != 4 else tuple(float(v) for v in bbx))  # type: ignore[misc]
    return GroundTruth(
        kind="revisitop",
        source=os.fspath(gnd_path),
        queries=[_image_path(root, n) for n in data["qimlist"]],
        database=[_image_path(root, n) for n in data["imlist"]],
        setups=setups,
        boxes=boxes,
    )


def _image_path(root: Path, name: str) -> str:
    name = str(name)
    return str(root / (name if Path(name).suffix.lower() in IMAGE_EXTENSIONS else name + ".jpg"))


def _images_under(folder: Path, recursive: bool = True) -> list[str]:
    return [str(p) for p in iter_image_files(folder, recursive=recursive)]


def load_classes(root: str | os.PathLike[str]) -> GroundTruth:
    """``root/<class>/…``: every image queries all others; same class = positive, itself = junk.

    Images directly in ``root`` belong to no class: they are database-only distractors.
    """
    top = Path(root).expanduser().absolute()
    if not top.is_dir():
        raise IndexerError(f"{root}: not a folder (expected DIR/<class>/<images>)")
    classes = sorted(d for d in top.iterdir() if d.is_dir())
    members = [_images_under(d) for d in classes]
    queries = [p for m in members for p in m]
    if not queries:
        raise IndexerError(f"{root}: no images in class sub-folders (expected DIR/<class>/<images>)")
    distractors = _images_under(top, recursive=False)
    database = queries + distractors
    ok, junk, start = [], [], 0
    for m in members:
        ids = np.arange(start, start + len(m), dtype=np.int64)
        for i in ids:
            ok.append(ids[ids != i])
            junk.append(np.array([i], dtype=np.int64))
        start += len(m)
    return GroundTruth("classes", str(top), queries, database, {"all": (ok, junk)})


def load_pairs(path: str | os.PathLike[str], database: str | os.PathLike[str] | None = None) -> GroundTruth:
    """JSON ``{query: [relevant database paths]}`` (relative paths: from the JSON's folder).

    The database is the relevant images plus every image under ``database`` (a folder of distractors and
    originals); a query that is itself in the database is junk for its own search.
    """
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise IndexerError(f"{path}: cannot read: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IndexerError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise IndexerError(f"{path}: expected a JSON object {{query path: [relevant database paths]}}")
    base = Path(path).expanduser().absolute().parent

    def resolve(p: Any) -> str:
        q = Path(str(p)).expanduser()
        return os.path.abspath(q if q.is_absolute() else base / q)

    queries = [resolve(q) for q in data]
    relevant = [[resolve(p) for p in v] for v in data.values()]
    db = _images_under(Path(database).expanduser()) if database is not None else []
    seen = dict.fromkeys(db)
    for rel in relevant:
        seen.update(dict.fromkeys(rel))
    db_list = list(seen)
    where = {p: i for i, p in enumerate(db_list)}
    ok = [np.array(sorted({where[p] for p in rel}), dtype=np.int64) for rel in relevant]
    junk = [np.array([where[q]] if q in where else [], dtype=np.int64) for q in queries]
    return GroundTruth("pairs", os.fspath(path), queries, db_list, {"all": (ok, junk)})


def load_ground_truth(
    kind: str, source: str | os.PathLike[str], images: str | os.PathLike[str] | None = None
) -> GroundTruth:
    """Load ``revisitop`` (a gnd pkl; ``images``: its jpg folder), ``classes`` (a folder) or ``pairs`` (JSON)."""
    if kind == "revisitop":
        if images is None:
            raise IndexerError("revisitop ground truth needs the folder of the dataset's images (--images DIR)")
        return load_revisitop(source, images)
    if kind == "classes":
        return load_classes(source)
    if kind == "pairs":
        return load_pairs(source, images)
    raise IndexerError(f"unknown ground truth {kind!r}: use one of {', '.join(KINDS)}")


# -- scoring -------------------------------------------------------------------------------------------------
def _metric_names(kind: str, ks: Sequence[int]) -> list[str]:
    if kind == "revisitop":
        return ["mAP", *(f"mP@{k}" for k in ks)]
    return ["mAP", *(f"recall@{k}" for k in ks), *(f"P@{k}" for k in ks)]


def score(
    gt: GroundTruth,
    rankings: Sequence[Sequence[int]] | np.ndarray,
    ks: Iterable[int] = KS,
    scores: Sequence[Sequence[float]] | np.ndarray | None = None,
) -> dict[str, Any]:
    """The result dict for rankings of ``gt.database`` indices: metrics per setup, plus per-query AP/rank.

    Metrics are fractions in [0, 1] (``None`` when no query of a setup has positives); ``first_positive`` is the
    1-based rank of a query's first positive after junk removal, 0 when none was ranked. With ``scores`` (the
    similarity of every ranked item) the setups also get ``µAP``.
    """
    ks = tuple(ks)
    names = _metric_names(gt.kind, ks)
    setups: dict[str, Any] = {}
    for name, (ok, junk) in gt.setups.items():
        m = ranking_metrics(rankings, ok, junk, ks)
        if scores is not None:
            m["µAP"] = micro_average_precision(rankings, scores, ok, junk)
        setups[name] = {
            **{n: None if np.isnan(m[n]) else m[n] for n in (*names, *(("µAP",) if scores is not None else ()))},
            "evaluated": m["evaluated"],
            "empty": m["empty"],
            "per_query": [
                {"query": q, "ap": a, "first_positive": f}
                for q, a, f in zip(gt.queries, m["ap"], m["first_positive"], strict=True)
            ],
        }
    return {
        "ground_truth": gt.kind,
        "source": gt.source,
        "queries": len(gt.queries),
        "database": len(gt.database),
        "metrics": names,
        "setups": setups,
    }


def evaluate_vectors(
    gt: GroundTruth, query_vectors: np.ndarray, database_vectors: np.ndarray, ks: Iterable[int] = KS
) -> dict[str, Any]:
    """Score vectors (rows in ``gt.queries`` / ``gt.database`` order) with exact inner-product search."""
    if len(query_vectors) != len(gt.queries) or len(database_vectors) != len(gt.database):
        raise IndexerError(
            f"need {len(gt.queries)} query and {len(gt.database)} database vectors, "
            f"got {len(query_vectors)} and {len(database_vectors)}"
        )
    ranking, sims = exact_search(query_vectors, database_vectors)
    result = score(gt, ranking, ks, sims)
    result.update(k=len(gt.database), search="exact")
    return result


def query_images(gt: GroundTruth) -> Iterator[str | Image.Image]:
    """The query inputs to embed: paths, or (revisitop) the image cropped to its box, decoded at full size."""
    for q, box in zip(gt.queries, gt.boxes, strict=True):
        if box is None:
            yield q
            continue
        try:
            yield load_image(q).crop(box)
        except ImageError as e:
            raise IndexerError(f"query {q}: {e}") from None


def evaluate_index(
    index: ImageIndex,
    gt: GroundTruth,
    k: int | None = None,
    ks: Iterable[int] = KS,
    progress: Callable[[int, int], None] | None = None,
    batch: int = 32,
    **search_options: Any,
) -> dict[str, Any]:
    """Search ``index`` with every query of ``gt`` and score the hits (what users of the index get).

    Query vectors stored in the index are reused (no re-embedding); others, and every cropped revisitop
    query, are embedded by the index's extractor. ``k`` defaults to the whole index (at most 16,384, Milvus's
    limit): exact revisitop numbers need the full ranking; a shorter one counts unranked positives as misses.
    ``search_options`` go to :meth:`ImageIndex.search_many` (e.g. ``qe=2`` for query expansion).
    """
    n = len(index)
    if n == 0:
        raise IndexerError(f"the index {index.uri} (collection {index.collection!r}) is empty: add images first")
    k = min(n, MAX_SEARCH_K) if k is None else int(k)
    if not 1 <= k <= MAX_SEARCH_K:
        raise IndexerError(f"k must be between 1 and {MAX_SEARCH_K}, got {k}")
    present = _stored(index, gt.database, ("path",))
    missing = [p for p in gt.database if p not in present]
    if len(missing) == len(gt.database):
        raise IndexerError(
            f"none of the {len(gt.database)} database images of {gt.source} is in the index: index them first "
            "(`poolvec index DIR`, or `poolvec eval … --add`)"
        )
    stored = _stored(index, [q for q, b in zip(gt.queries, gt.boxes, strict=True) if b is None], ("path", "vector"))
    need = [i for i, (q, b) in enumerate(zip(gt.queries, gt.boxes, strict=True)) if b is not None or q not in stored]
    embedded = _embed(index, gt, need)
    chosen = set(need)
    where = {p: i for i, p in enumerate(gt.database)}
    rankings: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    for start in range(0, len(gt.queries), batch):
        vectors = []
        for i in range(start, min(start + batch, len(gt.queries))):
            if i in chosen:
                j, vec = next(embedded)
                assert j == i
            else:
                vec = np.asarray(stored[gt.queries[i]]["vector"], dtype=np.float32)
            vectors.append(vec)
        for hits in index.search_many(vectors, k=k, **search_options):
            rankings.append(np.array([where.get(h.path, -1) for h in hits], dtype=np.int64))
            scores.append(np.array([h.score for h in hits], dtype=np.float32))
        if progress is not None:
            progress(len(rankings), len(gt.queries))
    result = score(gt, rankings, ks, scores)
    result.update(k=k, search=f"{index.uri} · {index.collection}", n_missing=len(missing), missing=missing[:10])
    return result


def _embed(index: ImageIndex, gt: GroundTruth, which: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    """(query number, vector) for the queries that must be embedded, in order."""
    chosen = set(which)
    inputs = (x for i, x in enumerate(query_images(gt)) if i in chosen)
    for i, item in zip(which, index.extractor.embed_iter(inputs), strict=True):
        if item.error is not None:
            raise IndexerError(f"query {gt.queries[i]}: {item.error}")
        yield i, np.asarray(item.vector, dtype=np.float32)


def _stored(index: ImageIndex, paths: Sequence[str], fields: tuple[str, ...], chunk: int = 256) -> dict[str, Any]:
    """Rows of the index for those paths that it holds (matched by path id and exact path)."""
    found: dict[str, Any] = {}
    for start in range(0, len(paths), chunk):
        part = paths[start : start + chunk]
        rows = index.store.get([path_id(p) for p in part], fields=fields)
        for p in part:
            row = rows.get(path_id(p))
            if row is not None and row.get("path") == p:
                found[p] = row
    return found
