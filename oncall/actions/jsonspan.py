"""Where each value of a JSON document sits in its text, so one value can be replaced in place:
the rest of the file (its formatting, key order, other flags) stays byte for byte, and the diff of
a change is the changed line only."""

from __future__ import annotations

import json
import re
from json.decoder import scanstring
from typing import Any

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")

Path = tuple[str | int, ...]


def spans(text: str) -> dict[Path, tuple[int, int]]:
    """{path: (start, end)} for every value in the document (path () is the whole document).
    Raises ValueError (json.JSONDecodeError) for text that is not JSON."""
    json.loads(text)  # the standard parser's error messages (line, column) for bad input
    out: dict[Path, tuple[int, int]] = {}
    end = _value(text, _skip(text, 0), (), out)
    if _skip(text, end) != len(text):
        raise ValueError("extra data after the JSON document")
    return out


def replace(text: str, path: Path, value: Any) -> str:
    """`text` with the value at `path` replaced by `value` (serialised like json.dumps)."""
    where = spans(text)
    if path not in where:
        raise KeyError(path)
    start, end = where[path]
    return text[:start] + json.dumps(value, ensure_ascii=False) + text[end:]


def _skip(s: str, i: int) -> int:
    return _WS.match(s, i).end()


def _value(s: str, i: int, path: Path, out: dict[Path, tuple[int, int]]) -> int:
    c = s[i]
    if c == "{":
        j = _skip(s, i + 1)
        if s[j] == "}":
            end = j + 1
        else:
            while True:
                key, j = scanstring(s, j + 1)
                j = _skip(s, _skip(s, j) + 1)  # past the colon
                j = _skip(s, _value(s, j, (*path, key), out))
                if s[j] == "}":
                    end = j + 1
                    break
                j = _skip(s, j + 1)  # past the comma
    elif c == "[":
        j = _skip(s, i + 1)
        n = 0
        if s[j] == "]":
            end = j + 1
        else:
            while True:
                j = _skip(s, _value(s, j, (*path, n), out))
                n += 1
                if s[j] == "]":
                    end = j + 1
                    break
                j = _skip(s, j + 1)
    elif c == '"':
        _, end = scanstring(s, i + 1)
    else:
        for lit in ("true", "false", "null"):
            if s.startswith(lit, i):
                end = i + len(lit)
                break
        else:
            end = _NUMBER.match(s, i).end()
    out[path] = (i, end)
    return end
