"""The media store on disk: one file per distinct content, named by the SHA-256 of its bytes
(``<dir>/<first two hex>/<digest>``). A download is written to ``<dir>/.staging/`` while it is
hashed and counted, then moved into place with an atomic rename, so a reader never sees half a
file and a file's name always proves its content. Nothing here serves files over HTTP: routing
asks intake for the bytes over RPC (``intake.media``) after checking who asks."""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from services.intake.domain import media as rules


class Staged:
    """A download being written: hashed, counted and its first bytes kept for sniffing; more
    than ``max_bytes`` refuses it (permanently) without writing the rest."""

    def __init__(self, handle, path: Path, max_bytes: int):
        self._handle = handle
        self.path = path
        self.max_bytes = max_bytes
        self._hash = hashlib.sha256()
        self.size = 0
        self.head = b""

    def write(self, chunk: bytes) -> None:
        if self.size + len(chunk) > self.max_bytes:
            raise rules.too_large(self.max_bytes)
        if len(self.head) < rules.SNIFF_BYTES:
            self.head += chunk[:rules.SNIFF_BYTES - len(self.head)]
        self._hash.update(chunk)
        self._handle.write(chunk)
        self.size += len(chunk)

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()

    def flush(self) -> None:
        """Everything written is on the disk (before the rename makes it a stored file)."""
        self._handle.flush()
        os.fsync(self._handle.fileno())


class MediaFiles:
    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def path_of(self, digest: str) -> Path:
        return self.directory / rules.relative_path(digest)

    def ensure(self) -> None:
        (self.directory / ".staging").mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def staging(self, max_bytes: int) -> Iterator[Staged]:
        """A temporary file for one download; removed afterwards unless ``keep`` moved it."""
        self.ensure()
        handle = tempfile.NamedTemporaryFile(dir=self.directory / ".staging", prefix="dl-", delete=False)
        path = Path(handle.name)
        try:
            with handle:
                yield Staged(handle, path, max_bytes)
        finally:
            path.unlink(missing_ok=True)

    def keep(self, staged: Staged) -> str:
        """Move a complete download to its content address; returns the digest. The same bytes
        already kept (another complaint, the same photo sent twice) are not written again."""
        digest = staged.digest
        final = self.path_of(digest)
        if final.exists() and final.stat().st_size == staged.size:
            return digest
        final.parent.mkdir(parents=True, exist_ok=True)
        staged.flush()
        os.chmod(staged.path, 0o640)
        os.replace(staged.path, final)
        _fsync_directory(final.parent)
        return digest

    def size(self, digest: str) -> int | None:
        try:
            return self.path_of(digest).stat().st_size
        except FileNotFoundError:
            return None

    def read(self, digest: str, offset: int, limit: int) -> bytes:
        """``limit`` bytes from ``offset`` (fewer at the end); FileNotFoundError when missing."""
        with open(self.path_of(digest), "rb") as handle:
            handle.seek(max(0, offset))
            return handle.read(limit)


def _fsync_directory(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
