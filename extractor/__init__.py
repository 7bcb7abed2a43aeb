"""Images → feature maps → embeddings: decoding, the input policy, backbones and the :class:`Extractor`.

Names are imported on first use (PEP 562), so that ``import poolvec.extractor`` — and the CLI's ``--help`` — do not load
torch until something needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from poolvec import lazy_exports

#: Public name → the submodule that defines it.
_EXPORTS = {
    "DEFAULT_BACKBONE": "defaults",
    "DEFAULT_MAX_SIDE": "defaults",
    "DEFAULT_POOLING": "defaults",
    "DEFAULT_WEIGHTS": "defaults",
    "DEFAULT_MAX_PIXELS": "defaults",
    "IMAGE_EXTENSIONS": "files",
    "iter_image_files": "files",
    "require_existing": "files",
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
    "InputPolicy": "recipe",
    "Recipe": "recipe",
    "Runtime": "recipe",
    "TuneRecord": "recipe",
    "Tuning": "tuning",
    "sample_evenly": "tuning",
}

if TYPE_CHECKING:
    from poolvec.extractor.backbones import Backbone, BackboneSpec, available_backbones, build_backbone
    from poolvec.extractor.defaults import (
        DEFAULT_BACKBONE,
        DEFAULT_MAX_PIXELS,
        DEFAULT_MAX_SIDE,
        DEFAULT_POOLING,
        DEFAULT_WEIGHTS,
    )
    from poolvec.extractor.edits import EditPolicy
    from poolvec.extractor.embedded import Embedded
    from poolvec.extractor.errors import ExtractorError, ImageError
    from poolvec.extractor.extractor import Extractor, ImageInput, pick_device
    from poolvec.extractor.files import IMAGE_EXTENSIONS, iter_image_files, require_existing
    from poolvec.extractor.images import load_image
    from poolvec.extractor.recipe import InputPolicy, Recipe, Runtime, TuneRecord
    from poolvec.extractor.tuning import Tuning, sample_evenly


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

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
    "Recipe",
    "Runtime",
    "TuneRecord",
    "Tuning",
    "available_backbones",
    "build_backbone",
    "iter_image_files",
    "load_image",
    "pick_device",
    "require_existing",
    "sample_evenly",
]
