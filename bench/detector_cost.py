"""What prompt-injection and pii-detector cost per request, and whether long scans stall others.

    .venv/bin/python bench/detector_cost.py [--quick] [--only cost|loop] [--deep]
        [--phase-seconds S] [--rounds N] [--long-clients N] [--probe-rate R]
        [--modes process,threads] [--no-pin]

1. **Cost table.** Each policy is built as the gateway builds it (``pii-detector`` with every
   entity, PERSON included; ``prompt-injection`` with its defaults) and its ``on_request``
   hook is timed on a chat request holding one user message: ~50, ~1,000 and ~10,000 words
   of English, each with a person's name, an email address and a phone number. The policy
   runs inline here (no thread pool), so the figure is the CPU cost of one scan, the same
   work the gateway does per request (``--deep`` adds ``prompt-injection`` with
   ``deep: true``, which the gateway always runs off the event loop). ``detector`` columns
   time the bare detector call (``PiiAnalyzer.analyze``, ``InjectionDetector.score``) on
   the same texts. Every iteration gets a different text (own seed: sentence order, names,
   emails, phones, numbers, ticket and order ids), so no cache of whole texts can help;
   caches of single words inside a detector warm up as they would on real traffic.
2. **Loop flatness.** A real gateway (``kt gateway run``, chain ``prompt-injection``,
   ``pii-detector`` with PERSON on) in front of the fake upstream (``bench/upstream.py``).
   One probe client sends short (~50-word) chat requests at a steady rate on one
   connection; its latency is measured in phases: alone, while N other clients
   continuously send ~1,000-word prompts, while they send ~10,000-word prompts, and alone
   again (machine drift), in rounds. If long scans stalled the gateway's event loop, the
   probe's latency would grow with the long prompts' size; it should stay close to the
   alone phase. Run once per mode: ``process`` (long texts go to the gateway's scan
   process, as shipped) and ``threads`` (``KEEPTRUSTS_SCAN_PROCESS=0``: its thread pool).

Layout (2+ cores with ``taskset``): the gateway on core 1; the upstream and this script's
clients on core 0. Everything binds 127.0.0.1; every loop is bounded in count and time.
Gateway state and logs go to a temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from loadgen import _connect, build_request, pct  # noqa: E402
from prompts import FIRST, LAST  # noqa: E402  (one name list for both benchmarks)
from run import Proc, free_port  # noqa: E402

# --------------------------------------------------------------------------- texts

DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com", "corp.example.org")
CITIES = ("Lisbon", "Toronto", "Nairobi", "Osaka", "Berlin", "Austin", "Lyon", "Pune", "Leeds")
PRODUCTS = ("the billing API", "the mobile app", "the data warehouse", "the search service",
            "the onboarding flow", "the reporting dashboard", "the payments gateway")  # fmt: skip
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")

# Openers: who is writing and how to reach them (a name, an email and a phone, always).
OPENERS = (
    "Hi, I am {name} from the platform team; reach me at {email} or on {phone} if anything "
    "below is unclear.",
    "This is {name}. Please reply to {email}, or call {phone} before {day} if it is urgent.",
    "Hello, {name} here (ops, {city} office). My email is {email} and my desk phone is {phone}.",
    "Forwarding a note from {name}: contact {email} or {phone} for the original files.",
    "Good morning, my name is {name} and I look after {product}; you can write to {email} "
    "or ring {phone}.",
)
SENTENCES = (
    "Explain how Kubernetes schedules pods onto nodes and which resource requests matter most.",
    "We moved {product} to a new cluster last {day} and latency went up by about {n} percent.",
    "Can you summarise the incident timeline in five bullet points for the weekly review?",
    "The nightly export failed twice this week because the disk on the reporting host was full.",
    "Our customers in {city} report that the checkout page sometimes takes {n} seconds to load.",
    "Please draft a polite reply that apologises for the delay and proposes a call next week.",
    "I would like a short comparison of PostgreSQL and MySQL for a write-heavy workload.",
    "The finance team needs the quarterly numbers by {day}, broken down by region and product.",
    "{other} said the migration script skips rows whose timestamps are in the future.",
    "Write a unit test for the function that parses invoice dates in several formats.",
    "The contract renewal with our logistics partner is due in {n} days and nobody owns it.",
    "How should we rotate the API keys without downtime for the services that depend on them?",
    "After the last release, memory usage of {product} grows slowly until the pods restart.",
    "I attached the log excerpt; the errors start right after the cache warm-up finishes.",
    "Give me three options for reducing our cloud bill without hurting the service levels.",
    "The new hire, {other}, starts on {day} and still needs a laptop and repository access.",
    "Translate the following paragraph into plain language for a non-technical audience.",
    "We are planning a workshop in {city} for about {n} people and need a draft agenda.",
    "Which metrics would you put on a dashboard to catch a slow database before users notice?",
    "The vendor promised a fix by the end of the month, but the ticket is still marked open.",
    "Please check whether the retry logic can send the same payment twice after a timeout.",
    "Our support queue doubled after the pricing change, mostly questions about old invoices.",
    "{other} asked whether we can keep the audit records for seven years instead of five.",
    "List the steps to restore a single table from last night's backup without touching others.",
    "The design review is moved to {day} afternoon because half the team is travelling.",
    "Describe the trade-offs between server-side rendering and a single-page application.",
    "We saw {n} failed logins from one address in ten minutes; is that worth an alert?",
    "The marketing plan for {city} assumes a budget we have not approved yet.",
    "Suggest a naming convention for feature flags so that old ones are easy to clean up.",
    "The printer on the third floor has been broken since {day}; facilities has been told.",
    "Summarise the main risks of the project in a table with owner and mitigation columns.",
    "Tests pass locally but fail in the pipeline, probably because of the time zone setting.",
    "{other} will present the roadmap, so please keep your slides to three or four at most.",
    "How do I explain to the board why the launch slipped by {n} weeks without blaming anyone?",
    "The warehouse in {city} counted {n} pallets fewer than the system shows for last month.",
    "Draft a checklist for on-call engineers covering the first fifteen minutes of an outage.",
    "Is it safe to upgrade the message broker while consumers are still on the old client?",
    "The customer wants a refund for the annual plan, although the trial ended weeks ago.",
    "Rewrite this job description so it sounds less formal and mentions remote work.",
    "Our backlog has {n} open bugs; propose a way to triage them in one afternoon.",
    "I am not sure the caching layer is invalidated when a product price changes.",
    "Please recommend a few books on negotiation for someone who just became a manager.",
    "The latest survey shows people like the new onboarding but find the pricing page confusing.",
    "{other} from legal needs to review the data processing agreement before we sign it.",
    "What is a reasonable service level objective for an internal reporting tool?",
    "The build takes {n} minutes now; which steps could run in parallel or be cached?",
    "Compare three ways of sending email notifications and their failure modes.",
    "The office in {city} will be closed on {day} for maintenance of the heating system.",
    "Estimate how much storage we need if every event is kept for two years.",
    "Help me write a short, friendly reminder about the expense reports due this {day}.",
    # Identifiers: tokens no detector has seen before, as real prompts carry.
    "See ticket {ticket} and the runbook page {slug} before touching the cluster again.",
    "The errors came from {host} right after deploy {version}; rollback took {n} minutes.",
    "Order {order} was charged twice; the customer's reference is {ref}, please check it.",
    "The build {ref} failed on {host}, and {other} thinks the cache key {slug} is stale.",
)


def _phone(rng: random.Random) -> str:
    d = rng.randrange
    return rng.choice(
        (
            f"+1 415 555 {d(100, 200):04d}",
            f"(212) 555-{d(100, 200):04d}",
            f"+44 20 7946 0{d(100, 1000):03d}",
            f"+49 30 {d(2000000, 9999999)}",
            f"+33 1 {d(10, 99)} {d(10, 99)} {d(10, 99)} {d(10, 99)}",
            f"+91 98{d(100, 999)} {d(10000, 99999)}",
        )
    )


def _token(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(n))


def _person(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return f"{first} {last}", f"{first}.{last}@{rng.choice(DOMAINS)}".lower()


def make_text(words: int, seed: int) -> str:
    """~``words`` words of English with a name, an email and a phone; one text per seed."""
    rng = random.Random(seed)
    name, email = _person(rng)
    fill = {"city": rng.choice(CITIES), "product": rng.choice(PRODUCTS), "day": rng.choice(DAYS)}
    out = [rng.choice(OPENERS).format(name=name, email=email, phone=_phone(rng), **fill)]
    count = len(out[0].split())
    order: list[str] = []
    while count < words:
        if not order:
            order = list(SENTENCES)
            rng.shuffle(order)
        s = order.pop().format(
            other=_person(rng)[0],
            n=rng.randrange(2, 400),
            city=rng.choice(CITIES),
            product=rng.choice(PRODUCTS),
            day=rng.choice(DAYS),
            ticket=f"INC-{rng.randrange(10000, 99999)}",
            slug=f"{rng.choice(('deploy', 'oncall', 'backup', 'dns'))}-{_token(rng, 6).lower()}",
            host=f"{rng.choice(('db', 'api', 'ci'))}-{rng.randrange(1, 99):02d}.internal",
            version=f"v{rng.randrange(1, 9)}.{rng.randrange(0, 40)}.{rng.randrange(0, 20)}",
            order=f"#{rng.randrange(1000000, 9999999)}",
            ref=_token(rng, 8),
        )
        n = len(s.split())
        if count + n - words > words - count:  # stop nearest the target
            break
        out.append(s)
        count += n
        if rng.random() < 0.05:  # a second contact further down, as in long threads
            other, mail = _person(rng)
            out.append(f"Copying {other} ({mail}, {_phone(rng)}) for visibility.")
            count += len(out[-1].split())
    # Paragraphs of four to seven sentences, as people write.
    paras, i = [], 0
    while i < len(out):
        n = rng.randrange(4, 8)
        paras.append(" ".join(out[i : i + n]))
        i += n
    return "\n\n".join(paras)


def chat_body(text: str) -> dict:
    return {"model": "gpt-4o", "max_tokens": 64, "messages": [{"role": "user", "content": text}]}


# --------------------------------------------------------------------------- utilities


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_avg() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "?"
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min, {os.cpu_count()} CPUs)"


# --------------------------------------------------------------------------- 1. cost


SIZES = (("50 words", 50), ("1,000 words", 1000), ("10,000 words", 10000))
TARGET_MS = {50: 2.0, 1000: 20.0}  # issue #4: per request, on this machine


@dataclass
class Timed:
    policy: list[float] = field(default_factory=list)
    detector: list[float] = field(default_factory=list)


def cost_table(iterations: dict[int, int], seed: int, deep: bool = False) -> list[dict]:
    from keeptrusts.context import RequestContext
    from keeptrusts.detectors.pii import supported_entities
    from keeptrusts.policies.base import PolicyEnv
    from keeptrusts.policies.pii_detector import PiiDetector, PiiDetectorConfig
    from keeptrusts.policies.prompt_injection import PromptInjection, PromptInjectionConfig

    # executor=None: the policy scans inline, so the time is the scan's own cost.
    env = PolicyEnv(state_dir=Path(tempfile.gettempdir()), executor=None)
    entities = supported_entities()
    pii = PiiDetector(PiiDetectorConfig(entities=entities), env)
    inj = PromptInjection(PromptInjectionConfig(), env)
    policies = {
        "pii-detector": (pii, pii.analyzer.analyze),
        "prompt-injection": (inj, inj.detector.score),
    }
    if deep:
        from keeptrusts.policies.prompt_injection import max_score_deep

        deep_inj = PromptInjection(PromptInjectionConfig(deep=True), env)
        policies["prompt-injection (deep)"] = (
            deep_inj,
            lambda text: max_score_deep([text], deep_inj.deep_max_tokens),
        )

    def ctx_for(text: str) -> RequestContext:
        body = chat_body(text)
        return RequestContext("bench", "/v1/chat/completions", body, "gpt-4o", False, {})

    async def run() -> list[dict]:
        rows = []
        for label, words in SIZES:
            n = iterations[words]
            base = seed * 1_000_003 + words * 7919
            texts = [make_text(words, base + i) for i in range(n + 3)]
            # The bare detector gets texts of its own: none it has seen through the policy.
            others = [make_text(words, base + 500_000 + i) for i in range(n + 3)]
            real_words = statistics.mean(len(t.split()) for t in texts)
            for name, (policy, bare) in policies.items():
                t = Timed()
                findings: dict[str, int] = {}
                scores: list[float] = []
                for i, (text, other) in enumerate(zip(texts, others, strict=True)):
                    ctx = ctx_for(text)
                    t0 = time.perf_counter()
                    verdict = await policy.on_request(ctx)
                    t1 = time.perf_counter()
                    bare(other)
                    t2 = time.perf_counter()
                    if i < 3:  # warm-up: first calls compile patterns and fill tables
                        continue
                    t.policy.append((t1 - t0) * 1e3)
                    t.detector.append((t2 - t1) * 1e3)
                    for k, v in verdict.findings.items():
                        findings[k] = findings.get(k, 0) + v
                    if verdict.score is not None:
                        scores.append(verdict.score)
                # The opt-in deep layer's cost is reported, not held to the default's target.
                target = None if name.endswith("(deep)") else TARGET_MS.get(words)
                med = statistics.median(t.policy)
                rows.append(
                    {
                        "policy": name,
                        "size": label,
                        "words": round(real_words),
                        "chars": round(statistics.mean(len(x) for x in texts)),
                        "n": len(t.policy),
                        "p50_ms": med,
                        "p95_ms": pct(t.policy, 95),
                        "detector_p50_ms": statistics.median(t.detector),
                        "target_ms": target,
                        "meets": None if target is None else med <= target,
                        "found_per_text": {k: v / len(t.policy) for k, v in findings.items()},
                        "max_score": max(scores) if scores else None,
                    }
                )
                log(f"cost {name} {label}: p50 {med:.2f} ms")
        return rows

    return asyncio.run(run())


def print_cost(rows: list[dict]) -> None:
    print("\n## Cost per request (one policy scan, inline, warm)\n")
    print("| policy | prompt | words | chars | n | p50 ms | p95 ms | detector p50 ms | target |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        if r["target_ms"] is None:
            target = "(information)"
        else:
            target = f"<= {r['target_ms']:g} ms: {'met' if r['meets'] else 'NOT met'}"
        print(
            f"| {r['policy']} | {r['size']} | {r['words']:,} | {r['chars']:,} | {r['n']} "
            f"| {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['detector_p50_ms']:.2f} | {target} |"
        )
    print()
    for r in rows:
        if r["policy"] == "pii-detector":
            found = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["found_per_text"].items()))
            print(f"- pii-detector, {r['size']}: findings per text: {found or 'none'}")
        else:
            print(f"- {r['policy']}, {r['size']}: highest score {r['max_score']:.3f} (benign)")


# --------------------------------------------------------------------------- 2. loop


_PROBE_SEQ = itertools.count()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its descendants (the scan process), in seconds."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, cpu seconds)
    hz = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / hz)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0.0))[1]
        todo.extend(c for c, (parent, _) in stats.items() if parent == p)
    return total


def spawn(name: str, cmd: list[str], work: Path, env: dict[str, str] | None = None) -> Proc:
    """``cmd`` started as the main benchmark starts its targets, logging into ``work``."""
    return Proc(name, cmd, env, work, log_dir=work)


def wait_healthy(proc: Proc, port: int, timeout: float = 60.0) -> None:
    try:
        proc.wait_healthy(port, "/health", timeout)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}: {proc.log_text()[-400:]}") from None


def gateway_config(upstream: str, deep: bool = False) -> dict:
    from keeptrusts.detectors.pii import supported_entities

    return {
        "pack": {"name": "detector-cost", "version": "1.0.0", "enabled": True},
        "providers": {
            "targets": [
                {
                    "id": "openai-gpt4o",
                    "provider": "openai:chat:gpt-4o",
                    "base_url": upstream + "/v1",
                    "api_key": "sk-bench-upstream",
                }
            ]
        },
        "policies": {"chain": ["prompt-injection", "pii-detector"]},
        "policy": {
            "prompt-injection": {"threshold": 0.8, "action": "block", "deep": deep},
            "pii-detector": {"action": "redact", "entities": supported_entities()},
        },
    }


@dataclass
class Phase:
    name: str
    long_words: int  # 0: the probe alone
    round: int = 0
    probe: list[float] = field(default_factory=list)
    probe_errors: dict[str, int] = field(default_factory=dict)
    long: list[float] = field(default_factory=list)
    long_status: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    gateway_cpu: float = 0.0  # cores the gateway and its scan process used (warm-up included)


async def run_phase(
    port: int,
    phase: Phase,
    *,
    seconds: float,
    warm: float,
    rate: float,
    clients: int,
    probes: list[bytes],
    longs: list[bytes],
) -> None:
    """The probe at ``rate`` req/s on one connection; ``clients`` long senders, closed loop."""
    stop = asyncio.Event()
    measuring = False

    async def sender(k: int) -> None:
        c = await _connect("127.0.0.1", port)
        i = k
        try:
            while not stop.is_set():
                req = longs[i % len(longs)]
                i += clients
                t0 = time.perf_counter()
                try:
                    status = await asyncio.wait_for(c.send(req), 60)
                except (TimeoutError, ConnectionError) as exc:
                    phase.long_status[type(exc).__name__] = (
                        phase.long_status.get(type(exc).__name__, 0) + 1
                    )
                    c.t.close()
                    c = await _connect("127.0.0.1", port)
                    continue
                if measuring:
                    phase.long.append((time.perf_counter() - t0) * 1e3)
                    phase.long_status[str(status)] = phase.long_status.get(str(status), 0) + 1
        finally:
            c.t.close()

    async def probe() -> None:
        nonlocal measuring
        c = await _connect("127.0.0.1", port)
        interval = 1.0 / rate
        loop = asyncio.get_running_loop()
        start = loop.time()
        measure_from, end = start + warm, start + warm + seconds
        nxt = start
        while True:
            now = loop.time()
            if now >= end:
                break
            measuring = now >= measure_from
            if nxt > now:
                await asyncio.sleep(nxt - now)
            nxt += interval
            req = probes[next(_PROBE_SEQ) % len(probes)]  # no text twice in a run
            t0 = time.perf_counter()
            try:
                status = await asyncio.wait_for(c.send(req), 30)
            except (TimeoutError, ConnectionError) as exc:
                key = type(exc).__name__
                phase.probe_errors[key] = phase.probe_errors.get(key, 0) + 1
                c.t.close()
                c = await _connect("127.0.0.1", port)
                continue
            ms = (time.perf_counter() - t0) * 1e3
            if status != 200:
                phase.probe_errors[str(status)] = phase.probe_errors.get(str(status), 0) + 1
            elif measuring:
                phase.probe.append(ms)
        phase.seconds = loop.time() - measure_from
        c.t.close()

    tasks = [asyncio.create_task(sender(k)) for k in range(clients if phase.long_words else 0)]
    await probe()
    stop.set()
    # Let the long requests in flight finish, so the next phase starts on a quiet gateway.
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 120)


def loop_flatness(args: argparse.Namespace, mode: str) -> tuple[list[Phase], dict]:
    """One gateway, the probe alone and against long prompts; ``mode``: where the gateway
    scans long texts (``process``: its scan process, as shipped; ``threads``: its thread
    pool, ``KEEPTRUSTS_SCAN_PROCESS=0``)."""
    import yaml

    cpus = os.cpu_count() or 1
    pin = not args.no_pin and bool(shutil.which("taskset")) and cpus >= 2
    on = (lambda core, cmd: ["taskset", "-c", str(core), *cmd]) if pin else (lambda _c, cmd: cmd)
    if pin:
        os.sched_setaffinity(0, {0})
    work = Path(tempfile.mkdtemp(prefix="kt-detector-cost-"))
    procs: list[Proc] = []
    info = {
        "mode": mode,
        "deep": args.deep,
        "pinned": pin,
        "long_clients": args.long_clients,
        "probe_rate": args.probe_rate,
        "phase_seconds": args.phase_seconds,
    }
    try:
        up_port, gw_port = free_port(), free_port()
        up = spawn(
            "upstream",
            on(0, [sys.executable, str(BENCH / "upstream.py"), "--port", str(up_port)]),
            work,
        )
        procs.append(up)
        wait_healthy(up, up_port)
        cfg = work / "gateway.yaml"
        upstream = f"http://127.0.0.1:{up_port}"
        cfg.write_text(yaml.safe_dump(gateway_config(upstream, args.deep)))
        kt = Path(sys.executable).parent / "kt"
        base = [str(kt)] if kt.exists() else [sys.executable, "-m", "keeptrusts.cli.main"]
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        env["PYTHONUNBUFFERED"] = "1"
        env["KEEPTRUSTS_SCAN_PROCESS"] = "1" if mode == "process" else "0"
        gw_cmd = [*base, "gateway", "run", "--listen", f"127.0.0.1:{gw_port}"]
        gw_cmd += ["--state-dir", str(work / "state"), "--policy-config", str(cfg)]
        gw_cmd += ["--log-level", "WARNING"]
        gw = spawn("gateway", on(1, gw_cmd), work, env)
        procs.append(gw)
        wait_healthy(gw, gw_port)

        def reqs(words: int, count: int, salt: int) -> list[bytes]:
            out = []
            for i in range(count):
                body = json.dumps(chat_body(make_text(words, args.seed * 7 + salt + i))).encode()
                out.append(build_request(f"http://127.0.0.1:{gw_port}/v1/chat/completions",
                                         body, None)[2])  # fmt: skip
            return out

        # Enough distinct probe texts that none is sent twice (no detector cache can help).
        n_probes = int(args.probe_rate * (args.phase_seconds + 2) * (3 * args.rounds + 3))
        probes = reqs(50, n_probes, 1_000_000)
        longs = {1000: reqs(1000, 200, 2_000_000), 10000: reqs(10000, 40, 3_000_000)}
        info["long_body_kb"] = {
            w: round(statistics.mean(len(b) for b in v) / 1024, 1) for w, v in longs.items()
        }
        kinds = (("a. alone", 0), ("b. + ~1,000-word senders", 1000),
                 ("c. + ~10,000-word senders", 10000))  # fmt: skip
        phases = [Phase(name, words, r) for r in range(args.rounds) for name, words in kinds]
        phases.append(Phase("a. alone", 0, args.rounds))  # drift check at the end

        async def run_all() -> None:
            try:
                import uvloop

                uvloop.install()
            except ImportError:
                pass
            # Warm the gateway: connection pools, detector tables, and the scan process,
            # which starts on the first long text and takes about a second to load.
            await run_phase(gw_port, Phase("warm", 1000), seconds=3, warm=0, rate=50,
                            clients=1, probes=probes, longs=longs[1000])  # fmt: skip
            await asyncio.sleep(1)
            for ph in phases:
                log(f"loop round {ph.round + 1}: {ph.name} ({args.phase_seconds:g} s)")
                cpu0 = cpu_seconds(gw.pid)
                await run_phase(
                    gw_port,
                    ph,
                    seconds=args.phase_seconds,
                    warm=1.0,
                    rate=args.probe_rate,
                    clients=args.long_clients,
                    probes=probes,
                    longs=longs.get(ph.long_words, []),
                )
                ph.gateway_cpu = (cpu_seconds(gw.pid) - cpu0) / (ph.seconds + 1.0)

        asyncio.run(run_all())
        if gw.p.poll() is not None:
            raise RuntimeError(f"gateway exited during the run: {gw.log_text()[-400:]}")
        return phases, info
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(work, ignore_errors=True)


def print_loop(phases: list[Phase], info: dict) -> None:
    alone = {ph.round: ph for ph in phases if not ph.long_words}
    where = {
        "process": "long texts scanned in the gateway's scan process (as shipped)",
        "threads": "long texts scanned in the gateway's thread pool (KEEPTRUSTS_SCAN_PROCESS=0)",
    }[info["mode"]]
    deep = " (prompt-injection deep: true)" if info.get("deep") else ""
    print(f"\n## Short-request latency while long prompts are scanned: {where}{deep}\n")
    layout = (
        "gateway pinned to core 1, upstream and clients to core 0"
        if info["pinned"]
        else "no core pinning"
    )
    print(
        f"Probe: one connection, ~50-word prompts at {info['probe_rate']:g} req/s. "
        f"Long senders: {info['long_clients']} connections, closed loop (request bodies "
        f"~{info['long_body_kb'][1000]} KB and ~{info['long_body_kb'][10000]} KB). "
        f"{info['phase_seconds']:g} s per phase after 1 s of warm-up; {layout}. "
        "Ratios compare each phase with the alone phase of the same round.\n"
    )
    print(
        "| round | phase | probe n | p50 ms | p99 ms | max ms | p50 / alone | p99 / alone "
        "| probe errors | gateway CPU | long req/s | long p50 ms | long statuses |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|")
    for ph in phases:
        base = alone[ph.round]
        p50, p99 = pct(ph.probe, 50), pct(ph.probe, 99)
        rate = len(ph.long) / ph.seconds if ph.long_words and ph.seconds else 0
        long50 = f"{pct(ph.long, 50):.0f}" if ph.long else "—"
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(ph.long_status.items())) or "—"
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(ph.probe_errors.items())) or "0"
        print(
            f"| {ph.round + 1} | {ph.name} | {len(ph.probe)} | {p50:.2f} | {p99:.2f} | "
            f"{max(ph.probe, default=float('nan')):.1f} | {p50 / pct(base.probe, 50):.2f}x | "
            f"{p99 / pct(base.probe, 99):.2f}x | {errors} | {ph.gateway_cpu:.0%} | {rate:.1f} "
            f"| {long50} | {statuses} |"
        )
    print("\nSummary (all rounds pooled; ratio: median over rounds):\n")
    print("| phase | probe p50 ms | probe p99 ms | p50 / alone | p99 / alone |")
    print("|---|---:|---:|---:|---:|")
    for words in (0, 1000, 10000):
        mine = [ph for ph in phases if ph.long_words == words]
        pooled = [x for ph in mine for x in ph.probe]
        r50 = statistics.median(pct(ph.probe, 50) / pct(alone[ph.round].probe, 50) for ph in mine)
        r99 = statistics.median(pct(ph.probe, 99) / pct(alone[ph.round].probe, 99) for ph in mine)
        ratio = "1 (drift: last alone / first alone " + (
            f"{pct(mine[-1].probe, 50) / pct(mine[0].probe, 50):.2f}x)" if words == 0 else ""
        )
        print(
            f"| {mine[0].name} | {pct(pooled, 50):.2f} | {pct(pooled, 99):.2f} | "
            + (f"{ratio} | — |" if words == 0 else f"{r50:.2f}x | {r99:.2f}x |")
        )


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=("cost", "loop"))
    ap.add_argument("--quick", action="store_true", help="fewer iterations, 5 s phases")
    ap.add_argument("--phase-seconds", type=float, default=0)
    ap.add_argument("--long-clients", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=0, help="rounds of phases a, b, c")
    ap.add_argument("--probe-rate", type=float, default=50.0, help="probe requests per second")
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    ap.add_argument(
        "--modes",
        default="process,threads",
        help="where the gateway scans long texts: process (as shipped), threads (for comparison)",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--deep", action="store_true", help="also time prompt-injection deep: true")
    args = ap.parse_args()
    if not args.phase_seconds:
        args.phase_seconds = 3.0 if args.quick else 5.0
    if not args.rounds:
        args.rounds = 3
    iterations = {50: 100, 1000: 30, 10000: 6} if args.quick else {50: 400, 1000: 100, 10000: 15}

    print("# Detector cost and event-loop flatness\n")
    print(f"- command: `{' '.join(['python', 'bench/detector_cost.py', *sys.argv[1:]])}`")
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %z')}")
    print(f"- load average at start: {load_avg()}")
    print(f"- python {sys.version.split()[0]}")
    print(
        "- texts: generated English (an opener with a name, an email and a phone, then varied "
        "sentences with ids and numbers); every iteration and every request uses a different "
        "text, so no cache of whole texts helps (caches of single words warm up, as on real "
        "traffic)"
    )
    if args.only != "loop":
        print_cost(cost_table(iterations, args.seed, args.deep))
    if args.only != "cost":
        for mode in args.modes.split(","):
            phases, info = loop_flatness(args, mode.strip())
            print_loop(phases, info)
    print(f"\n- load average at end: {load_avg()}")


if __name__ == "__main__":
    main()
