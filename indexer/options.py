"""The embedding options of the CLI, the HTTP server and the Ray engine, as one object.

:class:`EmbeddingOptions` holds everything that decides how images become vectors (the *recipe*: backbone,
weights, layer, pooling, input policy, scales, decoder) and how fast that runs here (batch size, decode
threads, device, tracing). The recipe is stored with an index; the runtime part is not. Importing this module
imports no torch: the CLI's ``--help`` stays instant.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from extractor.defaults import DEFAULT_BACKBONE, DEFAULT_MAX_SIDE, DEFAULT_POOLING, DEFAULT_WEIGHTS

from .errors import IndexerError

if TYPE_CHECKING:
    from extractor import Extractor

#: The fields that decide the vectors (stored with an index); the others only decide speed.
RECIPE = ("backbone", "weights", "layer", "pooling", "max_side", "size", "crop", "scales", "decoder")


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
    optimize: bool | str = "auto"

    @property
    def is_default_recipe(self) -> bool:
        """True when every recipe field is at its default: an existing index then uses its own stored recipe."""
        default = EmbeddingOptions()
        return all(getattr(self, f) == getattr(default, f) for f in RECIPE)

    def runtime(self) -> dict[str, Any]:
        """The speed settings, as ``ImageIndex``/``Extractor.from_config`` take them."""
        return {
            "batch_size": self.batch_size,
            "workers": self.workers,
            "device": self.device,
            "optimize": self.optimize,
        }

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

    def extractor(self) -> Extractor:
        """Build the :class:`extractor.Extractor` these options describe (loads the model)."""
        from extractor import Extractor

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
            **self.runtime(),
        )


__all__ = ["RECIPE", "EmbeddingOptions"]
