"""Working-directory packaging: a deterministic zip under a content-addressed name, built once.

The zip's name is ``_ray_pkg_<sha1 of the contents>.zip`` (the form Ray's GCS package store uses),
so the same tree always maps to the same URI and an upload can be skipped when the cluster
already has it. A :class:`WorkingDirPackager` remembers the files' sizes and modification times:
asking again for an unchanged tree costs one directory walk and no zipping.

What goes in (the rules Ray and Docker follow, made strict):

- ``excludes`` (the default-excludes policy plus the user's), ``.gitignore`` files (unless
  ``include_gitignore=False``) and ``.rayignore`` files, each applying to its own directory and
  below as in git; ``include`` patterns win over all of them, so a default exclude such as
  ``.env.*`` can be re-included (``include=[".env.example"]``);
- a symlink is never followed out of the working dir: a link whose target lies outside, is
  missing, or is excluded is left out and listed with the reason; a link to a file inside the tree
  is stored as that file's content under the link's name; a link to a directory inside the tree
  is left out (its files are stored once, where they really are), which also rules out cycles;
- a symlink loop, a file name that is not UTF-8 or an unreadable entry raises
  :class:`WorkingDirError` naming the path.

:func:`package_report` shows all of this before anything is uploaded (``raydrive package``).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from raydrive.core.errors import WorkingDirError
from raydrive.core.ignore import IgnoreRules

__all__ = [
    "DASHBOARD_UPLOAD_LIMIT",
    "Excluded",
    "PackageReport",
    "PackagedDir",
    "WorkingDirPackager",
    "check_upload_size",
    "max_package_size",
]

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_MiB = 2**20
IGNORE_FILES = (".gitignore", ".rayignore")
# The Ray dashboard refuses request bodies over this size (``DASHBOARD_CLIENT_MAX_SIZE``), so a
# package uploaded through the Jobs API (``ray-jobs-api``) must stay below it.
DASHBOARD_UPLOAD_LIMIT = 100 * _MiB


def max_package_size() -> int:
    """Ray's limit on a package (its max gRPC message size), honouring Ray's own override."""
    return int(os.environ.get("RAY_max_grpc_message_size", 512 * _MiB))  # noqa: SIM112


def _mib(n: int) -> str:
    return f"{n / _MiB:.1f} MiB"


@dataclass(frozen=True)
class Excluded:
    """A path left out of the package and why (``exclude pattern '.env'``, ``symlink outside...``)."""

    path: str
    reason: str


@dataclass(frozen=True)
class PackagedDir:
    """A zipped working directory: its ``gcs://`` URI, the zip's bytes and what went in."""

    uri: str
    data: bytes
    file_count: int
    size: int  # bytes of the files before compression
    excluded: tuple[Excluded, ...] = ()

    @property
    def zipped_size(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"PackagedDir(uri={self.uri!r}, files={self.file_count}, size={self.size})"


def check_upload_size(
    package: PackagedDir,
    limit: int = DASHBOARD_UPLOAD_LIMIT,
    *,
    what: str = "the Ray dashboard's upload limit",
) -> None:
    """Raise :class:`WorkingDirError` naming ``limit`` when the zipped package is not below it.

    The ``ray-jobs-api`` driver calls it before uploading through the dashboard (100 MiB).
    """
    if package.zipped_size >= limit:
        raise WorkingDirError(
            f"the zipped working dir is {_mib(package.zipped_size)}, over {what} of {_mib(limit)}; "
            "run `raydrive package` to see the biggest files, then add them to `excludes` or "
            "`.rayignore`, or ship them another way.",
            size=package.zipped_size,
            limit=limit,
        )


class _Entry(NamedTuple):
    rel: str
    size: int
    mtime_ns: int
    source: str  # where the bytes are read from (a link's target inside the tree)


class WorkingDirPackager:
    """Zips one working directory with excludes, re-zipping only when a file changed.

    :param excludes: gitignore-style patterns left out (the builder passes the default-excludes
        policy's and the user's).
    :param include: gitignore-style patterns kept even when an exclude or ignore file drops them;
        a file inside an excluded directory is reached by its path (``.aws/config``).
    :param include_gitignore: honour ``.gitignore`` files (``.rayignore`` files always are).
    """

    def __init__(
        self,
        path: str | Path,
        excludes: Sequence[str] | None = None,
        *,
        include: Sequence[str] | None = None,
        include_gitignore: bool = True,
    ) -> None:
        self.path = Path(path).expanduser().resolve()
        self.excludes = list(excludes or [])
        self.include = list(include or [])
        self.include_gitignore = include_gitignore
        self._rules = IgnoreRules(self.excludes, "exclude pattern")
        self._include = IgnoreRules(self.include, "include")
        self._ignore_files = IGNORE_FILES if include_gitignore else (".rayignore",)
        self._fingerprint: tuple[tuple[str, int, int], ...] | None = None
        self._package: PackagedDir | None = None
        self.excluded: list[Excluded] = []

    @property
    def settings(self) -> tuple[Any, ...]:
        """What the package depends on besides the files (a builder re-creates the packager on change)."""
        return (str(self.path), self.excludes, self.include, self.include_gitignore)

    # --- walking --------------------------------------------------------------------------------
    def _fail(self, what: str, path: str, exc: BaseException | None = None) -> WorkingDirError:
        cause = f": {exc.strerror or exc}" if isinstance(exc, OSError) else ""
        return WorkingDirError(f"working_dir {str(self.path)!r}: {what} {path!r}{cause}", path=path)

    def _ignore_rules(self, directory: str, prefix: str) -> list[tuple[str, IgnoreRules]]:
        found = []
        for name in self._ignore_files:
            file = os.path.join(directory, name)
            if os.path.isfile(file) and not os.path.islink(file):
                try:
                    with open(file, encoding="utf-8", errors="replace") as fh:
                        rules = IgnoreRules(fh.read().splitlines(), f"{prefix}{name}")
                except OSError as exc:
                    raise self._fail("cannot read", prefix + name, exc) from None
                if rules:
                    found.append((prefix, rules))
        return found

    def _why_excluded(self, rel: str, is_dir: bool, stack: list[tuple[str, IgnoreRules]]) -> str | None:
        pattern = self._rules.matches(rel, is_dir)
        if pattern is not None:
            return f"exclude pattern {pattern!r}"
        # The deepest ignore file that has an opinion wins, as in git.
        for base, rules in reversed(stack):
            decision = rules.decide(rel[len(base) :], is_dir)
            if decision is not None:
                return f"{rules.source}: {decision[1]!r}" if decision[0] else None
        return None

    def _excluded_anywhere(self, rel: str, is_dir: bool) -> str | None:
        # For a link's target: excluded itself or under an excluded directory (ignore files of the
        # target's own directories included).
        parts = rel.split("/")
        stack: list[tuple[str, IgnoreRules]] = []
        stack.extend(self._ignore_rules(str(self.path), ""))
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            last = i == len(parts)
            why = self._why_excluded(sub, is_dir or not last, stack)
            if why is not None and self._include.matches(sub, is_dir or not last) is None:
                return why
            if not last:
                stack.extend(self._ignore_rules(str(self.path / sub), sub + "/"))
        return None

    def _resolve_link(self, path: str, rel: str) -> tuple[str | None, str | None]:
        """``(target inside the tree, None)`` or ``(None, reason it is left out)``."""
        try:
            target = os.path.realpath(path, strict=True)
        except FileNotFoundError:
            return None, "broken symlink"
        except OSError as exc:
            raise self._fail("symlink loop or unreadable link at", rel, exc) from None
        root = str(self.path)
        if target != root and not target.startswith(root + os.sep):
            return None, "symlink outside working dir"
        return target, None

    def scan(self) -> list[tuple[str, int, int]]:
        """``(relative path, size, mtime_ns)`` of every file that goes in, sorted by path.

        :attr:`excluded` then lists what was left out and why (directories once, not their files).
        """
        return [(e.rel, e.size, e.mtime_ns) for e in self._scan()]

    def _scan(self) -> list[_Entry]:
        if not self.path.is_dir():
            raise WorkingDirError(
                f"working_dir {str(self.path)!r} does not exist or is not a directory",
                path=str(self.path),
            )
        found: list[_Entry] = []
        excluded: list[Excluded] = []
        root = str(self.path)
        # (relative prefix, absolute dir, ignore rules in force, only-included mode)
        todo: list[tuple[str, str, list[tuple[str, IgnoreRules]], bool]] = [("", root, [], False)]
        while todo:
            prefix, directory, inherited, forced = todo.pop()
            stack = inherited + self._ignore_rules(directory, prefix)
            try:
                with os.scandir(directory) as it:
                    entries = sorted(it, key=lambda e: e.name)  # errors name the same path each time
            except OSError as exc:
                raise self._fail("cannot list", prefix or ".", exc) from None
            for entry in entries:
                rel = f"{prefix}{entry.name}"
                try:
                    rel.encode("utf-8")
                except UnicodeEncodeError:
                    shown = os.fsencode(os.path.join(directory, entry.name))
                    raise WorkingDirError(
                        f"working_dir {root!r}: file name {shown!r} is not valid UTF-8; "
                        "rename it or add it to `excludes`",
                        path=shown.decode("utf-8", "backslashreplace"),
                    ) from None
                if "\\" in entry.name:
                    # Ray's unpacker drops such members as unsafe: say so here instead.
                    excluded.append(Excluded(rel, "name contains a backslash (Ray would not unpack it)"))
                    continue
                try:
                    is_link = entry.is_symlink()
                    is_dir = entry.is_dir(follow_symlinks=True)
                except OSError as exc:
                    what = "symlink loop at" if exc.errno == errno.ELOOP else "cannot read"
                    raise self._fail(what, rel, exc) from None
                included = self._include.matches(rel, is_dir) is not None
                if forced and not included:
                    if is_dir and not is_link and self._include.may_match_below(rel):
                        todo.append((rel + "/", entry.path, stack, True))
                    continue
                why = None if included else self._why_excluded(rel, is_dir, stack)
                if why is not None:
                    excluded.append(Excluded(rel + ("/" if is_dir else ""), why))
                    if is_dir and not is_link and self._include.may_match_below(rel):
                        todo.append((rel + "/", entry.path, stack, True))
                    continue
                source = entry.path
                if is_link:
                    target, reason = self._resolve_link(entry.path, rel)
                    if target is None:
                        excluded.append(Excluded(rel, f"{reason} (-> {os.readlink(entry.path)})"))
                        continue
                    target_rel = os.path.relpath(target, root).replace(os.sep, "/")
                    if is_dir:
                        excluded.append(
                            Excluded(rel, f"symlink to a directory inside the working dir ({target_rel}/)")
                        )
                        continue
                    why = self._excluded_anywhere(target_rel, False)
                    if why is not None:
                        excluded.append(Excluded(rel, f"symlink to an excluded file ({target_rel}: {why})"))
                        continue
                    source = target
                if is_dir:
                    todo.append((rel + "/", entry.path, stack, False))
                    continue
                try:
                    st = entry.stat() if source is entry.path else os.stat(source)
                except OSError as exc:
                    raise self._fail("cannot read", rel, exc) from None
                if not stat.S_ISREG(st.st_mode):
                    excluded.append(Excluded(rel, "not a regular file"))
                    continue
                found.append(_Entry(rel, st.st_size, st.st_mtime_ns, source))
        found.sort()
        excluded.sort(key=lambda e: e.path)
        self.excluded = excluded
        return found

    # --- zipping --------------------------------------------------------------------------------
    def _zip(self, entries: Sequence[_Entry], sink: Any) -> str:
        digest = hashlib.sha1()
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for entry in entries:
                try:
                    with open(entry.source, "rb") as fh:
                        content = fh.read()
                except OSError as exc:
                    raise self._fail("cannot read", entry.rel, exc) from None
                digest.update(entry.rel.encode() + b"\0" + hashlib.sha1(content).digest())
                info = zipfile.ZipInfo(entry.rel, date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, content)
        return digest.hexdigest()

    def _check_limit(self, entries: Sequence[_Entry], total: int, limit: int) -> None:
        if total >= limit:
            biggest = sorted(entries, key=lambda e: e.size, reverse=True)[:5]
            listing = ", ".join(f"{e.rel} ({_mib(e.size)})" for e in biggest)
            raise WorkingDirError(
                f"working_dir {str(self.path)!r} holds {_mib(total)} after excludes, "
                f"over Ray's package limit of {limit / _MiB:.0f} MiB; biggest files: {listing}. "
                "Add them to `excludes` or `.rayignore`, or ship them another way.",
                path=str(self.path),
                size=total,
            )

    def package(self) -> PackagedDir:
        """The zipped directory; the cached one when no file was added, removed or changed."""
        entries = self._scan()
        files = tuple((e.rel, e.size, e.mtime_ns) for e in entries)
        if self._package is not None and files == self._fingerprint:
            return self._package
        total = sum(e.size for e in entries)
        limit = max_package_size()
        self._check_limit(entries, total, limit)
        buffer = io.BytesIO()
        digest = self._zip(entries, buffer)
        data = buffer.getvalue()
        self._check_limit(entries, len(data), limit)
        self._package = PackagedDir(
            uri=f"gcs://_ray_pkg_{digest}.zip",
            data=data,
            file_count=len(entries),
            size=total,
            excluded=tuple(self.excluded),
        )
        self._fingerprint = files
        return self._package

    def report(
        self, limit: int | None = None, limit_name: str | None = None, *, top: int = 10
    ) -> PackageReport:
        """What :meth:`package` would upload, measured by zipping to nowhere (nothing is kept)."""
        entries = self._scan()
        sink = _CountingSink()
        digest = self._zip(entries, sink)
        return PackageReport(
            working_dir=str(self.path),
            file_count=len(entries),
            size=sum(e.size for e in entries),
            zipped_size=sink.count,
            limit=max_package_size() if limit is None else limit,
            limit_name=limit_name or "Ray's package limit",
            uri=f"gcs://_ray_pkg_{digest}.zip",
            biggest=[(e.rel, e.size) for e in sorted(entries, key=lambda e: (-e.size, e.rel))[:top]],
            excluded=list(self.excluded),
        )


class _CountingSink(io.RawIOBase):
    """A write-only stream that keeps only its length: the zip's size without the zip.

    Seekable like the real buffer, so zipfile writes exactly the same bytes to both.
    """

    def __init__(self) -> None:
        self.count = 0
        self._pos = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n = len(memoryview(data))
        self._pos += n
        self.count = max(self.count, self._pos)
        return n

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.count}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos


@dataclass
class PackageReport:
    """A pre-flight look at a working dir: what would be uploaded, how big, and what was left out."""

    working_dir: str
    file_count: int
    size: int  # bytes before compression
    zipped_size: int
    limit: int  # the limit that applies to the zipped package
    limit_name: str
    uri: str
    biggest: list[tuple[str, int]] = field(default_factory=list)
    excluded: list[Excluded] = field(default_factory=list)

    @property
    def within_limit(self) -> bool:
        return self.zipped_size < self.limit and self.size < max_package_size()

    def to_dict(self) -> dict[str, Any]:
        return {
            "working_dir": self.working_dir,
            "file_count": self.file_count,
            "size": self.size,
            "zipped_size": self.zipped_size,
            "limit": self.limit,
            "limit_name": self.limit_name,
            "within_limit": self.within_limit,
            "uri": self.uri,
            "biggest": [{"path": p, "size": s} for p, s in self.biggest],
            "excluded": [{"path": e.path, "reason": e.reason} for e in self.excluded],
        }
