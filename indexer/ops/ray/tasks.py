"""What Ray's tasks and actors run: reading files, embedding them in an actor, and turning output batches back
into the single-process engine's results. Imports no torch (the actor imports it when it starts): Ray starts
fresh worker processes for reading and writing tasks, and torch there would cost each ~4 s and ~0.6 GB."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from poolvec.extractor.embedded import Embedded
from poolvec.extractor.images import EncodedImage

if TYPE_CHECKING:
    from poolvec.extractor.recipe import Recipe, Runtime


def read_files(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ray Data step: each planned file's bytes (``data``), or why it could not be read (``error``)."""
    datas, errors, kinds = [], [], []
    for path in batch["path"]:
        try:
            with open(bytes(path), "rb") as f:
                datas.append(f.read())
            errors.append("")
            kinds.append("")
        except OSError as e:
            datas.append(b"")
            errors.append(f"cannot read: {e.strerror or e}")
            kinds.append("not_found" if isinstance(e, FileNotFoundError) else "unreadable")
    return {**batch, "data": _objects(datas), "error": _objects(errors), "kind": _objects(kinds)}


class Embedder:
    """Ray Data actor: the index's extractor, rebuilt once from its recipe; file bytes in, vectors out."""

    def __init__(self, recipe: Recipe, runtime: Runtime, threads: int, progress: Any = None) -> None:
        import ray
        import torch

        from poolvec.extractor import Extractor

        torch.set_num_threads(threads)
        if isinstance(recipe, ray.ObjectRef):
            recipe = ray.get(recipe)
        self.extractor = Extractor.from_recipe(recipe, runtime)
        self.progress = progress

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["path"])
        vectors = np.zeros((n, self.extractor.dim), np.float32)
        widths, heights = np.zeros(n, np.int64), np.zeros(n, np.int64)
        errors = [str(e) for e in batch["error"]]
        kinds = [str(k) for k in batch["kind"]]
        todo = [i for i in range(n) if not errors[i]]
        images = [EncodedImage(os.fsdecode(bytes(batch["path"][i])), bytes(batch["data"][i])) for i in todo]
        for i, item in zip(todo, self.extractor.embed_iter(images), strict=True):
            if item.error is not None:
                errors[i], kinds[i] = item.error, item.kind or "unreadable"
            else:
                vectors[i], widths[i], heights[i] = item.vector, item.width, item.height
        out = {k: v for k, v in batch.items() if k != "data"}
        out.update(vector=vectors, width=widths, height=heights, error=_objects(errors), kind=_objects(kinds))
        if self.progress is not None:
            self.progress.add.remote(n)
        return out


def results(batch: dict[str, np.ndarray]) -> Iterator[tuple[Embedded, dict[str, Any]]]:
    """The embedded files of an output batch: (what the extractor made of it, its planned info)."""
    for i, path in enumerate(batch["path"]):
        error = str(batch["error"][i]) or None
        item = Embedded(
            os.fsdecode(bytes(path)),
            None if error else np.asarray(batch["vector"][i], np.float32),
            error,
            int(batch["width"][i]),
            int(batch["height"][i]),
            str(batch["kind"][i]) or None,
        )
        info = {
            "root": os.fsdecode(bytes(batch["root"][i])),
            "size": int(batch["size"][i]),
            "mtime_ns": int(batch["mtime_ns"][i]),
            "sha256": str(batch["sha256"][i]),
            "existed": bool(batch["existed"][i]),
        }
        yield item, info


def _objects(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


__all__ = ["Embedder", "read_files", "results"]
