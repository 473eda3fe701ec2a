"""Ref and repository globs, compiled once at config load.

Syntax (as in GitHub's branch rules): ``*`` matches within one path segment, ``**`` across
segments, ``?`` one character, ``[abc]``/``[!abc]`` a class. fnmatch accepts anything and
treats a stray ``[`` literally, which hides typos; here a malformed glob is a config error.
"""

from __future__ import annotations

import re
from functools import lru_cache


class GlobError(ValueError):
    """A glob that cannot be compiled; the message says what is wrong."""


@lru_cache(maxsize=1024)
def compile_glob(glob: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """Compile ``glob`` to an anchored regex, or raise GlobError."""
    if not glob:
        raise GlobError("empty glob")
    out: list[str] = []
    i = 0
    while i < len(glob):
        char = glob[i]
        if char == "*":
            if glob.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = glob.find("]", i + 2 if glob.startswith("[!", i) else i + 1)
            if end == -1:
                raise GlobError(f"unclosed '[' at position {i} in {glob!r}")
            body = glob[i + 1 : end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            if not body:
                raise GlobError(f"empty character class in {glob!r}")
            out.append("[" + ("^" if negate else "") + re.escape(body).replace(r"\-", "-") + "]")
            i = end
        elif char == "]":
            raise GlobError(f"unmatched ']' at position {i} in {glob!r}")
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.IGNORECASE if ignore_case else 0)


def matches(globs: list[str] | None, name: str, *, ignore_case: bool = False) -> bool:
    """True when ``name`` matches any glob; ``None`` means no filter (everything matches)."""
    if globs is None:
        return True
    return any(compile_glob(glob, ignore_case=ignore_case).fullmatch(name) for glob in globs)
