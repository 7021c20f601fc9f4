"""The local spool of a PostgreSQL audit chain: where chained rows wait while the database
is unreachable.

Rows are spooled *after* chaining (``seq``, ``prev_hash`` and ``hash`` are fixed), one JSON
array per line, fsync'd per batch, in segment files
``<state_dir>/audit-pgspool-<chain_id>-<segment>.jsonl``. While a chain has spooled rows,
its new rows are spooled behind them, so the database receives each chain in order. The
owning process holds an exclusive ``flock`` on ``audit-pgspool-<chain_id>.lock`` for its
lifetime; a later process on the same state dir takes over the spool of a process that died
(lock free) and drains it into that process's chain.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("keeptrusts.audit")

SPOOL_GLOB = "audit-pgspool-*.jsonl"
_SEGMENT_RE = re.compile(r"^audit-pgspool-(?P<chain>.+)-(?P<seg>\d{8})\.jsonl$")
SEGMENT_ROWS = 20_000  # rows per segment file before starting the next


class Spool:
    """The spool of one chain. Not thread-safe: the store serialises access."""

    def __init__(self, directory: Path, chain_id: str, *, lock_fd: int | None = None) -> None:
        self.dir = directory
        self.chain_id = chain_id
        self.lock_path = directory / f"audit-pgspool-{chain_id}.lock"
        if lock_fd is None:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
        self._lock_fd: int | None = lock_fd
        self._segments = sorted(self._existing_segments())
        self.pending = 0
        self._tail_rows = 0  # rows in the newest segment
        for i, seg in enumerate(self._segments):
            n = _count_lines(self._path(seg))
            self.pending += n
            if i == len(self._segments) - 1:
                self._tail_rows = n
        # Drain progress inside the oldest segment (rows already in the database).
        self._head_offset = 0

    # -- taking over a dead process's spool -------------------------------------------------

    @classmethod
    def orphans(cls, directory: Path, *, exclude: str) -> list[Spool]:
        """Spools in ``directory`` whose owner is gone (their lock can be taken), oldest
        first. Each returned spool holds its lock until closed."""
        chains: set[str] = set()
        with contextlib.suppress(OSError):
            for path in directory.glob(SPOOL_GLOB):
                m = _SEGMENT_RE.match(path.name)
                if m and m.group("chain") != exclude:
                    chains.add(m.group("chain"))
        found: list[Spool] = []
        for chain in sorted(chains):
            lock_path = directory / f"audit-pgspool-{chain}.lock"
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                log.error("cannot open audit spool lock %s: %s", lock_path, exc)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # its process is alive and drains it itself
                continue
            spool = cls(directory, chain, lock_fd=fd)
            if spool.pending:
                found.append(spool)
            else:
                spool.close(remove=True)
        return found

    # -- writing -------------------------------------------------------------------------------

    def append(self, rows: Sequence[Sequence[Any]]) -> None:
        """Append ``rows`` (already chained) durably: written and fsync'd before returning."""
        if not rows:
            return
        if not self._segments or self._tail_rows >= SEGMENT_ROWS:
            self._segments.append((self._segments[-1] + 1) if self._segments else 1)
            self._tail_rows = 0
        path = self._path(self._segments[-1])
        data = b"".join(orjson.dumps(list(r)) + b"\n" for r in rows)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        self._tail_rows += len(rows)
        self.pending += len(rows)

    # -- draining ------------------------------------------------------------------------------

    def peek(self, limit: int) -> list[list[Any]]:
        """Up to ``limit`` of the oldest rows (from the oldest segment only)."""
        if not self._segments:
            return []
        path = self._path(self._segments[0])
        rows: list[list[Any]] = []
        skip = self._head_offset
        with open(path, "rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                if skip:
                    skip -= 1
                    continue
                try:
                    rows.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    # A torn last line (crash mid-write, before the fsync returned): the
                    # batch it belonged to was never acknowledged. Skip it, loudly.
                    log.error("skipping an unreadable line in audit spool %s", path.name)
                    rows.append([])
                if len(rows) >= limit:
                    break
        return rows

    def consume(self, n: int) -> None:
        """Mark the ``n`` oldest rows (as returned by :meth:`peek`) as stored."""
        if not self._segments or n <= 0:
            return
        self._head_offset += n
        self.pending = max(0, self.pending - n)
        path = self._path(self._segments[0])
        if self._head_offset >= _count_lines(path):
            path.unlink(missing_ok=True)
            self._segments.pop(0)
            self._head_offset = 0
            if not self._segments:
                self._tail_rows = 0
                self.pending = 0

    def close(self, *, remove: bool = False) -> None:
        """Release the lock; with ``remove`` (nothing pending) delete the lock file too."""
        if self._lock_fd is None:
            return
        if remove and not self.pending:
            self.lock_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)
        self._lock_fd = None

    # -- helpers -------------------------------------------------------------------------------

    def _path(self, segment: int) -> Path:
        return self.dir / f"audit-pgspool-{self.chain_id}-{segment:08d}.jsonl"

    def _existing_segments(self) -> list[int]:
        out = []
        with contextlib.suppress(OSError):
            for path in self.dir.glob(f"audit-pgspool-{glob_escape(self.chain_id)}-*.jsonl"):
                m = _SEGMENT_RE.match(path.name)
                if m and m.group("chain") == self.chain_id:
                    out.append(int(m.group("seg")))
        return out


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except OSError:
        return 0
