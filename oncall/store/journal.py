"""The incident's journal: one append-only JSON Lines file that every process writes and folds in.

DuckDB lets one process write a file or many read it, so the responder's records (labels, notes,
trail events, replay results, actions) and the registration of finished loads do not go into a
DuckDB file at all: they are lines appended here, under an exclusive `flock`, each written with one
`write()` and `fsync`ed before the lock is released. Readers take no lock: they read from where they
stopped up to the last complete line, so a line is seen whole or not at all. A writer that dies
mid-line leaves a torn tail; the next writer cuts it off (under the lock) before appending.

Each line is one entry: `{"seq": N, "at": ISO, "actor": …, "rows": [[table, {row}], …]}` (rows
appended together, all or nothing) or `{"seq": N, "at": ISO, "part": {…}}` (a finished load).
`seq` counts entries from 1, so a reader can tell it has seen everything.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson


class JournalError(Exception):
    """The journal holds a line that is not a journal entry (edited by hand, or another tool)."""


def _dumps(entry: dict[str, Any]) -> bytes:
    return orjson.dumps(entry, default=str) + b"\n"


class Journal:
    """Reader state (how far this process has read) plus the locked append."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.seq = 0

    def read_new(self) -> list[dict[str, Any]]:
        """Entries appended since the last call (complete lines only)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        entries = []
        lineno = self.seq
        for raw in data[: end + 1].splitlines():
            lineno += 1
            if not raw.strip():
                continue
            try:
                entry = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise JournalError(f"{self.path}: entry {lineno} is not valid JSON ({exc}); "
                                   "the journal must only be written by oncall") from None
            if not isinstance(entry, dict):
                raise JournalError(f"{self.path}: entry {lineno} is not a journal entry")
            entries.append(entry)
        self.offset += end + 1
        self.seq += len(entries)
        return entries

    @contextmanager
    def locked(self) -> Iterator[_LockedJournal]:
        """Hold the journal's write lock; cut a torn tail left by a writer that died mid-line."""
        new_file = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if new_file:
                _fsync_dir(self.path.parent)
            size = os.fstat(fd).st_size
            if size:
                os.lseek(fd, max(0, size - 1), os.SEEK_SET)
                if os.read(fd, 1) != b"\n":
                    _cut_torn_tail(fd, size)
            yield _LockedJournal(self, fd)
        finally:
            os.close(fd)  # releases the flock


class _LockedJournal:
    def __init__(self, journal: Journal, fd: int) -> None:
        self.journal = journal
        self.fd = fd

    def read_new(self) -> list[dict[str, Any]]:
        return self.journal.read_new()

    def write(self, make_entry: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
        """Append the entry make_entry(seq) builds (after read_new(): seq is the next number)."""
        entry = make_entry(self.journal.seq + 1)
        line = _dumps(entry)
        written = os.write(self.fd, line)
        if written != len(line):  # a full disk: never leave half an entry behind
            os.ftruncate(self.fd, os.fstat(self.fd).st_size - written)
            raise OSError(f"{self.journal.path}: short write ({written} of {len(line)} bytes); disk full?")
        os.fsync(self.fd)
        return entry


def _cut_torn_tail(fd: int, size: int) -> None:
    """Truncate to the last newline (the unfinished entry of a writer that died)."""
    chunk = 65536
    pos = size
    while pos > 0:
        start = max(0, pos - chunk)
        os.lseek(fd, start, os.SEEK_SET)
        data = os.read(fd, pos - start)
        i = data.rfind(b"\n")
        if i >= 0:
            os.ftruncate(fd, start + i + 1)
            os.fsync(fd)
            return
        pos = start
    os.ftruncate(fd, 0)
    os.fsync(fd)


def _fsync_dir(path: Path) -> None:
    try:
        dfd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
