"""JPEG decoding with torchvision on the extractor's device: nvJPEG on CUDA (batched), libjpeg-turbo on CPU.

Used when the input policy says ``decoder="torchvision"``. Workers only read the bytes (and check the header
with Pillow, lazily, for the pixel limit); decoding and the antialiased resize run batched on the device.
Pixels differ slightly from the Pillow path, which is why the decoder is part of the embedding config:
index and queries always go through the same one, on a GPU or (same code) on the CPU.
"""

from __future__ import annotations

import io
import os

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from poolvec.extractor.defaults import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from poolvec.extractor.errors import ImageError
from poolvec.extractor.images import EncodedImage
from poolvec.extractor.preprocess import InputPolicy, resize

JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe")


def is_jpeg_path(path: str) -> bool:
    """Whether a path is decoded by this module (by extension; content is checked when decoding)."""
    return path.lower().endswith(JPEG_SUFFIXES)


def read_jpeg(
    path: str | EncodedImage, max_pixels: int | None = DEFAULT_MAX_PIXELS, max_bytes: int | None = DEFAULT_MAX_BYTES
) -> torch.Tensor:
    """The file's bytes (or an :class:`EncodedImage`'s) as a uint8 tensor, after the same guards as the Pillow path
    (size, pixels, format)."""
    data = path.data if isinstance(path, EncodedImage) else None
    name = path.name if isinstance(path, EncodedImage) else path
    if data is None and not os.path.isfile(name):
        if not os.path.exists(name):
            raise ImageError(name, "file not found", "not_found")
        raise ImageError(name, "not a regular file", "not_image")
    size = len(data) if data is not None else os.path.getsize(name)
    if max_bytes is not None and size > max_bytes:
        raise ImageError(name, f"file too large ({size} bytes > {max_bytes}); raise max_bytes to allow it", "too_large")
    try:
        with Image.open(io.BytesIO(data) if data is not None else name) as img:  # header only
            w, h = img.size
            fmt = img.format
    except Exception as e:
        raise ImageError(name, f"not a recognised image format ({type(e).__name__})", "not_image") from None
    if fmt != "JPEG":
        raise ImageError(name, f"named like a JPEG but is {fmt}", "not_image")
    if max_pixels is not None and w * h > max_pixels:
        raise ImageError(name, f"too many pixels ({w}×{h} > {max_pixels}); raise max_pixels to allow it", "too_large")
    if data is None:
        with open(name, "rb") as f:
            data = f.read()
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def decode_resize(
    datas: list[torch.Tensor], policy: InputPolicy, device: torch.device
) -> list[tuple[torch.Tensor, int, int] | str]:
    """Decode JPEG bytes on ``device`` and resize per the policy: (pixels [3,h,w], width, height) or an error."""
    if not datas:
        return []
    try:
        images = decode_jpeg(datas, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)
    except RuntimeError:  # one bad file fails the whole batch: decode one by one to name it
        images = []
        for d in datas:
            try:
                images.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True))
            except RuntimeError as e:
                images.append(f"cannot decode: {str(e).splitlines()[0]}")
    out: list[tuple[torch.Tensor, int, int] | str] = []
    for img in images:
        if isinstance(img, str):
            out.append(img)
        else:
            out.append((resize(img, policy), img.shape[-1], img.shape[-2]))
    return out
