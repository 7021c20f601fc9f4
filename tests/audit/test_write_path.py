"""The writer's fast paths give the same bytes, columns and values as the general ones."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import orjson

from keeptrusts.audit.chain import _DUMPS_OPTS, _default, canonical_json, index_columns, parse_ts
from keeptrusts.audit.event import _ms3, new_event_id
from keeptrusts.audit.store import _COLUMNS, SQLiteAuditStore


class _Key(str):
    pass


def _general(obj: Any) -> bytes:
    """canonical_json as it always was: one orjson call with OPT_NON_STR_KEYS."""
    return orjson.dumps(obj, option=_DUMPS_OPTS, default=_default)


def test_canonical_json_matches_the_general_encoding() -> None:
    rnd = random.Random(3)
    alphabet = "aZ_0 -é中😀\x00\x7f\U0010ffff\ue000"

    def key() -> str:
        k = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 4)))
        return _Key(k) if rnd.random() < 0.1 else k

    def value(depth: int = 0) -> Any:
        r = rnd.random()
        if depth < 3 and r < 0.25:
            return {key(): value(depth + 1) for _ in range(rnd.randint(0, 5))}
        if depth < 3 and r < 0.35:
            return [value(depth + 1) for _ in range(rnd.randint(0, 3))]
        return rnd.choice([None, True, 1.5, -(2**63), "x", (1, "a"), {2, 3}, b"\xff"])

    for _ in range(3000):
        obj = {key(): value() for _ in range(rnd.randint(0, 6))}
        assert canonical_json(obj) == _general(obj)
    # Non-str keys take the general path, with the same result.
    for obj in ({1: "a", "b": 2}, {"x": {2: 3, "1": 4}}, {"a": [{None: 1}]}):
        assert canonical_json(obj) == _general(obj)


def _rows(state_dir: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(state_dir / "audit.db")
    try:
        return conn.execute(f"SELECT {','.join(_COLUMNS)} FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()


def test_indexed_columns_are_what_verify_expects(state_dir: Path) -> None:
    same_ms = "2026-03-01T10:11:12.345Z"
    events: list[dict[str, Any]] = [
        {"id": "evt_a", "timestamp": same_ms, "event_type": "decision", "verdict": "allow",
         "reason_code": "ok", "model": "m", "target_id": "t", "request_id": "r1",
         "identity": {"role": "analyst"}},
        {"id": "evt_b", "timestamp": same_ms, "event_type": "decision", "verdict": "block",
         "reason_code": "x", "model": "m", "target_id": None, "request_id": "r2",
         "identity": {"role": None}},
        # A config reload has no model, target or request id.
        {"timestamp": "2026-03-01T10:11:13.000Z", "event_type": "config_reload",
         "verdict": "allow", "reason_code": "config_reloaded"},
        # Values that are not text are stored as their JSON; odd timestamps fall back.
        {"id": "evt_c", "timestamp": "2026-03-01T12:11:13+02:00", "event_type": "odd",
         "model": {"name": "m"}, "verdict": 3, "identity": {"role": ["a", "b"]},
         "request_id": _Key("r3")},
        {"event_type": "no_id_no_time", "timestamp": 5},
        {"id": "evt_d", "timestamp": "not a time", "identity": "not a mapping"},
    ]  # fmt: skip
    store = SQLiteAuditStore(state_dir)
    store.append(events)
    store.close()
    for row in _rows(state_dir):
        body = orjson.loads(row[12])
        columns = index_columns(body)
        assert row[2] == columns["id"]
        for name in _COLUMNS[4:12]:
            assert row[_COLUMNS.index(name)] == columns[name], name
        want_ts = parse_ts(body["timestamp"])
        if want_ts is not None:
            assert row[3] == want_ts
    assert SQLiteAuditStore(state_dir, readonly=True).verify().ok


def test_ms3_rounds_like_round_3() -> None:
    rnd = random.Random(5)
    for _ in range(100_000):
        x = rnd.uniform(0, 1e5) if rnd.random() < 0.5 else rnd.expovariate(0.1)
        assert _ms3(x) == round(x, 3)


def test_event_id_format() -> None:
    rnd = random.Random(9)
    for _ in range(1000):
        ms, r = rnd.getrandbits(48), rnd.getrandbits(80)
        assert f"evt_{ms << 80 | r:032x}" == f"evt_{ms:012x}{r:020x}"
    eid = new_event_id()
    assert len(eid) == 36 and eid.startswith("evt_") and int(eid[4:], 16)
