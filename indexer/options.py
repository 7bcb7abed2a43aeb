"""The options people give — on the CLI, to the HTTP server, to the Ray engine — as typed objects.

:class:`EmbeddingOptions` holds how images should become vectors (the recipe asked for: backbone, weights, layer,
pooling, input policy, scales, decoder) and how fast that runs here (its :attr:`~EmbeddingOptions.runtime`). An index
stores the :class:`~poolvec.extractor.Recipe` these options make; the runtime part is never stored.
:class:`Shard` is one process's share of a job. Importing this module imports no torch: the CLI's ``--help``
stays instant.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from poolvec.extractor.defaults import DEFAULT_BACKBONE, DEFAULT_MAX_SIDE, DEFAULT_POOLING, DEFAULT_WEIGHTS
from poolvec.extractor.recipe import Runtime
from poolvec.indexer.errors import IndexerError

if TYPE_CHECKING:
    from poolvec.extractor import Extractor

#: The fields that decide the vectors (stored with an index); the others only decide speed.
RECIPE = ("backbone", "weights", "layer", "pooling", "max_side", "size", "crop", "scales", "decoder")
#: The speed settings, the fields of :class:`~poolvec.extractor.Runtime` that people set.
RUNTIME = ("batch_size", "workers", "device", "precision", "optimize")


@dataclass(frozen=True)
class EmbeddingOptions:
    """How images become vectors. Defaults are the product's defaults (an existing index keeps its own)."""

    backbone: str = DEFAULT_BACKBONE
    weights: str = DEFAULT_WEIGHTS
    layer: str | None = None
    pooling: str = DEFAULT_POOLING
    max_side: int = DEFAULT_MAX_SIDE
    size: int | None = None
    crop: bool = False
    scales: str = "1"
    decoder: str = "pil"
    batch_size: int | None = None
    workers: int = 2
    device: str = "auto"
    precision: str = "auto"
    optimize: bool | str = "auto"

    @property
    def is_default_recipe(self) -> bool:
        """True when every recipe field is at its default: an existing index then uses its own stored recipe."""
        default = EmbeddingOptions()
        return all(getattr(self, f) == getattr(default, f) for f in RECIPE)

    @property
    def runtime(self) -> Runtime:
        """The speed settings (checked)."""
        return Runtime(
            batch_size=self.batch_size,
            workers=self.workers,
            device=self.device,
            precision=self.precision,
            optimize=self.optimize,
        )

    def with_runtime(self, **changes: Any) -> EmbeddingOptions:
        """A copy with some fields changed."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise IndexerError(f"unknown embedding option(s): {', '.join(sorted(unknown))}")
        return replace(self, **changes)

    def scale_values(self) -> tuple[float, ...]:
        """``scales`` ("1,0.7071,0.5") as numbers."""
        try:
            values = tuple(float(s) for s in self.scales.split(",") if s.strip())
        except ValueError:
            raise IndexerError(f"--scales must be comma-separated numbers, got {self.scales!r}") from None
        if not values or any(v <= 0 for v in values):
            raise IndexerError(f"--scales must be positive numbers, got {self.scales!r}")
        return values

    def check(self) -> EmbeddingOptions:
        """Refuse bad values before anything loads (scales, runtime settings); returns ``self``."""
        self.scale_values()
        self.runtime  # noqa: B018  (validates)
        return self

    def extractor(self) -> Extractor:
        """Build the :class:`~poolvec.extractor.Extractor` these options describe (loads the model)."""
        from poolvec.extractor import Extractor

        return Extractor(
            backbone=self.backbone,
            weights=None if self.weights.lower() == "none" else self.weights,
            layer=self.layer,
            pooling=self.pooling,
            max_side=self.max_side,
            size=self.size,
            crop=self.crop,
            scales=self.scale_values(),
            decoder=self.decoder,
            runtime=self.runtime,
        )


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: one process's share of a job, by the stable path id, so that every process
    agrees on who takes which file."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not (self.count >= 1 and 0 <= self.index < self.count):
            raise IndexerError(f"shard must be I/N with 0 ≤ I < N, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, spec: str | tuple[int, int] | Shard | None) -> Shard | None:
        """``"I/N"``, ``(i, n)`` or a :class:`Shard` (``None``: the whole job)."""
        if spec is None or isinstance(spec, Shard):
            return spec
        if isinstance(spec, str):
            try:
                i, n = (int(v) for v in spec.split("/"))
            except ValueError:
                raise IndexerError(f"--shard must look like I/N (e.g. 0/4), got {spec!r}") from None
            return cls(i, n)
        i, n = spec
        return cls(int(i), int(n))

    def takes(self, key: int) -> bool:
        """Whether this shard takes the file whose path id is ``key``."""
        return key % self.count == self.index


__all__ = ["RECIPE", "RUNTIME", "EmbeddingOptions", "Shard"]
