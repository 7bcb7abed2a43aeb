"""The input policy: how a decoded image becomes the network's input tensor.

The default keeps the aspect ratio: the image is resized so that its longer side is ``max_side`` (up or
down, so every image is seen at the same scale), with no crop, so nothing at the borders is lost. The classic
square policy (``size=224, crop=True``: shorter side to 224, centre crop) remains available.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from poolvec.extractor.recipe import InputPolicy


def resize(pixels: torch.Tensor, policy: InputPolicy) -> torch.Tensor:
    """Resize uint8 ``[3, H, W]`` pixels to the policy's size (and for the square policy, centre-crop).

    Bicubic with antialiasing, Pillow's filter, run by torchvision's native uint8 kernel: about 4× faster than
    Pillow's on the CPU, within one grey level of it, and the same function on every device and decoder.
    """
    h, w = pixels.shape[-2:]
    tw, th = policy.target_size(w, h)
    if (tw, th) != (w, h):
        pixels = TF.resize(pixels, [th, tw], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    if policy.crop:
        assert policy.size is not None
        pixels = TF.center_crop(pixels, [policy.size, policy.size])
    return pixels


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image → uint8 tensor [3, H, W], channels-last in memory (what the resize kernel is fastest on)."""
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def normalize(batch: torch.Tensor, policy: InputPolicy) -> torch.Tensor:
    """uint8 [B, 3, H, W] → float32 normalised with the policy's mean/std (on the batch's device)."""
    mean = torch.tensor(policy.mean, device=batch.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(policy.std, device=batch.device).view(1, 3, 1, 1) * 255.0
    return (batch.float() - mean) / std
