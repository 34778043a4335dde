"""The update journal: one JSON line per acknowledged update, on disk before the answer.

``journal.jsonl`` in the run folder. The first line names the state of the run folder it
extends (a hash of ``run.json`` and ``updates.json``); every other line is one update, in the
order it was applied::

    {"journal": "hybridrec-serve/1", "run": "5f0c9a1e77d2b3c4"}
    {"op": "items", "items": [{"item_id": "m14", ...}], "triples": [...], "links": {}, ...}
    {"op": "interactions", "pairs": [["u02", "m14"]]}

* A line counts once it ends in a newline and is fsynced; the server answers only then. A
  process killed mid-write leaves a torn last line: readers ignore it, the next writer cuts it.
* Several processes (``--workers``) share one journal: a writer holds an exclusive ``flock``,
  a reader a shared one, and each applies the lines the others wrote before its own.
* Saving the run folder again (``Recommender.save``, ``--compact``) replaces the folder, journal
  included: its updates are then in ``updates.json`` and a fresh journal starts.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FORMAT = "hybridrec-serve/1"
NAME = "journal.jsonl"


class JournalError(ValueError):
    """A journal that cannot be used: written against another state of the run folder,
    corrupt, or replaced under a running server."""


def run_fingerprint(folder: str | os.PathLike[str]) -> str:
    """A short hash of the run folder's state: ``run.json`` and ``updates.json`` (rewritten by
    every save)."""
    digest = hashlib.sha256()
    for name in ("run.json", "updates.json"):
        path = Path(folder) / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b""))
    return digest.hexdigest()[:16]


class Journal:
    """An append-only file of JSON lines, opened on a run folder.

    Args:
        folder: the run folder; the journal is ``folder / "journal.jsonl"``, created with its
            header when absent.

    Raises:
        JournalError: the journal holds updates written against another state of the folder
            (it was retrained or saved since), or a complete line that is not JSON.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / NAME
        self.fingerprint = run_fingerprint(folder)
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self.offset = 0  # bytes of complete lines read so far
        self.entries = 0  # update lines read or written so far
        self._seen_size = 0
        with self.locked(exclusive=True):
            self._open_header()
        if created:  # the new name must survive a crash too
            _fsync_dir(self.path.parent)

    def close(self) -> None:
        os.close(self._fd)

    @contextmanager
    def locked(self, exclusive: bool) -> Iterator[None]:
        """Hold the file lock against other processes (threads of one process share it: they
        need their own lock)."""
        fcntl.flock(self._fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _open_header(self) -> None:
        size = os.fstat(self._fd).st_size
        data = os.pread(self._fd, min(size, 4096), 0)
        end = data.find(b"\n") + 1
        header = _parse(data[:end], self.path, 1) if end else None
        if header is not None and header.get("journal") != FORMAT:
            raise JournalError(f"{self.path}: expected a {FORMAT!r} journal, got {header!r}")
        if header is not None and header.get("run") != self.fingerprint:
            if size > end:
                raise JournalError(
                    f"{self.path}: its updates extend another state of the run folder (it was "
                    f"retrained or saved since); move the journal away to serve the folder "
                    f"as it is now")
            header = None  # a header alone: nothing to lose
        if header is None:  # new, or torn while the header was written
            os.ftruncate(self._fd, 0)
            self._write(_line({"journal": FORMAT, "run": self.fingerprint}))
            end = os.fstat(self._fd).st_size
        self.offset = self._seen_size = end

    def changed(self) -> bool:
        """Whether the file changed size since it was last read (another process appended)."""
        return os.fstat(self._fd).st_size != self._seen_size

    def read_new(self) -> list[dict[str, Any]]:
        """The complete update lines past those already read (hold a lock)."""
        size = os.fstat(self._fd).st_size
        self._seen_size = size
        if size <= self.offset:
            return []
        data = os.pread(self._fd, size - self.offset, self.offset)
        complete = data[:data.rfind(b"\n") + 1]
        entries = [_parse(line, self.path, self.entries + 2 + n)
                   for n, line in enumerate(complete.splitlines(keepends=True))]
        self.offset += len(complete)
        self.entries += len(entries)
        return entries

    def append(self, entry: dict[str, Any]) -> None:
        """Write one update line and fsync it (hold the exclusive lock, after
        :meth:`read_new`, so that anything past the lines read is a torn line to cut)."""
        try:
            same = os.stat(self.path).st_ino == os.fstat(self._fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            raise JournalError(f"{self.path} was replaced or removed while serving (the run "
                               f"folder was saved again?); restart the server")
        if os.fstat(self._fd).st_size > self.offset:
            os.ftruncate(self._fd, self.offset)
        line = _line(entry)
        try:
            self._write(line)
        except OSError:
            os.ftruncate(self._fd, self.offset)  # best effort: no half line left behind
            raise
        self.offset += len(line)
        self._seen_size = self.offset
        self.entries += 1

    def _write(self, line: bytes) -> None:
        view = memoryview(line)
        while view:
            view = view[os.write(self._fd, view):]
        os.fsync(self._fd)


def _line(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def _parse(line: bytes, path: Path, number: int) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError as err:
        raise JournalError(f"{path} line {number}: expected a JSON object ({err})") from None
    if not isinstance(value, dict):
        raise JournalError(f"{path} line {number}: expected a JSON object, got {value!r}")
    return value


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
