"""Options shared by the commands, each declared once: the index's address, output switches, and the embedding
options, which a command receives as one :class:`~poolvec.indexer.options.EmbeddingOptions`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from poolvec.indexer.options import RECIPE, EmbeddingOptions

DbOpt = Annotated[
    str,
    typer.Option(
        "--db",
        "--uri",
        metavar="PATH|URL",
        help="Milvus Lite database (a folder whose name ends in .db), or http(s)://host:port of a Milvus server.",
    ),
]
TokenOpt = Annotated[
    str | None, typer.Option("--token", envvar="POOLVEC_TOKEN", metavar="TOKEN", help="Milvus server token.")
]
CollOpt = Annotated[str, typer.Option("--collection", "-c", metavar="NAME", help="Collection name.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON on stdout, for scripts.")]
UnderOpt = Annotated[Path | None, typer.Option(metavar="FOLDER", help="Only images under this folder.")]

#: The embedding options: name → (type, option declaration, default). Commands receive them as one
#: :class:`EmbeddingOptions` (see :func:`embedding_options`); adding an option here adds it everywhere.
_RECIPE_PANEL, _RUNTIME_PANEL = "Embedding (fixed when an index is created)", "Speed"
_EMBEDDING: dict[str, tuple[Any, Any]] = {
    "backbone": (
        str,
        typer.Option(
            metavar="NAME", help="Packaged (tf_efficientnet_lite0/1/2), a torchvision model name, or timm/NAME."
        ),
    ),
    "weights": (
        str,
        typer.Option(metavar="WEIGHTS", help="'default', a torchvision weights name, a local file, or 'none'."),
    ),
    "layer": (str | None, typer.Option(metavar="LAYER", help="Feature-map layer (default: last conv stage).")),
    "pooling": (
        str,
        typer.Option(metavar="SPEC", help="Pooling spec, e.g. 'gem(p=3) | l2' (see `poolvec pooling`)."),
    ),
    "max_side": (
        int,
        typer.Option(metavar="PIXELS", min=16, help="Longer side of the network input."),
    ),
    "size": (
        int | None,
        typer.Option(metavar="PIXELS", min=16, help="Square input instead: resize to SIZE (with --crop: centre crop)."),
    ),
    "crop": (bool, typer.Option(help="With --size: shorter side to SIZE, then centre crop.")),
    "scales": (str, typer.Option(metavar="LIST", help="Input scales, comma-separated, e.g. '1,0.7071,0.5'.")),
    "decoder": (
        str,
        typer.Option(metavar="NAME", help="JPEG decoder: 'pil', or 'torchvision' (nvJPEG on a GPU)."),
    ),
    "batch_size": (
        int | None,
        typer.Option(metavar="N", min=1, help="Images per forward pass (default: picked per image size and device)."),
    ),
    "workers": (int, typer.Option(metavar="N", min=0, help="Decode threads (0: decode in the main thread).")),
    "device": (str, typer.Option(metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps.")),
    "precision": (
        str,
        typer.Option(metavar="KIND", help="auto (fp16 on CUDA, fp32 elsewhere), fp32, fp16 or bf16."),
    ),
    "optimize": (
        bool | None,
        typer.Option(help="Trace+freeze the backbone on CPU (default: once 64 images are embedded)."),
    ),
}
#: The speed options alone (for commands on an existing index, whose recipe is stored).
RUNTIME_FIELDS = tuple(name for name in _EMBEDDING if name not in RECIPE)


def embedding_options(*fields: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the embedding options ``fields`` (default: all of them); it receives them as one
    ``embedding: EmbeddingOptions`` argument."""
    chosen = fields or tuple(_EMBEDDING)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn, eval_str=True)
        params = [p for p in sig.parameters.values() if p.name != "embedding"]
        for name in chosen:
            kind, option = _EMBEDDING[name]
            option.rich_help_panel = _RECIPE_PANEL if name in RECIPE else _RUNTIME_PANEL
            # the defaults are EmbeddingOptions' own; --optimize/--no-optimize is unset (None) until given
            default = None if name == "optimize" else getattr(EmbeddingOptions(), name)
            params.append(
                inspect.Parameter(
                    name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option]
                )
            )

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in chosen}
            if values.get("optimize", "auto") is None:
                values["optimize"] = "auto"
            kwargs["embedding"] = EmbeddingOptions(**values)
            return fn(*args, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return wrapper

    return decorate


TuneOpt = Annotated[
    bool, typer.Option(help="A new index first learns copy invariances from its own photos (seeded edits).")
]
TuneEditsOpt = Annotated[
    int,
    typer.Option(
        "--tune-edits",
        metavar="N",
        min=1,
        help="Edited copies made for tuning, spread over the photos (1–8 each); fewer is faster.",
    ),
]
#: ``poolvec index``'s options of a new collection, of splitting and of the Ray engine.
IndexTypeOpt = Annotated[
    str | None,
    typer.Option(metavar="KIND", help="Milvus vector index of a new collection: HNSW (default), IVF_FLAT, FLAT…"),
]
IndexParamsOpt = Annotated[
    str | None,
    typer.Option(metavar="JSON", help='Its build parameters, e.g. \'{"M": 32, "efConstruction": 256}\'.'),
]
ShardOpt = Annotated[
    str | None, typer.Option(metavar="I/N", help="Index only shard I of N (split a job across processes).")
]
FailuresOpt = Annotated[
    Path | None, typer.Option(metavar="FILE", help="Write the skipped files and reasons here (JSON lines).")
]
EngineOpt = Annotated[
    str,
    typer.Option(
        metavar="ENGINE",
        help="Embed in this process (local) or on a Ray cluster's actors (ray).",
        rich_help_panel="Ray",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        metavar="ADDRESS",
        help="--engine ray: the cluster (default: $RAY_ADDRESS, a local `ray start`, or a new local Ray).",
        rich_help_panel="Ray",
    ),
]
ActorsOpt = Annotated[
    int, typer.Option(metavar="N", min=1, help="--engine ray: embedding actors.", rich_help_panel="Ray")
]
GpusOpt = Annotated[
    float, typer.Option(metavar="N", min=0, help="--engine ray: GPUs per actor (0: CPU).", rich_help_panel="Ray")
]

__all__ = [
    "RUNTIME_FIELDS",
    "ActorsOpt",
    "CollOpt",
    "DbOpt",
    "EngineOpt",
    "FailuresOpt",
    "GpusOpt",
    "IndexParamsOpt",
    "IndexTypeOpt",
    "JsonOpt",
    "QuietOpt",
    "RayAddressOpt",
    "ShardOpt",
    "TokenOpt",
    "TuneEditsOpt",
    "TuneOpt",
    "UnderOpt",
    "embedding_options",
]
