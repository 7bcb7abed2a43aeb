"""The extractor's defaults, importable without torch (the CLI's ``--help`` shows them without loading a model)."""

from __future__ import annotations

#: The backbone every new index uses unless told otherwise (packaged ImageNet weights, no download).
DEFAULT_BACKBONE = "tf_efficientnet_lite0"
#: ``weights="default"`` means: packaged weights, torchvision's DEFAULT enum, or timm's pretrained tag.
DEFAULT_WEIGHTS = "default"
#: Longer side of the network input (aspect ratio kept). EfficientNet-Lite0 was trained on 224×224 crops of images
#: resized to ~256 px, so objects appear at about that scale; 320 px on the longer side keeps a 4:3 photo at
#: 320×240 — close to the training scale and to the 224² pixel budget (1.5×), while keeping the whole frame (no
#: centre crop) and enough detail for near-duplicates. Larger sides cost time quadratically on a CPU.
DEFAULT_MAX_SIDE = 320
#: GeM, then the learned whitening (fitted by every index on its own photos; docs/EVALUATION.md, "Self-tuning"), L2.
DEFAULT_POOLING = "gem(p=3) | l2 | lw | l2"
#: JPEG decoders: "pil" (Pillow everywhere, DCT-scaled JPEG decode) or "torchvision" (on the extractor's device).
DECODERS = ("pil", "torchvision")
#: Forward-pass precisions: "auto" is fp16 autocast on CUDA and fp32 elsewhere (bf16 is 10× slower on CPUs without it).
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
#: Tracing the backbone on CPU: "auto" once 64 images have been embedded, True from the first batch, False never.
OPTIMIZE = ("auto", True, False)
#: Pillow's own decompression-bomb threshold (about 89.5 megapixels), used as our default limit.
DEFAULT_MAX_PIXELS: int = 1024 * 1024 * 1024 // 4 // 3
#: Files larger than this are skipped unread (no photo format needs more; a 100 MP 16-bit TIFF is 600 MB).
DEFAULT_MAX_BYTES: int = 1024 * 1024 * 1024
#: Decoded pixels (bytes) a process holds at once across all its threads (images.DecodeBudget): one image at the
#: pixel limit (89.5 MP × 4 B = 358 MB) at a time, a dozen 12-megapixel photos side by side.
DEFAULT_DECODE_MEMORY: int = 512 << 20

#: Edited copies a new index makes to tune itself (extractor.Tuning.edits; measurements in extractor/tuning.py).
DEFAULT_TUNE_EDITS = 2048
#: Channels of the last convolutional stage of the packaged backbones (and their aliases): ``poolvec pooling``
#: reports output dimensions for them without loading a model. Checked against the models by the tests.
PACKAGED_CHANNELS = {f"{prefix}efficientnet_lite{i}": 1280 for i in range(3) for prefix in ("tf_", "")}

__all__ = [
    "DECODERS",
    "DEFAULT_BACKBONE",
    "DEFAULT_DECODE_MEMORY",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SIDE",
    "DEFAULT_POOLING",
    "DEFAULT_WEIGHTS",
    "OPTIMIZE",
    "PACKAGED_CHANNELS",
    "PRECISIONS",
]
