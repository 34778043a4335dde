"""A :class:`~hybridrec.Recommender` shared by the server's threads, updated live and durably.

* **Readers never see half an update.** Reads share a readers-writer lock; an update holds it
  alone while the Recommender changes, so a read sees the state before or after, never
  between.
* **Nothing acknowledged is lost.** An update is validated and applied by the Recommender
  (which changes nothing when it raises), then appended to the journal and fsynced; the call
  returns only then. On start the journal is replayed over the run folder.
* **One state across processes.** Before a read or an update, the lines other server
  processes appended to the journal are applied, in order.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hybridrec.recommender import AddedItems, Recommender
from hybridrec.serve.journal import Journal, JournalError


class ReadWriteLock:
    """Many readers or one writer.

    A waiting writer goes before new readers. *Impatient* ones (the event loop's short
    calls) go first only while a patient read (a thread's, e.g. a sentence being encoded) is
    in progress: the writer waits for that one anyway, and the loop must not stall behind it.
    Otherwise they let the writer in: the loop's reads follow one another with no gap, so a
    writer that waited for a moment between two of them would, under load, wait for ever
    (measured: a one-second median for updates under 32 clients).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._patient = 0  # readers that are not impatient
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def read(self, impatient: bool = False) -> Iterator[None]:
        with self._cond:
            while self._writing or (self._writers_waiting
                                    and not (impatient and self._patient)):
                self._cond.wait()
            self._readers += 1
            self._patient += not impatient
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._patient -= not impatient
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class LiveRecommender:
    """A run folder in service: its Recommender, with the journal's updates replayed.

    Args:
        folder: a run folder written by ``python -m hybridrec.train`` or ``Recommender.save``.
        shared: other processes serve the folder too (``--workers``): look for their journal
            lines before each read (a ``stat``; default: :obj:`True`).

    Raises:
        JournalError: the folder's journal cannot be replayed (see :class:`Journal`).
    """

    def __init__(self, folder: str | os.PathLike[str], shared: bool = True) -> None:
        self.folder = Path(folder)
        self.shared = shared
        self._lock = ReadWriteLock()
        self._encoder_lock = threading.Lock()  # one sentence at a time through the tokenizer
        self.rec, self.journal = self._load()
        self.broken: str | None = None  # why updates are refused, after a failed rollback

    def _load(self) -> tuple[Recommender, Journal]:
        rec, journal = Recommender.load(self.folder), Journal(self.folder)
        with journal.locked(exclusive=False):
            _apply_all(rec, journal.read_new(), journal)
        return rec, journal

    @contextmanager
    def reading(self, impatient: bool = False) -> Iterator[Recommender]:
        """The current Recommender, read-only, for the duration of the block (with what
        other processes appended to the journal applied first). ``impatient``: for short
        calls on the event loop, which go before waiting writers (:class:`ReadWriteLock`)."""
        while True:
            with self._lock.read(impatient):
                if not (self.shared and self.journal.changed()):
                    yield self.rec
                    return
            with self._lock.write(), self.journal.locked(exclusive=False):
                _apply_all(self.rec, self.journal.read_new(), self.journal)

    @contextmanager
    def encoding(self) -> Iterator[Recommender]:
        """:meth:`reading`, for calls that run the text encoder (its tokenizer is not
        thread-safe)."""
        with self.reading() as rec, self._encoder_lock:
            yield rec

    def add_items(self, items: Sequence[Mapping[str, str]],
                  triples: Sequence[Sequence[str]] = (), links: Mapping[str, str] | None = None,
                  entity_text: Mapping[str, str] | None = None) -> AddedItems:
        """:meth:`Recommender.add_items`, journaled before it returns."""
        return self._update({"op": "items", "items": [dict(row) for row in items],
                             "triples": [list(t) for t in triples], "links": dict(links or {}),
                             "entity_text": dict(entity_text or {})})

    def add_interactions(self, pairs: Sequence[Sequence[str]]) -> list[str]:
        """:meth:`Recommender.add_interactions`, journaled before it returns."""
        return self._update({"op": "interactions", "pairs": [list(p) for p in pairs]})

    def _update(self, entry: dict[str, Any]) -> Any:
        with self._lock.write():
            if self.broken is not None:
                raise JournalError(f"updates are off until a restart: {self.broken}")
            failure = None
            with self.journal.locked(exclusive=True):
                _apply_all(self.rec, self.journal.read_new(), self.journal)
                result = _apply(self.rec, entry)  # bad input raises here: nothing changed
                try:
                    self.journal.append(entry)
                except (OSError, JournalError) as err:
                    failure = err
            if failure is not None:
                # Applied in memory, not on disk: go back to what the disk holds.
                old = self.journal
                try:
                    self.rec, self.journal = self._load()
                except (OSError, ValueError) as err:
                    self.broken = f"{failure}; reloading the run folder failed too: {err}"
                    raise JournalError(self.broken) from failure
                old.close()
                raise JournalError(f"the update was not saved, nothing changed: {failure}") \
                    from failure
        return result


def _apply(rec: Recommender, entry: Mapping[str, Any]) -> Any:
    """Apply one journal entry to ``rec``."""
    if entry.get("op") == "items":
        return rec.add_items(entry["items"], [tuple(t) for t in entry["triples"]],
                             links=entry.get("links") or None,
                             entity_text=entry.get("entity_text") or None)
    if entry.get("op") == "interactions":
        return rec.add_interactions([tuple(p) for p in entry["pairs"]])
    raise JournalError(f"unknown journal entry {entry.get('op')!r}")


def _apply_all(rec: Recommender, entries: Sequence[Mapping[str, Any]], journal: Journal
               ) -> None:
    """Replay entries that were valid when written; one that fails now means the journal
    and the folder disagree."""
    first = journal.entries - len(entries)
    for n, entry in enumerate(entries):
        try:
            _apply(rec, entry)
        except (KeyError, TypeError, ValueError) as err:
            raise JournalError(f"{journal.path} update {first + n + 1} does not apply to "
                               f"this run folder: {err}") from err
