"""The result of embedding one input: its vector, or why it was skipped (no torch: Ray's write tasks use it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Embedded:
    """One result of :meth:`Extractor.embed_iter`: a vector, or the reason the input was skipped and its kind
    (one of :data:`poolvec.extractor.errors.IMAGE_KINDS`)."""

    source: str
    vector: np.ndarray | None
    error: str | None = None
    width: int = 0
    height: int = 0
    kind: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
