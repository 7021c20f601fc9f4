"""No key, header or prompt ever reaches the audit log's files."""

from __future__ import annotations

from pathlib import Path

from keeptrusts.audit.event import build_event
from keeptrusts.audit.sink import AuditSink
from keeptrusts.audit.store import SQLiteAuditStore
from keeptrusts.config.model import Pack, Target
from keeptrusts.context import Identity, PolicyResult, RequestContext

from .helpers import kt

CLIENT_KEY = "sk-client-SECRET-7f3a9c"
UPSTREAM_KEY = "sk-upstream-SECRET-b41d0e"
PROMPT = "my password is hunter2-SECRET-c0ffee"


def _ctx(i: int) -> RequestContext:
    ctx = RequestContext(
        request_id=f"req_{i}",
        endpoint="/v1/chat/completions",
        body={"model": "gpt-4o", "messages": [{"role": "user", "content": PROMPT}]},
        model="gpt-4o",
        stream=False,
        headers={
            "authorization": f"Bearer {CLIENT_KEY}",
            "x-api-key": CLIENT_KEY,
            "x-user-id": "u1",
        },
        client_auth=CLIENT_KEY,
    )
    ctx.identity = Identity(key_id="key_1", name="team-a", role="analyst", source="key")
    ctx.target = Target(
        id="openai-gpt4o",
        provider="openai",
        model="gpt-4o",
        base_url="https://api.openai.com/v1",
        api_key=UPSTREAM_KEY,
        headers={"x-extra": UPSTREAM_KEY},
    )
    ctx.policy_results.append(
        PolicyResult("pii-detector", "input", "redact", 0.2, reason_code="pii_detected",
                     findings={"PASSWORD": 1})
    )  # fmt: skip
    ctx.usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    return ctx


def test_state_dir_never_contains_keys_headers_or_prompts(state_dir: Path) -> None:
    sink = AuditSink(SQLiteAuditStore(state_dir), flush_interval=0.005)
    for i in range(20):
        sink.submit(build_event(_ctx(i), Pack("p", "1")))
    # Even an event that wrongly carries raw headers or a key has them stripped.
    bad = build_event(_ctx(99), Pack("p", "1"))
    bad.update(headers={"authorization": CLIENT_KEY}, api_key=UPSTREAM_KEY, messages=PROMPT)
    sink.submit(bad)
    sink.close()
    assert kt("events", "export", "--format", "jsonl", "--output",
              str(state_dir / "export.jsonl"), "--state-dir", str(state_dir)) == 0  # fmt: skip
    assert kt("events", "verify", "--state-dir", str(state_dir)) == 0

    files = [p for p in state_dir.rglob("*") if p.is_file()]
    assert any(p.name == "audit.db" for p in files)
    assert len((state_dir / "export.jsonl").read_text().splitlines()) == 21
    for path in files:
        data = path.read_bytes()
        for secret in (CLIENT_KEY, UPSTREAM_KEY, PROMPT, "hunter2"):
            assert secret.encode() not in data, f"{secret!r} found in {path.name}"
