"""Pooling spec strings: the method registry, parameter validation, parsing and canonical formatting.

Grammar: ``step ( "|" step )*`` with ``step := name [ "(" arg ( "," arg )* ")" ]`` and
``arg := [ name "=" ] value``; values are ints, floats, ``true``/``false``, ``none``, bare words (``max``)
and tuples ``(1, 2, 4)``. The first step is a pooling method, the rest are post-steps. Positional values
fill parameters in declared order; ``spp(1, 2, 4)`` collects its ints into ``levels``; a bare word that is a
choice of some parameter (``spp(1, 2, op=avg)`` or ``spp(1, 2, avg)``) or the name of a boolean parameter
(``pca(256, whiten)``) sets that parameter.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

__all__ = ["METHODS", "MethodInfo", "Param", "PoolingError", "format_step", "methods", "out_dim", "parse", "short"]


class PoolingError(ValueError):
    """A user-caused pooling problem (bad spec, unfitted step, mismatched input); the message says what to
    do. Its ``kind`` for the error policy (:mod:`poolvec.indexer.errors`) is ``usage``."""

    kind = "usage"


@dataclass(frozen=True)
class Param:
    """One method parameter: its kind drives parsing, validation and canonical formatting."""

    name: str
    default: Any
    kind: str  # float | int | bool | choice | ints | float_or_floats | int_or_none
    doc: str
    low: float | None = None  # inclusive unless low_open
    high: float | None = None  # inclusive
    low_open: bool = False
    choices: tuple[Any, ...] = ()

    def coerce(self, method: str, value: Any) -> Any:
        """Validated, normalised value (tuples stay tuples) or :class:`PoolingError`."""
        where = f"{method}: parameter {self.name!r}"
        if self.kind == "float":
            return self._range(where, _number(where, value, float))
        if self.kind == "int":
            return self._range(where, _number(where, value, int))
        if self.kind == "int_or_none":
            return None if value is None else self._range(where, _number(where, value, int))
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise PoolingError(f"{where} expects true or false, got {_show(value)}")
        if self.kind == "choice":
            if value in self.choices and type(value) is type(self.choices[0]):
                return value
            valid = ", ".join(str(c) for c in self.choices)
            raise PoolingError(f"{where} must be one of: {valid}; got {_show(value)}")
        if self.kind == "ints":
            items = value if isinstance(value, (tuple, list)) else (value,)
            if not items:
                raise PoolingError(f"{where} needs at least one value, e.g. (1, 2, 4)")
            return tuple(self._range(where, _number(where, v, int)) for v in items)
        if self.kind == "float_or_floats":
            if isinstance(value, (tuple, list)):
                if not value:
                    raise PoolingError(f"{where} needs a number or a non-empty tuple of numbers")
                return tuple(self._range(where, _number(where, v, float)) for v in value)
            return self._range(where, _number(where, value, float))
        raise AssertionError(self.kind)

    def _range(self, where: str, v: float) -> Any:
        lo_ok = self.low is None or (v > self.low if self.low_open else v >= self.low)
        hi_ok = self.high is None or v <= self.high
        if not (lo_ok and hi_ok):
            lo = "" if self.low is None else (f"> {self.low}" if self.low_open else f">= {self.low}")
            hi = "" if self.high is None else f"<= {self.high}"
            raise PoolingError(f"{where} must be {' and '.join(s for s in (lo, hi) if s)}, got {v}")
        return v


@dataclass(frozen=True)
class MethodInfo:
    """A registered pooling method or post-step."""

    name: str
    kind: str  # "pool" | "post"
    summary: str
    dim: str  # output dimension as text, in terms of C (pool) or D (post)
    dim_fn: Callable[[int, dict[str, Any]], int]
    params: tuple[Param, ...] = ()
    needs_fit: bool = False
    ref: str = ""  # "module.name" in this package: the pooling function (pool) or step class (post)
    paper: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fn(self) -> Callable[..., Any]:
        """The pooling function or step class, imported on first use (the registry itself needs no torch)."""
        module, _, name = self.ref.rpartition(".")
        return getattr(import_module(f"{__package__}.{module}"), name)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)


def _number(where: str, value: Any, typ: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PoolingError(f"{where} expects {'an integer' if typ is int else 'a number'}, got {_show(value)}")
    if typ is int:
        if isinstance(value, float) and not value.is_integer():
            raise PoolingError(f"{where} expects an integer, got {value}")
        return int(value)
    if not math.isfinite(value):
        raise PoolingError(f"{where} must be finite, got {value}")
    return float(value)


def _show(value: Any) -> str:
    return format_value(value) if isinstance(value, (bool, int, float, tuple, type(None))) else repr(value)


_EPS = Param("eps", 1e-6, "float", "clamp floor / norm epsilon", low=0.0, high=1.0, low_open=True)
_LEVELS = Param("levels", 3, "int", "number of region scales (the global region is always added)", 1, 16)
_OVERLAP = Param("overlap", 0.4, "float", "target overlap of neighbouring regions", 0.0, 1.0, low_open=True)
_P = Param("p", 3.0, "float", "GeM power (1 = average, large = max)", 0.0, 256.0, low_open=True)
_OP = Param("op", "max", "choice", "pooling per cell", choices=("max", "avg"))


def _same(c: int, _: dict[str, Any]) -> int:
    return c


METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in [
        MethodInfo("mac", "pool", "global max pooling", "C", _same, ref="functional.mac"),
        MethodInfo(
            "spoc", "pool", "global average pooling (SPoC as in cirtorch/timm)", "C", _same, ref="functional.spoc"
        ),
        MethodInfo("sum", "pool", "global sum pooling", "C", _same, ref="functional.sum_pool"),
        MethodInfo(
            "spoc_center",
            "pool",
            "SPoC of Babenko & Lempitsky: sum weighted by a Gaussian centre prior, sigma = min(H, W)/6",
            "C",
            _same,
            ref="functional.spoc_center",
        ),
        MethodInfo(
            "gem",
            "pool",
            "generalized mean (mean of clamp(x, eps)^p)^(1/p); p may be one value per channel",
            "C",
            _same,
            params=(
                Param(
                    "p",
                    3.0,
                    "float_or_floats",
                    "power: a number, or a tuple with one per channel (GeMmp)",
                    0.0,
                    256.0,
                    low_open=True,
                ),
                _EPS,
            ),
            ref="functional.gem",
        ),
        MethodInfo(
            "lse",
            "pool",
            "log-sum-exp pooling (1/r) log mean exp(r x), computed stably",
            "C",
            _same,
            params=(Param("r", 10.0, "float", "sharpness (small = average, large = max)", 0.0, 1e4, True),),
            ref="functional.lse",
        ),
        MethodInfo("avgmax", "pool", "(global average + global max) / 2", "C", _same, ref="functional.avgmax"),
        MethodInfo(
            "catavgmax",
            "pool",
            "concatenation [global average, global max]",
            "2C",
            lambda c, _: 2 * c,
            ref="functional.catavgmax",
        ),
        MethodInfo(
            "rmac",
            "pool",
            "R-MAC: max over the cirtorch region grid (global included), per-region L2, summed",
            "C",
            _same,
            params=(_LEVELS, _OVERLAP, _EPS),
            ref="functional.rmac",
        ),
        MethodInfo(
            "rgem",
            "pool",
            "regional GeM: GeM over the R-MAC regions, per-region L2, summed",
            "C",
            _same,
            params=(_LEVELS, _OVERLAP, _P, _EPS),
            ref="functional.rgem",
        ),
        MethodInfo(
            "spp",
            "pool",
            "spatial pyramid pooling: adaptive l x l grids for each level, concatenated",
            "C·Σl²",
            lambda c, p: c * sum(lv * lv for lv in p["levels"]),
            params=(Param("levels", (1, 2, 4), "ints", "grid sizes of the pyramid levels", 1, 64), _OP),
            ref="functional.spp",
        ),
        MethodInfo(
            "grid",
            "pool",
            "one adaptive h x w grid, pooled per cell and concatenated",
            "C·h·w",
            lambda c, p: c * p["h"] * p["w"],
            params=(
                Param("h", 2, "int", "cells along the height", 1, 64),
                Param("w", 2, "int", "cells along the width", 1, 64),
                _OP,
            ),
            ref="functional.grid",
        ),
        MethodInfo(
            "crow",
            "pool",
            "CroW: spatial weights from the channel sum, channel weights from sparsity (post-ReLU maps)",
            "C",
            _same,
            params=(
                Param("a", 2.0, "float", "norm used to normalise the spatial weights", 0.0, 100.0, True),
                Param("b", 2.0, "float", "power 1/b applied to the spatial weights", 0.0, 100.0, True),
            ),
            ref="functional.crow",
        ),
        MethodInfo(
            "scda",
            "pool",
            "SCDA: avg and max over the largest connected region where the channel sum exceeds its mean",
            "2C",
            lambda c, _: 2 * c,
            params=(Param("connectivity", 8, "choice", "pixel connectivity of the regions", choices=(8, 4)),),
            ref="functional.scda",
        ),
        MethodInfo(
            "pwa",
            "pool",
            "PWA: n channels picked on data as part detectors, each weighting a sum of the map; concatenated",
            "n·C",
            lambda c, p: c * p["n"],
            params=(
                Param("n", 25, "int", "number of part detectors (channels) to select", 1, 65536),
                Param("a", 2.0, "float", "norm used to normalise each part's weights", 0.0, 100.0, True),
                Param("b", 2.0, "float", "power 1/b applied to each part's weights", 0.0, 100.0, True),
            ),
            needs_fit=True,
            ref="functional.pwa",
        ),
        MethodInfo("l2", "post", "L2-normalise each vector", "D", _same, ref="post.L2"),
        MethodInfo(
            "power",
            "post",
            "signed power normalisation sign(v)|v|^alpha",
            "D",
            _same,
            params=(Param("alpha", 0.5, "float", "exponent", 0.0, 1.0, low_open=True),),
            ref="post.Power",
        ),
        MethodInfo(
            "center", "post", "subtract the mean vector (fitted)", "D", _same, needs_fit=True, ref="post.Center"
        ),
        MethodInfo(
            "pca",
            "post",
            "PCA projection to dim components, optionally whitened by eigenvalue^-power (fitted)",
            "dim",
            lambda d, p: d if p["dim"] is None else p["dim"],
            params=(
                Param("dim", None, "int_or_none", "number of components (none = keep the input size)", 1, 1e9),
                Param("whiten", True, "bool", "scale each component by eigenvalue^-power"),
                Param("power", 0.5, "float", "whitening exponent (0.5 = unit variance)", 0.0, 1.0),
            ),
            needs_fit=True,
            ref="post.PCA",
        ),
        MethodInfo(
            "lw",
            "post",
            "learned whitening: the map under which an image and its edited copies coincide (fitted on pairs)",
            "dim",
            lambda d, p: d if p["dim"] is None else p["dim"],
            params=(
                Param("dim", None, "int_or_none", "output dimensions (none = keep the input size)", 1, 1e9),
                Param("shrink", 0.2, "float", "shrinkage of the pair covariance toward a scaled identity", 0.0, 1.0),
            ),
            needs_fit=True,
            ref="post.LearnedWhitening",
            paper="Radenović, Tolias & Chum, Fine-tuning CNN image retrieval with no human annotation, TPAMI 2018",
        ),
    ]
}

POOL_NAMES = [n for n, m in METHODS.items() if m.kind == "pool"]
POST_NAMES = [n for n, m in METHODS.items() if m.kind == "post"]


def methods() -> list[dict[str, Any]]:
    """Every pooling method and post-step: name, kind, params [{name, default, doc}], summary, dim,
    needs_fit (JSON-safe, for docs and the CLI)."""
    return [
        {
            "name": m.name,
            "kind": m.kind,
            "params": [
                {
                    "name": p.name,
                    "default": list(p.default) if isinstance(p.default, tuple) else p.default,
                    "doc": p.doc,
                }
                for p in m.params
            ],
            "summary": m.summary,
            "dim": m.dim,
            "needs_fit": m.needs_fit,
        }
        for m in METHODS.values()
    ]


# ----------------------------------------------------------------------------------------------------------
# formatting
# ----------------------------------------------------------------------------------------------------------


def format_value(v: Any) -> str:
    """Canonical text of a parameter value."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (tuple, list)):
        return "(" + ", ".join(format_value(x) for x in v) + ")"
    return str(v)


def format_step(name: str, params: dict[str, Any]) -> str:
    """Canonical text of one step: every parameter explicit, in declared order."""
    info = METHODS[name]
    if not info.params:
        return name
    return f"{name}(" + ", ".join(f"{p.name}={format_value(params[p.name])}" for p in info.params) + ")"


# ----------------------------------------------------------------------------------------------------------
# parsing
# ----------------------------------------------------------------------------------------------------------

_STEP = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$", re.S)
_INT = re.compile(r"^[+-]?\d+$")
_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _split(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside brackets."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                raise PoolingError(f"unbalanced ')' in {text!r}")
        if ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise PoolingError(f"unbalanced '(' in {text!r}")
    out.append("".join(cur))
    return out


def _literal(text: str, where: str) -> Any:
    t = text.strip()
    if not t:
        raise PoolingError(f"{where}: empty value")
    if t[0] in "([" and t[-1] in ")]":
        inner = t[1:-1].strip()
        parts = [p for p in _split(inner, ",")] if inner else []
        if parts and not parts[-1].strip():
            parts = parts[:-1]  # trailing comma
        return tuple(_literal(p, where) for p in parts)
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return t[1:-1]
    low = t.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    if low in ("none", "null"):
        return None
    if _INT.match(t):
        return int(t)
    if _WORD.match(t):
        return t
    try:
        v = float(t)
    except ValueError:
        raise PoolingError(f"{where}: cannot read value {t!r} (use numbers, true/false, words or (a, b))") from None
    if not math.isfinite(v):
        raise PoolingError(f"{where}: value must be finite, got {t!r}")
    return v


def _suggest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_step(text: str, position: int) -> tuple[str, dict[str, Any]]:
    """One step's text → ``(name, validated params with defaults filled)``."""
    m = _STEP.match(text)
    if not m:
        raise PoolingError(
            f"cannot read step {text.strip()!r}: expected name or name(param=value, ...), e.g. 'gem(p=3)' or 'l2'"
        )
    name, argtext = m.group(1).lower(), m.group(2)
    expected = POOL_NAMES if position == 0 else POST_NAMES
    if name not in METHODS:
        kind = "pooling method" if position == 0 else "post-step"
        raise PoolingError(f"unknown {kind} {name!r}{_suggest(name, expected)}; valid {kind}s: {', '.join(expected)}")
    info = METHODS[name]
    if position == 0 and info.kind != "pool":
        raise PoolingError(
            f"the first step must be a pooling method, got post-step {name!r}; "
            f"valid pooling methods: {', '.join(POOL_NAMES)}"
        )
    if position > 0 and info.kind != "post":
        raise PoolingError(
            f"{name!r} is a pooling method and only the first step may pool; valid post-steps: {', '.join(POST_NAMES)}"
        )
    given: dict[str, Any] = {}
    positional: list[Any] = []
    args = _split(argtext, ",") if argtext is not None and argtext.strip() else []
    valid_names = [p.name for p in info.params]
    for arg in args:
        if not arg.strip():
            raise PoolingError(f"{name}: empty argument in {text.strip()!r}")
        key, eq, val = arg.partition("=")
        if eq:
            key = key.strip().lower()
            if key not in valid_names:
                choices = ", ".join(valid_names) if valid_names else "(none)"
                raise PoolingError(
                    f"{name}: unknown parameter {key!r}{_suggest(key, valid_names)}; valid parameters: {choices}"
                )
            if key in given:
                raise PoolingError(f"{name}: parameter {key!r} given twice")
            given[key] = _literal(val, f"{name}: parameter {key!r}")
        else:
            if given:
                raise PoolingError(f"{name}: positional value {arg.strip()!r} after a named parameter")
            positional.append(_literal(arg, name))
    _place_positional(info, positional, given)
    params = {p.name: p.coerce(name, given.get(p.name, p.default)) for p in info.params}
    return name, params


def _place_positional(info: MethodInfo, positional: list[Any], given: dict[str, Any]) -> None:
    if not positional:
        return
    rest = []
    for v in positional:  # words naming a choice or a boolean parameter
        target = None
        if isinstance(v, str):
            for p in info.params:
                if (p.kind == "choice" and v in p.choices) or (p.kind == "bool" and v.lower() == p.name):
                    target = p
            if target is None:
                raise PoolingError(
                    f"{info.name}: cannot place {v!r}; valid parameters: "
                    f"{', '.join(p.name for p in info.params) or '(none)'}"
                )
            given[target.name] = True if target.kind == "bool" else v
        else:
            rest.append(v)
    if info.name == "spp" and rest and all(isinstance(v, int) and not isinstance(v, bool) for v in rest):
        rest = [tuple(rest)]
    free = [p for p in info.params if p.name not in given]
    if len(rest) > len(free):
        raise PoolingError(
            f"{info.name}: too many positional values ({len(rest)}); parameters in order: "
            f"{', '.join(p.name for p in info.params) or '(none)'}"
        )
    for p, v in zip(free, rest, strict=False):
        given[p.name] = v


def parse(spec: str) -> list[tuple[str, dict[str, Any]]]:
    """A spec string → list of ``(name, params)``; raises :class:`PoolingError` naming the problem."""
    if not isinstance(spec, str):
        raise PoolingError(f"a pooling spec must be a string such as 'gem(p=3) | l2', got {type(spec).__name__}")
    if not spec.strip():
        raise PoolingError(f"empty pooling spec; start with a pooling method: {', '.join(POOL_NAMES)}")
    parts = _split(spec, "|")
    steps = []
    for i, part in enumerate(parts):
        if not part.strip():
            raise PoolingError(f"empty step in {spec!r} (two '|' in a row, or a trailing '|')")
        steps.append(parse_step(part, i))
    return steps


def out_dim(spec: str, channels: int) -> int:
    """The output dimension of an (unfitted) spec for maps of ``channels`` channels, from the registry alone (no
    torch): what :meth:`poolvec.pooling.Pipeline.out_dim` gives before any step is fitted."""
    d = int(channels)
    for name, params in parse(spec):
        d = int(METHODS[name].dim_fn(d, params))
    return d


def short(spec: str) -> str:
    """A spec as people write it: parameters at their defaults left out, numbers without trailing zeros
    (``gem(p=3.0, eps=1e-06) | l2 | lw(dim=none, shrink=0.2) | l2`` → ``gem(p=3) | l2 | lw | l2``)."""

    def value(v: Any) -> str:
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return format_value(v)

    steps = []
    for name, params in parse(spec):
        given = [f"{p.name}={value(params[p.name])}" for p in METHODS[name].params if params[p.name] != p.default]
        steps.append(f"{name}({', '.join(given)})" if given else name)
    return " | ".join(steps)
