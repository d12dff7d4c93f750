"""NUL characters at the edge: PostgreSQL text cannot hold U+0000, so a request that would
put one into a text column is refused with an answer naming where it was, never a 500."""

from __future__ import annotations

from typing import Any

NUL_MESSAGE = "must not contain a NUL (\\u0000) character"


def nul_path(value: Any, path: str = "") -> str | None:
    """Where the first string (a value or a key) holding a NUL is in a parsed JSON or YAML
    value, as `a.b[2].c` ("" for the value itself); None when there is none."""
    stack: list[tuple[Any, str]] = [(value, path)]  # no recursion: documents may nest deeply
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where
        elif isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                at = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and "\x00" in key:
                    return at
                stack.append((child, at))
        elif isinstance(item, (list, tuple)):
            for index in range(len(item) - 1, -1, -1):
                stack.append((item[index], f"{where}[{index}]"))
    return None


def no_nul(value: str | None) -> str | None:
    """A pydantic AfterValidator for text fields that become text columns."""
    if value is not None and "\x00" in value:
        raise ValueError(NUL_MESSAGE)
    return value
