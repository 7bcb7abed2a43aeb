"""``poolvec embed``: images to a ``.npy`` file of vectors (and a file naming each row's image), without Milvus."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from poolvec.extractor.files import iter_image_files, require_existing
from poolvec.indexer.cli.output import err, jsonl, skipped
from poolvec.indexer.cli.params import QuietOpt, embedding_options
from poolvec.indexer.cli.progress import Bars
from poolvec.indexer.cli.run import run
from poolvec.indexer.errors import EXIT_OK, EXIT_PARTIAL, IndexerError
from poolvec.indexer.milvus import names
from poolvec.indexer.options import EmbeddingOptions


@embedding_options()
def embed(
    files: Annotated[list[Path], typer.Argument(metavar="IMAGE_OR_FOLDER", help="Images, or folders of images.")],
    out_path: Annotated[
        Path, typer.Option("--out", "-o", metavar="NPY", help="Vectors as a .npy file [N, D] float32.")
    ],
    paths_out: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Row i's file, one JSON object per line (default: OUT with .jsonl)."),
    ] = None,
    nul: Annotated[
        bool,
        typer.Option("--nul", help="Write the paths file as raw file names ended by NUL bytes (xargs -0), not JSON."),
    ] = False,
    tune: Annotated[
        bool,
        typer.Option(
            help="Fit the learned whitening on these images first (default: the packaged fit, the same vectors "
            "as Extractor())."
        ),
    ] = False,
    quiet: QuietOpt = False,
    *,
    embedding: EmbeddingOptions,
) -> None:
    """Embed images into a .npy file (and a file naming each row's image) without Milvus. Exit 1 if some failed."""

    def body() -> int:
        require_existing(files)
        inputs, unread = _inputs(files)
        skipped(unread)
        ex = embedding.check().extractor()
        if ex.pipeline.needs_fit or (tune and ex.pipeline.needs_pairs):
            if not inputs:
                raise IndexerError("nothing to embed: no image files given")
            with Bars(quiet) as bars:
                ex.fit(inputs, progress=lambda done, n: bars.show("tune", f"tuning on {n} photos", "photos", done, n))
        import numpy as np

        vectors, kept, failed = [], [], 0
        for item in ex.embed_iter(inputs):
            if item.error is not None:
                failed += 1
                skipped([(item.source, item.error)])
                continue
            vectors.append(item.vector)
            kept.append(item.source)
        arr = np.stack(vectors) if vectors else np.zeros((0, ex.dim), np.float32)
        listing = _save(arr, kept, out_path, paths_out or out_path.with_suffix(".txt" if nul else ".jsonl"), nul)
        err.print(
            f"wrote {arr.shape[0]}×{arr.shape[1]} vectors to {escape(str(out_path))}, paths to {escape(str(listing))}"
        )
        return EXIT_PARTIAL if failed or unread else EXIT_OK

    run(body)


def _inputs(files: list[Path]) -> tuple[list[str], list[tuple[str, str]]]:
    """The image files given and found in the folders given; the folders that could not be read, with why."""
    unread: list[tuple[str, str]] = []
    found = (
        iter_image_files(f, on_skip=lambda path, why: unread.append((path, why))) if f.is_dir() else [f] for f in files
    )
    return [str(p) for paths in found for p in paths], unread


def _save(vectors: Any, kept: list[str], out_path: Path, listing: Path, nul: bool) -> Path:
    """The vectors as .npy, and which file each row is (JSON lines, or NUL-ended raw names)."""
    import numpy as np

    try:
        np.save(out_path, vectors)
        if nul:
            listing.write_bytes(b"".join(os.fsencode(p) + b"\0" for p in kept))
        else:
            listing.write_text(jsonl({"row": i, **names.json_fields(p)} for i, p in enumerate(kept)), "utf-8")
    except OSError as e:
        raise IndexerError(f"cannot write {e.filename or out_path}: {e.strerror or e}") from None
    return listing


__all__ = ["embed"]
