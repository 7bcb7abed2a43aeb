"""Images → feature maps → embeddings: decoding, the input policy, backbones and the :class:`Extractor`."""

from .backbones import DEFAULT_BACKBONE, DEFAULT_WEIGHTS, Backbone, BackboneSpec, available_backbones, build_backbone
from .edits import EditPolicy
from .errors import ExtractorError, ImageError
from .extractor import DEFAULT_POOLING, Embedded, Extractor, ImageInput, pick_device
from .images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, iter_image_files, load_image
from .preprocess import DEFAULT_MAX_SIDE, InputPolicy
from .tuning import Tuning, sample_evenly

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
