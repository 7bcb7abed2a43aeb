"""How matches are verified: one typed object from the CLI, the server and the API down to the matching."""

from __future__ import annotations

from dataclasses import dataclass, field

from poolvec.extractor.local.verify import MatchPolicy
from poolvec.indexer.errors import IndexerError

#: When a search also looks for its query's regions: when no candidate of the whole query verifies, always, never.
REGIONS = ("auto", "always", "never")


@dataclass(frozen=True)
class Verification:
    """How search hits and duplicate pairs are shown to correspond (measurements: docs/EVALUATION.md).

    Args:
        side, features: the longer side (pixels) and RootSIFT keypoints of an indexed image's local features.
        query_side, query_features: the same for a query (more, and larger: a copy may be small inside it).
        match: when two images' features correspond (inliers, ratio, RANSAC threshold, spread, scale).
        shortlist: candidates of the global search checked per query (and per region).
        regions: ``"auto"`` searches the query's regions when no candidate of the whole query verifies;
            ``"always"``; ``"never"``.
        cache: images whose local features are kept in memory (~210 kB each; least recently used dropped).
        min_keypoints: an image with fewer keypoints cannot be verified (a smooth gradient, a blank page): its
            pairs are judged by their global score alone.
    """

    side: int = 480
    features: int = 800
    query_side: int = 640
    query_features: int = 3000
    match: MatchPolicy = field(default_factory=lambda: MatchPolicy(min_inliers=10))
    shortlist: int = 10
    regions: str = "auto"
    cache: int = 2048
    min_keypoints: int = 24

    def __post_init__(self) -> None:
        if self.regions not in REGIONS:
            raise IndexerError(f"regions must be one of {', '.join(REGIONS)}, got {self.regions!r}")
        if min(self.side, self.features, self.query_side, self.query_features, self.shortlist) < 1:
            raise IndexerError("verification sizes, feature counts and the shortlist must be ≥ 1")


__all__ = ["REGIONS", "Verification"]
