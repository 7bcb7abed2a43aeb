"""poolvec pooling: CNN feature maps ``[B, C, H, W]`` → fixed-size vectors ``[B, D]``.

    import pooling
    pipe = pooling.build("gem(p=3) | l2")       # pooling.DEFAULT_SPEC
    vecs = pipe(feature_maps, mask)             # [B, C] float32, L2-normalised

See ``docs/POOLING.md`` and :func:`methods` for the list of methods and post-steps. Names are imported on first
use (PEP 562): the method registry and spec parsing (:mod:`poolvec.pooling.spec`) need no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from poolvec import lazy_exports

#: Public name → the submodule that defines it.
_EXPORTS = {
    "L2N": "modules",
    "GeM": "modules",
    "Pool": "modules",
    "RGeM": "modules",
    "DEFAULT_SPEC": "pipeline",
    "Pipeline": "pipeline",
    "build": "pipeline",
    "from_dict": "pipeline",
    "rmac_regions": "regions",
    "PoolingError": "spec",
    "methods": "spec",
}

if TYPE_CHECKING:
    from poolvec.pooling import functional
    from poolvec.pooling.modules import L2N, GeM, Pool, RGeM
    from poolvec.pooling.pipeline import DEFAULT_SPEC, Pipeline, build, from_dict
    from poolvec.pooling.regions import rmac_regions
    from poolvec.pooling.spec import PoolingError, methods


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, ("functional",))

__all__ = [
    "DEFAULT_SPEC",
    "L2N",
    "GeM",
    "Pipeline",
    "Pool",
    "PoolingError",
    "RGeM",
    "build",
    "from_dict",
    "functional",
    "methods",
    "rmac_regions",
]
