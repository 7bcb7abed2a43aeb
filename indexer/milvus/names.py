"""File names as data: a lossless text form for Milvus, and an escaped form for people.

Linux file names are bytes (anything but ``/`` and NUL); Python holds them as ``str`` with undecodable bytes as
lone surrogates (``os.fsdecode``, PEP 383). Milvus stores text as UTF-8 and its filter literals cannot hold
control characters, so a name is *stored* with one substitution per character, into a Private Use Area block:

* an undecodable byte ``0x80–0xFF`` becomes ``U+F0080–U+F00FF``;
* a control character ``U+0001–U+001F`` or ``U+007F`` becomes ``U+F0001–U+F001F`` / ``U+F007F``;
* a real character of the block ``U+F0000–U+F00FF`` is kept, preceded by ``U+F0000``.

Every other character (so every ordinary name, and every name indexed before this form existed) is stored as
it is. The map works character by character, so folder prefixes, ``/`` and filters on folders behave on stored
names as on real ones, and :func:`real` gives back the exact bytes. :func:`shown` writes a name for a terminal or
a page: control characters and undecodable bytes as ``\\xNN`` (C1 controls as ``\\u00NN``).
"""

from __future__ import annotations

import base64
import os
from typing import Any

_BASE = 0xF0000
_ESC = chr(_BASE)


def _controls(c: str) -> bool:
    return c < " " or c == "\x7f"


def stored(path: str) -> str:
    """The stored (valid UTF-8, control-free) form of a file name as Python holds it."""
    if path.isprintable() and path.isascii():
        return path  # the common case, at no cost
    out = []
    for c in path:
        o = ord(c)
        if 0xDC80 <= o <= 0xDCFF:
            out.append(chr(_BASE + o - 0xDC00))
        elif _controls(c) and o:
            out.append(chr(_BASE + o))
        elif _BASE <= o <= _BASE + 0xFF:
            out.append(_ESC + c)
        elif 0xD800 <= o <= 0xDFFF:
            raise ValueError(f"{path!r} holds a lone surrogate that no file name can have")
        else:
            out.append(c)
    return "".join(out)


def real(text: str) -> str:
    """Inverse of :func:`stored`: the name as Python's ``os`` functions take it (``os.fsencode`` gives its bytes)."""
    if not any(_BASE <= ord(c) <= _BASE + 0xFF for c in text):
        return text
    out = []
    escaped = False
    for c in text:
        o = ord(c)
        if escaped:
            out.append(c)
            escaped = False
        elif c == _ESC:
            escaped = True
        elif _BASE + 0x80 <= o <= _BASE + 0xFF:
            out.append(chr(0xDC00 + o - _BASE))
        elif _BASE < o < _BASE + 0x20 or o == _BASE + 0x7F:
            out.append(chr(o - _BASE))
        else:
            out.append(c)
    return "".join(out)


def shown(path: str) -> str:
    """A file name (as Python holds it) for people: control characters and undecodable bytes as ``\\xNN``."""
    if path.isprintable():
        return path
    out = []
    for c in path:
        o = ord(c)
        if 0xDC80 <= o <= 0xDCFF:
            out.append(f"\\x{o - 0xDC00:02x}")
        elif _controls(c):
            out.append(f"\\x{o:02x}")
        elif 0x80 <= o <= 0x9F:  # C1 controls (valid UTF-8): a terminal would act on them too
            out.append(f"\\u{o:04x}")
        else:
            out.append(c)
    return "".join(out)


def is_text(path: str) -> bool:
    """True if the name is valid UTF-8 with no control characters (printed and stored as it is)."""
    return stored(path) == path == shown(path)


def json_fields(path: str, key: str = "path") -> dict[str, Any]:
    """``{key: shown}``, plus ``{key}_bytes`` (base64 of the exact bytes) when the shown form is not the name."""
    fields: dict[str, Any] = {key: shown(path)}
    if fields[key] != path:
        fields[f"{key}_bytes"] = base64.b64encode(os.fsencode(path)).decode("ascii")
    return fields


__all__ = ["is_text", "json_fields", "real", "shown", "stored"]
