"""poolvec pooling: CNN feature maps ``[B, C, H, W]`` → fixed-size vectors ``[B, D]``.

    import pooling
    pipe = pooling.build("gem(p=3) | l2")       # pooling.DEFAULT_SPEC
    vecs = pipe(feature_maps, mask)             # [B, C] float32, L2-normalised

See ``docs/POOLING.md`` and :func:`methods` for the list of methods and post-steps. Names are imported on first
use (PEP 562): the method registry and spec parsing (:mod:`pooling.spec`) need no torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

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
    from . import functional
    from .modules import L2N, GeM, Pool, RGeM
    from .pipeline import DEFAULT_SPEC, Pipeline, build, from_dict
    from .regions import rmac_regions
    from .spec import PoolingError, methods


def __getattr__(name: str) -> Any:
    if name == "functional":
        return import_module(".functional", __name__)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, "functional"])


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
