"""poolvec pooling: CNN feature maps ``[B, C, H, W]`` → fixed-size vectors ``[B, D]``.

    import pooling
    pipe = pooling.build("gem(p=3) | l2")       # pooling.DEFAULT_SPEC
    vecs = pipe(feature_maps, mask)             # [B, C] float32, L2-normalised

See ``docs/POOLING.md`` and :func:`methods` for the list of methods and post-steps.
"""

from . import functional
from .modules import L2N, GeM, Pool, RGeM
from .pipeline import DEFAULT_SPEC, Pipeline, build, from_dict
from .regions import rmac_regions
from .spec import PoolingError, methods

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
