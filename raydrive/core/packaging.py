"""Working-directory packaging: a deterministic zip under a content-addressed name, built once.

The zip's name is ``_ray_pkg_<sha1 of the contents>.zip`` (the form Ray's GCS package store uses),
so the same tree always maps to the same URI and an upload can be skipped when the cluster
already has it. A :class:`WorkingDirPackager` remembers the files' sizes and modification times:
asking again for an unchanged tree costs one directory walk and no zipping.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from raydrive.core.errors import WorkingDirError

__all__ = ["PackagedDir", "WorkingDirPackager", "max_package_size"]

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def max_package_size() -> int:
    """Ray's limit on a package (its max gRPC message size), honouring Ray's own override."""
    return int(os.environ.get("RAY_max_grpc_message_size", 512 * 1024 * 1024))  # noqa: SIM112


@dataclass(frozen=True)
class PackagedDir:
    """A zipped working directory: its ``gcs://`` URI, the zip's bytes and what went in."""

    uri: str
    data: bytes
    file_count: int
    size: int  # bytes of the files before compression

    def __repr__(self) -> str:
        return f"PackagedDir(uri={self.uri!r}, files={self.file_count}, size={self.size})"


def _compile(patterns: list[str]) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    """Gitignore-style patterns as two regexes: one for names, one for relative paths.

    One regex per kind (not one ``fnmatch`` per pattern) keeps a walk of thousands of files to
    a few milliseconds.
    """
    names, paths = [], []
    for raw in patterns:
        pat = raw.strip().rstrip("/")
        if not pat or pat.startswith("#"):
            continue
        if "/" in pat:
            pat = pat.lstrip("/")
            # the path itself, or anything below it
            paths.append(f"(?:{fnmatch.translate(pat)[:-2]}(?:/.*)?\\Z)")
        else:
            names.append(f"(?:{fnmatch.translate(pat)})")
    return (
        re.compile("|".join(names)) if names else None,
        re.compile("|".join(paths)) if paths else None,
    )


class WorkingDirPackager:
    """Zips one working directory with excludes, re-zipping only when a file changed."""

    def __init__(self, path: str | Path, excludes: list[str] | None = None) -> None:
        self.path = Path(path).expanduser().resolve()
        self.excludes = list(excludes or [])
        self._names, self._paths = _compile(self.excludes)
        self._fingerprint: tuple[tuple[str, int, int], ...] | None = None
        self._package: PackagedDir | None = None

    def _excluded(self, rel: str, name: str) -> bool:
        return bool(
            (self._names is not None and self._names.match(name))
            or (self._paths is not None and self._paths.match(rel))
        )

    def scan(self) -> list[tuple[str, int, int]]:
        """``(relative path, size, mtime_ns)`` of every file that goes in, sorted by path."""
        if not self.path.is_dir():
            raise WorkingDirError(
                f"working_dir {str(self.path)!r} does not exist or is not a directory",
                path=str(self.path),
            )
        found: list[tuple[str, int, int]] = []
        stack = [("", str(self.path))]
        while stack:
            prefix, directory = stack.pop()
            with os.scandir(directory) as entries:
                for entry in entries:
                    rel = f"{prefix}{entry.name}"
                    if self._excluded(rel, entry.name):
                        continue
                    if entry.is_dir(follow_symlinks=True):
                        stack.append((rel + "/", entry.path))
                    elif entry.is_file(follow_symlinks=True):
                        st = entry.stat(follow_symlinks=True)
                        found.append((rel, st.st_size, st.st_mtime_ns))
        found.sort()
        return found

    def package(self) -> PackagedDir:
        """The zipped directory; the cached one when no file was added, removed or changed."""
        files = tuple(self.scan())
        if self._package is not None and files == self._fingerprint:
            return self._package
        total = sum(size for _, size, _ in files)
        limit = max_package_size()
        if total >= limit:
            biggest = sorted(files, key=lambda f: f[1], reverse=True)[:5]
            listing = ", ".join(f"{rel} ({size / 2**20:.1f} MiB)" for rel, size, _ in biggest)
            raise WorkingDirError(
                f"working_dir {str(self.path)!r} holds {total / 2**20:.1f} MiB after excludes, "
                f"over Ray's package limit of {limit / 2**20:.0f} MiB; biggest files: {listing}. "
                "Add them to `excludes` or ship them another way.",
                path=str(self.path),
                size=total,
            )
        digest = hashlib.sha1()
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for rel, _, _ in files:
                content = (self.path / rel).read_bytes()
                digest.update(rel.encode() + b"\0" + hashlib.sha1(content).digest())
                info = zipfile.ZipInfo(rel, date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, content)
        self._package = PackagedDir(
            uri=f"gcs://_ray_pkg_{digest.hexdigest()}.zip",
            data=buffer.getvalue(),
            file_count=len(files),
            size=total,
        )
        self._fingerprint = files
        return self._package
