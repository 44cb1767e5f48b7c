"""Gitignore-style patterns, as git (and Ray, through ``pathspec``'s ``gitwildmatch``) reads them.

Used for ``excludes``, ``include``, ``.gitignore`` and ``.rayignore`` alike, so one pattern means
the same thing everywhere: ``*`` and ``?`` stop at ``/``, ``**`` crosses directories, a pattern
with a ``/`` (not at its end) is anchored to its file's directory, one ending in ``/`` matches
directories only, ``!`` re-includes, the last matching pattern decides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

__all__ = ["IgnoreRules"]


def _glob(part: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(part):
        c = part[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < len(part):
            i += 1
            out.append(re.escape(part[i]))
        elif c == "[":
            end = part.find("]", i + 2 if part[i + 1 : i + 2] in ("!", "^", "]") else i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = part[i + 1 : end]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class _Rule:
    raw: str
    regex: re.Pattern[str]
    negated: bool
    dir_only: bool
    parts: tuple[str, ...]  # the anchored pattern's components; () when not anchored

    @property
    def anchored(self) -> bool:
        return bool(self.parts)


def _rule(raw: str) -> _Rule | None:
    line = raw.rstrip("\n\r")
    if not line.endswith("\\ "):
        line = line.rstrip()
    if not line or line.startswith("#"):
        return None
    negated = line.startswith("!")
    if negated or line[:2] in ("\\!", "\\#"):
        line = line[1:]
    dir_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    parts = line.lstrip("/").split("/")
    body: list[str] = []
    for i, part in enumerate(parts):
        first, last = i == 0, i == len(parts) - 1
        if part == "**":
            body.append(".*" if first and last else "(?:.*/)?" if first else "/.*" if last else "/(?:.*/)?")
            continue
        if not first and parts[i - 1] != "**":
            body.append("/")
        body.append(_glob(part))
    # A pattern without a slash matches a name at any depth: it is matched against the last
    # component only (cheaper than a "(?:.*/)?" prefix on the whole path).
    regex = re.compile(f"\\A{''.join(body)}\\Z", re.S)
    return _Rule(raw.strip(), regex, negated, dir_only, tuple(parts) if anchored else ())


class IgnoreRules:
    """An ordered list of gitignore patterns, matched against paths relative to one directory."""

    def __init__(self, patterns: Iterable[str], source: str = "excludes") -> None:
        self.source = source
        self.rules = [r for r in map(_rule, patterns) if r is not None]
        # A pre-filter only (directory-only patterns included): a path no pattern can match is
        # answered with two regex calls, the rest goes through the ordered rules.
        self._names = self._combine(anchored=False)
        self._paths = self._combine(anchored=True)

    def _combine(self, *, anchored: bool) -> re.Pattern[str] | None:
        found = [r.regex.pattern for r in self.rules if r.anchored == anchored]
        return re.compile("|".join(f"(?:{p})" for p in found), re.S) if found else None

    def __bool__(self) -> bool:
        return bool(self.rules)

    def decide(self, rel: str, is_dir: bool) -> tuple[bool, str] | None:
        """``(excluded, pattern)`` from the last pattern matching ``rel``; None when none matches."""
        if not self.rules:
            return None
        name = rel.rpartition("/")[2]
        if not (
            (self._names is not None and self._names.match(name))
            or (self._paths is not None and self._paths.match(rel))
        ):
            return None
        for rule in reversed(self.rules):
            if (is_dir or not rule.dir_only) and rule.regex.match(rel if rule.anchored else name):
                return (not rule.negated, rule.raw)
        return None

    def matches(self, rel: str, is_dir: bool) -> str | None:
        """The pattern that excludes ``rel`` (or includes it, for an include list), else None."""
        decision = self.decide(rel, is_dir)
        return decision[1] if decision and decision[0] else None

    def may_match_below(self, rel_dir: str) -> bool:
        """Whether an anchored pattern could match something inside directory ``rel_dir``."""
        dir_parts = rel_dir.split("/")
        for rule in self.rules:
            if rule.negated or not rule.parts:
                continue
            for i, part in enumerate(dir_parts):
                if i >= len(rule.parts) - 1 and rule.parts[-1] != "**":
                    break
                pattern = rule.parts[min(i, len(rule.parts) - 1)]
                if pattern == "**":
                    return True
                if not fnmatchcase(part, pattern):
                    break
            else:
                return True
        return False
