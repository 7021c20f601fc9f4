"""The hash chain that makes the audit log tamper-evident.

Every stored event carries ``chain_id`` (one per audit store, i.e. per gateway state dir),
``seq`` (1, 2, 3, … with no gaps), ``prev_hash`` (the ``hash`` of ``seq - 1``, or
:data:`GENESIS` for ``seq`` 1) and::

    hash = sha256(prev_hash || canonical_json(event without "hash"))   (hex)

where ``canonical_json`` is orjson with sorted keys and ``||`` concatenates the ASCII hex
``prev_hash`` with the JSON bytes. Editing an event changes its hash; deleting, inserting or
reordering events breaks the ``seq`` sequence or the ``prev_hash`` links. Deleting the newest
events leaves a valid-looking chain, so a small *head* record ``(chain_id, seq, hash)`` is
kept twice, in the store (same transaction as the events) and in a file next to it, and
:func:`verify` compares the chain's end with both. Retention deletes a prefix of the chain
and leaves a *checkpoint* (the last purged ``seq`` and ``hash``) so that what remains still
verifies; the purge itself is an event in the chain, so a forged checkpoint is caught too.

What this cannot catch, by construction: someone with write access to the state dir who
rewrites every hash after an edit *and* both head records. Ship the head hash elsewhere
(``kt events verify`` prints it) to anchor the chain outside the machine.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson

GENESIS = "0" * 64
HEAD_FILE = "audit-head.json"

# Event types the audit machinery itself writes into the chain.
RETENTION_PURGE = "retention_purge"
DISCONTINUITY = "audit_discontinuity"

_DUMPS_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
# orjson serialises str-keyed dicts through a faster path without OPT_NON_STR_KEYS (about
# 40% less time for a decision event) and sorts their keys the same way (by UTF-8 bytes),
# so the bytes are identical; only a dict with a non-str key needs the general path.
_DUMPS_STR_KEYS = orjson.OPT_SORT_KEYS


def _default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    return str(obj)


def canonical_json(event: Mapping[str, Any]) -> bytes:
    """Sorted-key compact JSON: the exact bytes that are hashed and stored."""
    try:
        return orjson.dumps(event, option=_DUMPS_STR_KEYS, default=_default)
    except orjson.JSONEncodeError:
        # A non-str key somewhere (or something no option can encode: then this raises too).
        return orjson.dumps(event, option=_DUMPS_OPTS, default=_default)


def chain_hash(prev_hash: str, body: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


def event_hash(event: Mapping[str, Any]) -> str:
    """The hash an event (with ``prev_hash``, with or without ``hash``) must carry."""
    unhashed = {k: v for k, v in event.items() if k != "hash"}
    return chain_hash(str(event.get("prev_hash", "")), canonical_json(unhashed))


def parse_ts(value: Any) -> float | None:
    """Epoch seconds of an ISO-8601 ``timestamp`` (``Z`` or offset), or None."""
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    ts = dt.timestamp()
    return ts if math.isfinite(ts) else None


def index_columns(event: Mapping[str, Any]) -> dict[str, Any]:
    """The fields every store copies into indexed columns (and ``verify`` cross-checks)."""
    ident = event.get("identity")
    role = ident.get("role") if isinstance(ident, Mapping) else None
    get = event.get
    return {
        "id": column_value(get("id")),
        "timestamp": column_value(get("timestamp")),
        "event_type": column_value(get("event_type")),
        "verdict": column_value(get("verdict")),
        "reason_code": column_value(get("reason_code")),
        "model": column_value(get("model")),
        "target_id": column_value(get("target_id")),
        "role": column_value(role),
        "request_id": column_value(get("request_id")),
    }


def column_value(value: Any) -> str | None:
    """Column values are text: anything else is stored (and compared) as its JSON."""
    if value is None or isinstance(value, str):
        return value
    return canonical_json(value).decode()


@dataclass(frozen=True, slots=True)
class Head:
    """A position in a chain: the last ``seq`` and its ``hash`` (``seq`` 0 = empty)."""

    chain_id: str
    seq: int
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"chain_id": self.chain_id, "seq": self.seq, "hash": self.hash}

    @classmethod
    def from_dict(cls, data: Any) -> Head | None:
        if not isinstance(data, Mapping):
            return None
        try:
            chain_id, seq, h = data["chain_id"], data["seq"], data["hash"]
        except KeyError:
            return None
        if not isinstance(chain_id, str) or not isinstance(seq, int) or not isinstance(h, str):
            return None
        return cls(chain_id, seq, h)


class Record(NamedTuple):
    """One stored event as ``verify`` sees it.

    ``body`` is the stored canonical JSON of the event without ``hash``; ``columns`` are the
    store's indexed copies of some fields (None when the source has no such copies).
    """

    seq: int
    chain_id: str
    prev_hash: str
    hash: str
    body: bytes
    columns: Mapping[str, Any] | None = None


def record_from_event(event: Mapping[str, Any]) -> Record:
    """A ``Record`` for a full event dict (e.g. one line of a JSONL export)."""
    unhashed = {k: v for k, v in event.items() if k != "hash"}
    return Record(
        seq=event.get("seq"),  # type: ignore[arg-type]
        chain_id=event.get("chain_id"),  # type: ignore[arg-type]
        prev_hash=event.get("prev_hash"),  # type: ignore[arg-type]
        hash=event.get("hash"),  # type: ignore[arg-type]
        body=canonical_json(unhashed),
    )


@dataclass(slots=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_id: str | None = None
    first_bad_seq: int | None = None
    problem: str | None = None
    code: str | None = None
    chain_id: str | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for humans: ``ok: …`` or ``FAILED: …``."""
        if self.ok:
            head = f"head seq {self.last_seq} hash {self.last_hash}" if self.last_seq else "empty"
            return f"ok: {self.checked} events verified (chain {self.chain_id}, {head})"
        where = []
        if self.first_bad_id:
            where.append(f"event {self.first_bad_id}")
        if self.first_bad_seq is not None:
            where.append(f"seq {self.first_bad_seq}")
        at = f" at {' '.join(where)}" if where else ""
        return (
            f"FAILED{at}: {self.problem} "
            f"({self.checked} events checked before it, chain {self.chain_id})"
        )


class _Fail(Exception):
    def __init__(self, code: str, problem: str, seq: int | None, event_id: str | None) -> None:
        super().__init__(problem)
        self.code, self.problem, self.seq, self.event_id = code, problem, seq, event_id


def verify(
    records: Iterable[Record],
    checkpoint: Head | None = None,
    *,
    head: Head | None = None,
    file_head: Head | None = None,
    require_file_head: bool = False,
    require_head: bool = False,
    trust_checkpoint: bool = False,
    chain_id: str | None = None,
) -> VerifyResult:
    """Check one chain, given in ``seq`` order as stored; stop at the first problem.

    ``checkpoint`` is the retention checkpoint (the chain may start right after it, and a
    ``retention_purge`` event recording it must be in the chain). ``head`` is the head
    record kept with the events and ``file_head`` the copy kept in a file: the chain must
    end exactly at ``head``; ``file_head`` may lag (it is written just after each commit)
    but must agree with the event at its ``seq``. With ``require_file_head`` a missing file
    head is a failure. ``chain_id`` defaults to the checkpoint's, the head's or the first
    record's.
    """
    if chain_id is None:
        chain_id = (checkpoint or head or Head("", 0, "")).chain_id or None
    res = VerifyResult(ok=True, checked=0, chain_id=chain_id)
    expected_seq = checkpoint.seq + 1 if checkpoint else 1
    prev_hash = checkpoint.hash if checkpoint else GENESIS
    last_seq = checkpoint.seq if checkpoint else 0
    checkpoint_recorded = checkpoint is None or checkpoint.seq == 0 or trust_checkpoint
    file_head_hash_seen: str | None = None
    discontinuity: tuple[int, str | None, str] | None = None
    event_id: str | None = None
    try:
        for rec in records:
            seq = rec.seq
            if res.chain_id is None:
                res.chain_id = chain_id = rec.chain_id
            try:
                event = orjson.loads(rec.body)
            except orjson.JSONDecodeError as exc:
                msg = f"stored event is not valid JSON ({exc})"
                raise _Fail("bad_json", msg, seq, None) from None
            if not isinstance(event, dict):
                raise _Fail("bad_json", "stored event is not a JSON object", seq, None)
            event_id = event.get("id") if isinstance(event.get("id"), str) else None
            if res.first_seq is None:
                res.first_seq = seq
            if not isinstance(seq, int) or isinstance(seq, bool):
                raise _Fail("bad_seq", f"seq {seq!r} is not an integer", None, event_id)
            if rec.chain_id != chain_id or event.get("chain_id") != chain_id:
                raise _Fail(
                    "chain_mismatch",
                    f"event belongs to chain {event.get('chain_id')!r}, expected {chain_id!r} "
                    "(event copied in from another log)",
                    seq,
                    event_id,
                )
            if event.get("seq") != seq:
                raise _Fail(
                    "seq_mismatch",
                    f"stored at seq {seq} but the hashed event says seq {event.get('seq')!r} "
                    "(events reordered or renumbered)",
                    seq,
                    event_id,
                )
            if seq < expected_seq:
                raise _Fail(
                    "out_of_order",
                    f"seq {seq} follows seq {expected_seq - 1} (duplicated or reordered events)",
                    seq,
                    event_id,
                )
            if seq > expected_seq:
                if expected_seq == 1 and res.checked == 0:
                    msg = (
                        f"chain starts at seq {seq} but there is no retention checkpoint "
                        f"(events 1..{seq - 1} were deleted)"
                    )
                else:
                    missing = (
                        f"seq {expected_seq}"
                        if seq == expected_seq + 1
                        else f"seq {expected_seq}..{seq - 1}"
                    )
                    msg = f"{missing} missing before this event (events deleted)"
                raise _Fail("gap", msg, seq, event_id)
            if rec.prev_hash != prev_hash or event.get("prev_hash") != prev_hash:
                raise _Fail(
                    "broken_link",
                    f"prev_hash does not match the hash of seq {seq - 1} "
                    "(an event before it was modified, inserted or replaced)",
                    seq,
                    event_id,
                )
            if chain_hash(prev_hash, rec.body) != rec.hash:
                raise _Fail(
                    "hash_mismatch",
                    "stored hash does not match the event's contents "
                    "(the event was modified after it was written)",
                    seq,
                    event_id,
                )
            if rec.columns is not None:
                expected_cols = index_columns(event)
                for name, value in rec.columns.items():
                    if name == "ts":
                        want = parse_ts(event.get("timestamp"))
                        if want is not None and value != want:
                            raise _Fail(
                                "column_mismatch",
                                f"indexed time {value!r} disagrees with the hashed timestamp "
                                f"{event.get('timestamp')!r} (row modified)",
                                seq,
                                event_id,
                            )
                    elif name in expected_cols and value != expected_cols[name]:
                        raise _Fail(
                            "column_mismatch",
                            f"indexed column {name}={value!r} disagrees with the hashed event "
                            f"({expected_cols[name]!r}) (row modified)",
                            seq,
                            event_id,
                        )
            etype = event.get("event_type")
            if (
                etype == RETENTION_PURGE
                and checkpoint is not None
                and event.get("purged_to_seq") == checkpoint.seq
                and event.get("purged_to_hash") == checkpoint.hash
            ):
                checkpoint_recorded = True
            if etype == DISCONTINUITY and discontinuity is None:
                discontinuity = (seq, event_id, str(event.get("detail") or "unexplained"))
            if file_head is not None and file_head.chain_id == chain_id and file_head.seq == seq:
                file_head_hash_seen = rec.hash
            prev_hash = rec.hash
            last_seq = seq
            expected_seq = seq + 1
            res.checked += 1
        res.last_seq, res.last_hash = last_seq, prev_hash
        event_id = None
        if head is None and require_head:
            raise _Fail("head_missing", "the store's head record is missing", None, None)
        if head is not None:
            if head.chain_id != chain_id:
                raise _Fail(
                    "head_mismatch",
                    f"head record names chain {head.chain_id!r}, log is chain {chain_id!r}",
                    None,
                    None,
                )
            if head.seq > last_seq:
                raise _Fail(
                    "truncated",
                    f"log ends at seq {last_seq} but the head record says seq {head.seq} "
                    f"(the newest {head.seq - last_seq} event(s) were deleted)",
                    last_seq + 1,
                    None,
                )
            if head.seq < last_seq:
                raise _Fail(
                    "beyond_head",
                    f"log ends at seq {last_seq} but the head record says seq {head.seq} "
                    "(events appended outside the gateway)",
                    head.seq + 1,
                    None,
                )
            if head.hash != prev_hash:
                raise _Fail(
                    "head_mismatch",
                    f"hash of the last event (seq {last_seq}) differs from the head record "
                    "(the newest event was replaced)",
                    last_seq,
                    None,
                )
        if file_head is None:
            if require_file_head:
                raise _Fail(
                    "head_file_missing",
                    f"the head file ({HEAD_FILE}) is missing or unreadable",
                    None,
                    None,
                )
        elif file_head.chain_id != chain_id:
            raise _Fail(
                "head_file_mismatch",
                f"head file names chain {file_head.chain_id!r} (seq {file_head.seq}) but the "
                f"log is chain {chain_id!r} (log replaced?)",
                None,
                None,
            )
        elif file_head.seq > last_seq:
            raise _Fail(
                "truncated",
                f"log ends at seq {last_seq} but the head file says seq {file_head.seq} "
                f"(the newest {file_head.seq - last_seq} event(s) were deleted)",
                last_seq + 1,
                None,
            )
        elif file_head.seq == 0:
            if file_head.hash != GENESIS:
                raise _Fail("head_file_mismatch", "head file for seq 0 has a bad hash", 0, None)
        elif (
            # A head file at or before the checkpoint points at purged events: nothing to
            # compare. Otherwise the file may lag the store by a batch but must agree with it.
            file_head.seq > (checkpoint.seq if checkpoint else 0)
            and file_head_hash_seen != file_head.hash
        ):
            raise _Fail(
                "head_file_mismatch",
                f"head file hash for seq {file_head.seq} differs from the stored event "
                "(events rewritten)",
                file_head.seq,
                None,
            )
        if not checkpoint_recorded:
            raise _Fail(
                "checkpoint_unrecorded",
                f"retention checkpoint at seq {checkpoint.seq if checkpoint else '?'} has no "
                "matching retention_purge event in the chain (checkpoint forged?)",
                res.first_seq,
                None,
            )
        if discontinuity is not None:
            seq, event_id, detail = discontinuity
            raise _Fail("discontinuity", f"recorded discontinuity: {detail}", seq, event_id)
    except _Fail as f:
        res.ok = False
        res.code, res.problem = f.code, f.problem
        res.first_bad_seq, res.first_bad_id = f.seq, f.event_id
    return res


def read_head_file(path: Path) -> Head | None:
    try:
        return Head.from_dict(orjson.loads(path.read_bytes()))
    except (OSError, orjson.JSONDecodeError):
        return None


def write_head_file(path: Path, head: Head) -> None:
    """Replace ``path`` atomically (temp file, fsync, rename), mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = orjson.dumps(head.to_dict(), option=orjson.OPT_SORT_KEYS) + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
