"""What the audit log costs: hot-path submit() and batched vs strict write throughput.

    python bench/audit_cost.py [--events 50000] [--dir DIR]

Events are real decision events (``build_event`` on a request with three policy results).
The writer's CPU per event is its thread's CPU time (user + system) over the events it
wrote: on a gateway pinned to one core that is CPU taken from the event loop.
Writes go to a fresh SQLite store (WAL, synchronous=FULL) in a temporary directory, so
the figures include the fsync of every committed batch on that disk.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import timeit
from pathlib import Path

from keeptrusts.audit.event import build_event
from keeptrusts.audit.sink import AuditSink
from keeptrusts.audit.store import SQLiteAuditStore
from keeptrusts.config.model import Pack, Target
from keeptrusts.context import Identity, PolicyResult, RequestContext

PACK = Pack("bench", "1.0.0")
TARGET = Target(id="openai-gpt4o", provider="openai", model="gpt-4o", base_url="https://x/v1")


def sample_context(i: int) -> RequestContext:
    ctx = RequestContext(
        request_id=f"req_{i:08d}",
        endpoint="/v1/chat/completions",
        body={},
        model="gpt-4o",
        stream=False,
        headers={},
    )
    ctx.identity = Identity(key_id="key_01", name="team-a", role="analyst", source="key")
    ctx.target = TARGET
    ctx.policy_results += [
        PolicyResult("prompt-injection", "input", "allow", 0.41, score=0.02),
        PolicyResult("pii-detector", "input", "redact", 0.22, reason_code="pii_detected",
                     findings={"EMAIL_ADDRESS": 1, "PERSON": 2}),
        PolicyResult("audit-logger", "output", "allow", 0.01),
    ]  # fmt: skip
    ctx.usage = {"prompt_tokens": 120, "completion_tokens": 48, "total_tokens": 168}
    return ctx


def sample_event(i: int) -> dict:
    return build_event(sample_context(i), PACK)


def writer_cpu(sink: AuditSink) -> float:
    """CPU seconds the sink's writer thread has used so far (user + system)."""
    return time.clock_gettime(time.pthread_getcpuclockid(sink._thread.ident))  # type: ignore[arg-type]


def bench_submit(root: Path, events: list[dict]) -> tuple[float, float, float, float]:
    """Per-event submit() cost with the writer running; then time until all is durable,
    and the writer thread's CPU per event."""
    sink = AuditSink(SQLiteAuditStore(root / "submit"))
    cpu0 = writer_cpu(sink)
    samples = []
    start = time.perf_counter()
    for i in range(0, len(events), 1000):
        chunk = events[i : i + 1000]
        t = time.perf_counter_ns()
        for ev in chunk:
            sink.submit(ev)
        samples.append((time.perf_counter_ns() - t) / len(chunk))
    sink.flush()
    cpu = (writer_cpu(sink) - cpu0) / len(events)
    sink.close()  # fsync the head file, checkpoint the WAL
    done = time.perf_counter()
    return statistics.median(samples), max(samples), len(events) / (done - start), cpu


async def _loop_lag(sink: AuditSink, events: list[dict]) -> list[float]:
    """Submit at ~20k events/s for the whole list; record how late 1 ms timers fire."""
    lags: list[float] = []
    done = False

    async def probe() -> None:
        while not done:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - t - 0.001) * 1000)

    task = asyncio.create_task(probe())
    for i in range(0, len(events), 100):
        for ev in events[i : i + 100]:
            sink.submit(ev)
        await asyncio.sleep(0.005)
    await sink.aflush()
    done = True
    await task
    return sorted(lags)


class _NullSink:
    """Baseline: same loop, no writer thread (what the machine alone does to timers)."""

    def submit(self, event: dict) -> None:
        pass

    async def aflush(self) -> None:
        pass


def bench_loop_lag(root: Path, events: list[dict], *, null: bool = False) -> tuple[float, ...]:
    """Timer lateness p50, p99, max (ms) and the writer's CPU per event (us; 0 for null)."""
    if null:
        lags = asyncio.run(_loop_lag(_NullSink(), events))  # type: ignore[arg-type]
        cpu = 0.0
    else:
        sink = AuditSink(SQLiteAuditStore(root / "lag"))
        cpu0 = writer_cpu(sink)
        lags = asyncio.run(_loop_lag(sink, events))
        cpu = (writer_cpu(sink) - cpu0) / len(events) * 1e6
        sink.close()
    return lags[len(lags) // 2], lags[int(len(lags) * 0.99)], lags[-1], cpu


async def _strict(sink: AuditSink, events: list[dict], concurrency: int) -> float:
    it = iter(events)

    async def worker() -> None:
        for ev in it:
            await sink.commit(ev)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(events) / (time.perf_counter() - start)


def bench_strict(root: Path, events: list[dict], concurrency: int) -> tuple[float, float]:
    sink = AuditSink(SQLiteAuditStore(root / f"strict{concurrency}"), strict=True)
    rate = asyncio.run(_strict(sink, events, concurrency))
    batches = sink.batches
    sink.close()
    return rate, len(events) / max(1, batches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--dir", default=None, help="where to put the test stores")
    args = ap.parse_args()
    events = [sample_event(i) for i in range(args.events)]
    ctx = sample_context(0)
    build_us = min(timeit.repeat(lambda: build_event(ctx, PACK), number=2000, repeat=5))
    build_us = build_us / 2000 * 1e6

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        med_ns, worst_ns, batched_rate, cpu = bench_submit(root, events)
        size = (root / "submit" / "audit.db").stat().st_size
        print(f"events: {args.events}, ~{size / args.events:.0f} bytes each on disk")
        print(f"build_event (finished context -> dict, on the request path): "
              f"{build_us:.1f} us/event")  # fmt: skip
        print(f"submit() on the hot path: median {med_ns:.0f} ns/event "
              f"(worst 1000-event chunk {worst_ns:.0f} ns/event)")  # fmt: skip
        print(f"batched: {batched_rate:,.0f} events/s submitted and committed (durable); "
              f"writer thread CPU {cpu * 1e6:.1f} us/event")  # fmt: skip
        for null in (True, False):
            p50, p99, worst, cpu_us = bench_loop_lag(root, events[:20000], null=null)
            what = "no audit writer (baseline)" if null else "audit writer at ~20k events/s"
            extra = "" if null else f"; writer CPU {cpu_us:.1f} us/event"
            print(f"event-loop 1 ms timer lateness, {what}: "
                  f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {worst:.2f} ms{extra}")  # fmt: skip
        n_strict = min(args.events, 2000)
        for conc in (1, 16, 256):
            rate, per_batch = bench_strict(root, events[: n_strict if conc == 1 else None], conc)
            print(f"strict, {conc:>3} concurrent commit(s): {rate:,.0f} events/s "
                  f"({per_batch:.1f} events per transaction)")  # fmt: skip


if __name__ == "__main__":
    main()
