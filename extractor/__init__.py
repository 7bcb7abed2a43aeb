"""Images → feature maps → embeddings: decoding, the input policy, backbones and the :class:`Extractor`.

Names are imported on first use (PEP 562), so that ``import extractor`` — and the CLI's ``--help`` — do not load
torch until something needs it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

#: Public name → the submodule that defines it.
_EXPORTS = {
    "DEFAULT_BACKBONE": "defaults",
    "DEFAULT_MAX_SIDE": "defaults",
    "DEFAULT_POOLING": "defaults",
    "DEFAULT_WEIGHTS": "defaults",
    "DEFAULT_MAX_PIXELS": "images",
    "IMAGE_EXTENSIONS": "images",
    "iter_image_files": "images",
    "load_image": "images",
    "ExtractorError": "errors",
    "ImageError": "errors",
    "Backbone": "backbones",
    "BackboneSpec": "backbones",
    "available_backbones": "backbones",
    "build_backbone": "backbones",
    "EditPolicy": "edits",
    "Embedded": "embedded",
    "Extractor": "extractor",
    "ImageInput": "extractor",
    "pick_device": "extractor",
    "InputPolicy": "preprocess",
    "Tuning": "tuning",
    "sample_evenly": "tuning",
}

if TYPE_CHECKING:
    from .backbones import Backbone, BackboneSpec, available_backbones, build_backbone
    from .defaults import DEFAULT_BACKBONE, DEFAULT_MAX_SIDE, DEFAULT_POOLING, DEFAULT_WEIGHTS
    from .edits import EditPolicy
    from .embedded import Embedded
    from .errors import ExtractorError, ImageError
    from .extractor import Extractor, ImageInput, pick_device
    from .images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, iter_image_files, load_image
    from .preprocess import InputPolicy
    from .tuning import Tuning, sample_evenly


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "DEFAULT_BACKBONE",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SIDE",
    "DEFAULT_POOLING",
    "DEFAULT_WEIGHTS",
    "IMAGE_EXTENSIONS",
    "Backbone",
    "BackboneSpec",
    "EditPolicy",
    "Embedded",
    "Extractor",
    "ExtractorError",
    "ImageError",
    "ImageInput",
    "InputPolicy",
    "Tuning",
    "available_backbones",
    "build_backbone",
    "iter_image_files",
    "load_image",
    "pick_device",
    "sample_evenly",
]
