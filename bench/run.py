# ruff: noqa: RUF001
"""The gateway benchmark: one command sets up and runs everything, then prints one table.

    bench/run.sh [--quick] [--rounds N] [--skip-litellm] [--soak-seconds N] [--targets a,b]

Targets, each run in turn against the same fake upstream with the same load:
  direct       the load generator straight against the fake upstream (the baseline)
  bare         a bare aiohttp pass-through proxy (bench/passthrough.py): the Python ceiling
  litellm      LiteLLM proxy, pinned version, own venv, no database, logging/telemetry off
  kt-empty     our gateway with an empty chain
  kt-patternb  our gateway with the seed's Pattern B chain (prompt-injection, pii-detector,
               dlp-filter, rbac, audit-logger) and a gateway key for the rbac role
  kt-anthropic our gateway, empty chain, OpenAI client -> Anthropic upstream (translation)

Layout: the fake upstream and the load generators run on core 0, the proxy under test on
core 1 (``taskset``). Every load loop is bounded in count and time; everything binds to
127.0.0.1. Work files (LiteLLM venv, configs, logs, raw JSON) live in bench/.work/.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prompts

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / ".work"
LITELLM_PIN = "litellm[proxy]==1.108.7"
LITELLM_MASTER = "sk-bench-master-key"
FAKE_KEYS = {
    "OPENAI_API_KEY": "sk-bench-upstream-openai",
    "ANTHROPIC_API_KEY": "sk-ant-bench-upstream",
    "GROQ_API_KEY": "gsk_bench_upstream",
    "MISTRAL_API_KEY": "mistral-bench-upstream",
}
# ~50 words with a name, an email address and a phone number, so PII detectors do real work;
# a different one per request (bench/prompts.py says why).
PROMPT = prompts.TEMPLATE
ALL_TARGETS = (
    "direct",
    "bare",
    "litellm",
    "kt-empty",
    "kt-patternb",
    "kt-anthropic",
    "kt-empty-w2",
    "kt-patternb-w2",
)
# `kt gateway run --workers 2`: two processes on one port, on every core (see WORKERS_NOTE).
WORKER_TARGETS = {"kt-empty-w2": 2, "kt-patternb-w2": 2}
DEFAULT_TARGETS = ALL_TARGETS
WORKERS_NOTE = (
    "`kt-empty-w2` and `kt-patternb-w2` are `kt gateway run --workers 2` (two processes on one "
    "port, one audit writer in the supervisor), pinned to all cores: with 2 cores they share "
    "them with the upstream and the load generator, which the single-process targets leave "
    "alone on core 0. Their req/s shows what a second process adds on such a machine, not how "
    "workers scale on a machine with cores to spare. The slow-stream ladder skips them."
)
ANTHROPIC_MODEL = "claude-3-5-sonnet-20241022"


# --------------------------------------------------------------------------- utilities


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def rss_tree_kb(pid: int, pids: list[int] | None = None) -> int:
    """Resident memory of ``pid`` and all its descendants, in KiB."""
    return sum(_status_kb(p, "VmRSS") for p in (pids or tree_pids(pid)))


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler(threading.Thread):
    """Samples the process tree's RSS every 100 ms; ``peak`` is the largest sample."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self._halt = threading.Event()

    def run(self) -> None:
        pids: list[int] = []
        n = 0
        while not self._halt.wait(0.1):
            if n % 20 == 0:  # the process tree rarely changes: walk /proc every 2 s only
                pids = tree_pids(self.pid)
            n += 1
            self.peak = max(self.peak, rss_tree_kb(self.pid, pids))

    def stop(self) -> int:
        self._halt.set()
        self.join(2)
        return max(self.peak, _status_kb(self.pid, "VmHWM"))


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def wait_quiet(pids: list[int], limit: float = 15.0) -> None:
    """Wait (at most ``limit`` s) until ``pids`` use under 5% of a core over half a second,
    so a start-up's background work does not land in the next target's measurements."""
    hz = os.sysconf("SC_CLK_TCK")
    deadline = time.perf_counter() + limit
    while pids and time.perf_counter() < deadline:
        before = cpu_ticks(pids)
        time.sleep(0.5)
        if (cpu_ticks(pids) - before) / hz < 0.025:
            return


def http_get(port: int, path: str, timeout: float = 1.0) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def http_post(port: int, path: str, body: bytes, auth: str | None) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = auth
    try:
        c.request("POST", path, body=body, headers=headers)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def med(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


# --------------------------------------------------------------------------- environment


@dataclass
class Env:
    python: str
    pin: bool
    wrk: str | None
    litellm: str | None = None
    litellm_note: str = ""
    notes: list[str] = field(default_factory=list)

    def on(self, core: int | str, cmd: list[str]) -> list[str]:
        """``cmd`` pinned to ``core`` (a number or a taskset list such as "0,1")."""
        return ["taskset", "-c", str(core), *cmd] if self.pin else cmd


def ensure_wrk(notes: list[str]) -> str | None:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk missing: installing Debian's wrk with apt-get")
        for cmd in (
            ["apt-get", "install", "-y", "-qq", "wrk"],
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "wrk"],
        ):
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
            if shutil.which("wrk"):
                return shutil.which("wrk")
    notes.append(
        "wrk is not installed and could not be installed: load came from the Python "
        "generator (bench/loadgen.py load, uvloop); its own ceiling is in the `direct` row."
    )
    return None


def _pinned_litellm(venv: Path) -> bool:
    """Whether ``venv`` holds the pinned LiteLLM proxy."""
    py = venv / "bin" / "python"
    if not (venv / "bin" / "litellm").exists() or not py.exists():
        return False
    want = LITELLM_PIN.split("==")[1]
    probe = "import importlib.metadata as m; print(m.version('litellm'))"
    try:
        got = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return got.stdout.strip() == want


def ensure_litellm(quiet_minutes: float = 15.0) -> tuple[str | None, str]:
    # The repo's .venv-litellm (scripts/install_litellm.sh, same pin) saves a second install.
    shared = REPO / ".venv-litellm"
    if _pinned_litellm(shared):
        return str(shared / "bin" / "litellm"), ""
    venv = WORK / "litellm-venv"
    exe = venv / "bin" / "litellm"
    marker = venv / ".pin"
    if exe.exists() and marker.exists() and marker.read_text().strip() == LITELLM_PIN:
        return str(exe), ""
    log(f"installing {LITELLM_PIN} into bench/.work/litellm-venv (a few minutes, cached)")
    logf = WORK / "litellm-install.log"
    try:
        with open(logf, "wb") as out:
            if not (venv / "bin" / "python").exists():
                subprocess.run(
                    [sys.executable, "-m", "venv", str(venv)],
                    check=True,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=300,
                )
            subprocess.run(
                [
                    str(venv / "bin" / "pip"),
                    "install",
                    "--disable-pip-version-check",
                    "-q",
                    LITELLM_PIN,
                ],
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=quiet_minutes * 60,
            )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        return (
            None,
            f"install failed ({exc.__class__.__name__}); see bench/.work/litellm-install.log",
        )
    marker.write_text(LITELLM_PIN + "\n")
    return (str(exe), "") if exe.exists() else (None, "install produced no litellm script")


def versions(env: Env) -> dict[str, str]:
    out: dict[str, str] = {}

    def run(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    out["keeptrusts"] = run([env.python, "-c", "import keeptrusts; print(keeptrusts.__version__)"])
    commit = run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"])
    out["commit"] = commit + (" + uncommitted changes in src/" if dirty else "")
    out["python"] = platform.python_version()
    out["libs"] = run(
        [
            env.python,
            "-c",
            "import aiohttp, orjson, uvloop; print(f'aiohttp {aiohttp.__version__}, "
            "orjson {orjson.__version__}, uvloop {uvloop.__version__}')",
        ]
    )
    if env.litellm:
        lp = str(Path(env.litellm).parent / "python")
        out["litellm"] = run(
            [lp, "-c", "from importlib.metadata import version as v; print(v('litellm'))"]
        )
    if env.wrk:
        p = subprocess.run([env.wrk, "-v"], capture_output=True, text=True)
        out["wrk"] = (p.stdout + p.stderr).split(" Copyright")[0].removeprefix("wrk ").strip()
    out["kernel"] = platform.release()
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    out["cpu"] = f"{cpu} x{os.cpu_count()}"
    return out


# --------------------------------------------------------------------------- processes


class Proc:
    """A process in its own session, output to ``log_dir/NAME.log`` (default: the bench's
    work dir); ``stop`` sends SIGINT, then kills what is left of its session."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        env: dict[str, str] | None,
        cwd: Path,
        log_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = (log_dir or WORK / "logs") / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started = time.perf_counter()
        with open(self.log_path, "wb") as out:
            self.p = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
            )
        self.pid = self.p.pid

    def wait_healthy(self, port: int, path: str, timeout: float) -> float:
        """Seconds from process start to the first 200 on ``path``; raise if it exits."""
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.p.returncode}")
            try:
                if http_get(port, path, timeout=1.0) == 200:
                    return time.perf_counter() - self.started
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError(f"{self.name} not healthy after {timeout:.0f}s")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.p.wait(5)
        # anything the process left in its own session group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


# --------------------------------------------------------------------------- plan


PHASES = ("c1", "ttft", "c32", "c64", "s32", "s64")


@dataclass
class Plan:
    phase_s: float
    warm_s: float
    ttft_requests: int
    ttft_s: float
    ladder: tuple[int, ...]
    slow_chunks: int
    slow_delay_ms: int
    stall_ms: float
    rounds: int
    soak_s: float
    soak_window_s: float
    phases: tuple[str, ...] = PHASES


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        p = Plan(5, 1, 200, 3, (10, 100, 1000), 80, 50, 500, 1, 0, 10)
    else:
        p = Plan(10, 3, 1000, 8, (1, 10, 100, 250, 500, 1000), 100, 50, 500, 3, 0, 60)
    if args.rounds:
        p.rounds = args.rounds
    if args.phase_seconds:
        p.phase_s = args.phase_seconds
    p.soak_s = args.soak_seconds
    if getattr(args, "phases", None):
        p.phases = tuple(x for x in PHASES if x in args.phases.split(","))
    if getattr(args, "ladder", None) is not None:
        p.ladder = tuple(int(x) for x in args.ladder.split(",") if x.strip())
    if p.soak_s:
        p.soak_window_s = min(60.0, max(10.0, p.soak_s / 10))
    return p


@dataclass
class Target:
    name: str
    port: int = 0
    auth: str | None = None
    model: str = "gpt-4o"
    proc: Proc | None = None
    health: str = "/health"
    path: str = "/v1/chat/completions"
    unavailable: str | None = None


NAMES = WORK / "bodies" / "names.txt"  # for wrk.lua's per-request prompts


def write_bodies(model: str) -> dict[str, Path]:
    """Request body templates (markers filled per request, see bench/prompts.py)."""
    d = WORK / "bodies"
    d.mkdir(parents=True, exist_ok=True)
    prompts.write_names(NAMES)
    tag = re.sub(r"[^a-z0-9]+", "-", model.lower())
    base = {
        "model": model,
        "messages": [
            {"role": "system", "content": prompts.SYSTEM},
            {"role": "user", "content": PROMPT},
        ],
        "max_tokens": 256,
    }
    out = {}
    for kind, extra in (
        ("chat", {}),
        ("stream", {"stream": True}),
        ("slow", {"stream": True}),
    ):
        body = {**base, **extra}
        if kind == "slow":
            body["messages"] = [
                base["messages"][0],
                {"role": "user", "content": f"{PROMPT} {{{{bench d={SLOW[0]} n={SLOW[1]}}}}}"},
            ]
        path = d / f"{tag}-{kind}.json"
        path.write_text(json.dumps(body, separators=(",", ":")))
        out[kind] = path
    return out


SLOW = (50, 40)  # set from the plan in main()


def kt_configs(upstream: str) -> tuple[Path, Path]:
    """The seed Pattern B config with every target on the fake upstream, and the same
    config with an empty chain."""
    import yaml  # from the gateway's venv

    seed = yaml.safe_load((BENCH / "configs" / "pattern-b.yaml").read_text())
    for t in seed["providers"]["targets"]:
        provider = t["provider"].split(":")[0].split("/")[0]
        t["base_url"] = upstream if provider == "anthropic" else upstream + "/v1"
    d = WORK / "configs"
    d.mkdir(parents=True, exist_ok=True)
    pattern_b = d / "kt-patternb.yaml"
    pattern_b.write_text(yaml.safe_dump(seed, sort_keys=False))
    empty = dict(seed)
    empty["policies"] = {"chain": []}
    empty.pop("policy", None)
    empty_path = d / "kt-empty.yaml"
    empty_path.write_text(yaml.safe_dump(empty, sort_keys=False))
    return empty_path, pattern_b


def litellm_config(upstream: str) -> Path:
    d = WORK / "litellm"
    d.mkdir(parents=True, exist_ok=True)
    cfg = d / "config.yaml"
    cfg.write_text(
        f"""model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: {upstream}/v1
      api_key: {FAKE_KEYS["OPENAI_API_KEY"]}
  - model_name: {ANTHROPIC_MODEL}
    litellm_params:
      model: anthropic/{ANTHROPIC_MODEL}
      api_base: {upstream}
      api_key: {FAKE_KEYS["ANTHROPIC_API_KEY"]}
general_settings:
  master_key: {LITELLM_MASTER}
  disable_spend_logs: true
  disable_error_logs: true
litellm_settings:
  telemetry: false
  turn_off_message_logging: true
  set_verbose: false
"""
    )
    return cfg


def litellm_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("DATABASE_URL", None)
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # no price-file download at start
        LITELLM_MODE="PRODUCTION",  # do not read ./.env
        LITELLM_LOG="ERROR",
        LITELLM_TELEMETRY="False",
        PYTHONUNBUFFERED="1",
    )
    return env


# --------------------------------------------------------------------------- measurements


class Runner:
    def __init__(self, env: Env, plan: Plan, upstream_port: int) -> None:
        self.env = env
        self.plan = plan
        self.up = upstream_port

    def wrk(
        self,
        port: int,
        path: str,
        body: Path,
        conns: int,
        seconds: float,
        auth: str | None,
        delay_ms: float = 0,
    ) -> dict[str, Any]:
        """A closed-loop phase; a phase shorter than 10x the median latency is run again,
        longer (at most 60 s), so requests still in flight at the end do not skew req/s."""
        r = self._wrk(port, path, body, conns, seconds, auth, delay_ms)
        p50_s = (r.get("p50_us") or 0) / 1e6
        if not delay_ms and seconds < 60 and p50_s * 10 > seconds:
            longer = min(60.0, max(seconds * 2, p50_s * 10))
            r = self._wrk(port, path, body, conns, longer, auth, delay_ms)
            r["extended_to_s"] = longer
        return r

    def _wrk(
        self,
        port: int,
        path: str,
        body: Path,
        conns: int,
        seconds: float,
        auth: str | None,
        delay_ms: float = 0,
    ) -> dict[str, Any]:
        url = f"http://127.0.0.1:{port}{path}"
        if self.env.wrk:
            cmd = self.env.on(
                0,
                [
                    self.env.wrk,
                    "-t1",
                    f"-c{conns}",
                    f"-d{max(1, round(seconds))}s",
                    "--timeout",
                    "10s",
                    "-s",
                    str(BENCH / "wrk.lua"),
                    url,
                ],
            )
            env = {
                **os.environ,
                "BENCH_BODY_FILE": str(body),
                "BENCH_NAMES_FILE": str(NAMES),
                "BENCH_AUTH": auth or "",
                "BENCH_DELAY_MS": str(int(delay_ms)),
            }
        else:
            cmd = self.env.on(
                0,
                [
                    self.env.python,
                    str(BENCH / "loadgen.py"),
                    "load",
                    url,
                    str(body),
                    "--connections",
                    str(conns),
                    "--seconds",
                    str(seconds),
                    "--timeout",
                    "10",
                ],
            )
            if auth:
                cmd += ["--auth", auth]
            env = dict(os.environ)
        r = self._json(cmd, env, seconds + 60)
        if r:
            secs = r["duration_us"] / 1e6 or seconds
            r["rps"] = r["requests"] / secs
            r["errors"] = sum(
                int(r.get(k, 0)) for k in ("connect", "read", "write", "status", "timeout")
            )
        return r

    def client(self, cmd_args: list[str], timeout: float) -> dict[str, Any]:
        cmd = self.env.on(0, [self.env.python, str(BENCH / "loadgen.py"), *cmd_args])
        return self._json(cmd, dict(os.environ), timeout)

    @staticmethod
    def _json(cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": "load generator timed out"}
        for line in p.stdout.splitlines():
            if line.startswith("BENCHJSON "):
                return json.loads(line[10:])
        return {"error": (p.stderr or p.stdout)[-400:]}

    def ttft(self, port: int, path: str, body: Path, auth: str | None) -> dict[str, Any]:
        args = [
            "ttft",
            f"http://127.0.0.1:{port}{path}",
            str(body),
            "--requests",
            str(self.plan.ttft_requests),
            "--seconds",
            str(self.plan.ttft_s),
        ]
        if auth:
            args += ["--auth", auth]
        return self.client(args, self.plan.ttft_s + 60)

    def streams(self, port: int, path: str, body: Path, auth: str | None, n: int) -> dict:
        stream_s = SLOW[0] * SLOW[1] / 1000
        bound = stream_s + 30 + n / 50  # connection set-up of n streams is part of the test
        args = [
            "streams",
            f"http://127.0.0.1:{port}{path}",
            str(body),
            "--n",
            str(n),
            "--stall-ms",
            str(self.plan.stall_ms),
            "--seconds",
            str(bound),
        ]
        if auth:
            args += ["--auth", auth]
        return self.client(args, bound + 30)


def warm(run: Runner, t: Target, bodies: dict[str, Path]) -> None:
    """Warm-up: fills connection pools, lazy imports and caches."""
    run.wrk(t.port, t.path, bodies["chat"], 4, run.plan.warm_s, t.auth)
    run.wrk(t.port, t.path, bodies["stream"], 4, run.plan.warm_s, t.auth)


def run_phase(
    run: Runner, phase: str, t: Target, bodies: dict[str, Path], direct: dict[str, Path]
) -> dict[str, Any]:
    """One load phase against one target; c=1 phases pair it with a direct run just before."""
    plan, up, out = run.plan, run.up, {}
    port, path, auth = t.port, t.path, t.auth
    if phase == "c1":
        if t.name != "direct":
            out["c1_direct"] = run.wrk(up, "/v1/chat/completions", direct["chat"], 1,
                                       plan.phase_s, None)  # fmt: skip
        out["c1"] = run.wrk(port, path, bodies["chat"], 1, plan.phase_s, auth)
    elif phase == "ttft":
        if t.name != "direct":
            out["ttft_direct"] = run.ttft(up, "/v1/chat/completions", direct["stream"], None)
        out["ttft"] = run.ttft(port, path, bodies["stream"], auth)
    else:
        body = bodies["chat" if phase[0] == "c" else "stream"]
        out[phase] = run.wrk(port, path, body, int(phase[1:]), plan.phase_s, auth)
    return out


def run_ladder(run: Runner, t: Target, bodies: dict[str, Path]) -> dict[str, Any]:
    """Slow streams: a ladder, stopping at the first level with a failure or a stall."""
    ladder, best = [], 0
    for n in run.plan.ladder:
        r = run.streams(t.port, t.path, bodies["slow"], t.auth, n)
        r["level"] = n
        ladder.append(r)
        if t.proc:
            r["rss_after_mb"] = rss_tree_kb(t.proc.pid) / 1024
        if not r.get("stall_free"):
            break
        best = n
    return {"ladder": ladder, "stall_free": best}


def run_round(
    run: Runner,
    env: Env,
    order: list[str],
    rnd: int,
    ctx: dict[str, Any],
    unavailable: dict[str, str],
    procs: list[Proc],
) -> dict[str, dict[str, Any]]:
    """One round. Every target is started (cold start, warm-up, idle RSS) and stays up; then
    each load phase runs against every target back to back, so targets compared in a ratio
    were measured seconds apart, not minutes (this machine's speed drifts). The soak and the
    slow-stream ladder then run target by target; RSS is sampled throughout."""
    plan = run.plan
    live: list[tuple[Target, dict[str, Path]]] = []
    res: dict[str, dict[str, Any]] = {}
    for name in order:
        if name in unavailable:
            continue
        wait_quiet([t.proc.pid for t, _ in live if t.proc])
        if name == "direct":
            t, cold = Target("direct", run.up), None
        else:
            t, cold = start_target(name, env, ctx["upstream"], ctx["cfgs"], ctx["llcfg"])
            if t.unavailable:
                unavailable[name] = t.unavailable
                log(f"  {name}: {t.unavailable}")
                continue
            procs.append(t.proc)
        bodies = write_bodies(t.model)
        problem = sanity(t, bodies)
        if problem:
            res[name] = {"error": problem}
            log(f"  {name}: sanity check failed: {problem}")
            if t.proc:
                t.proc.stop()
                procs.remove(t.proc)
            continue
        warm(run, t, bodies)
        res[name] = {"cold_start_s": cold}
        live.append((t, bodies))
        log(f"  {name}: up" + (f", cold start {cold:.2f} s" if cold is not None else ""))
    wait_quiet([t.proc.pid for t, _ in live if t.proc])
    samplers = {}
    for t, _ in live:
        if t.proc:
            res[t.name]["idle_rss_mb"] = rss_tree_kb(t.proc.pid) / 1024
            samplers[t.name] = RssSampler(t.proc.pid)
            samplers[t.name].start()
    for phase in plan.phases:
        for t, bodies in live:
            res[t.name].update(run_phase(run, phase, t, bodies, ctx["direct_bodies"]))
        log(f"  phase {phase} done")
    for t, bodies in live:
        r = res[t.name]
        # the soak runs before the slow-stream ladder, so 1,000 streams' memory high-water
        # mark cannot hide growth during the soak
        if rnd == plan.rounds - 1 and t.name in ctx["soak_targets"] and plan.soak_s and t.proc:
            r["soak"] = run_soak(run, t, bodies, r)
        # the ladder measures one process's stalls; --ladder '' skips it
        if t.name not in WORKER_TARGETS and plan.ladder:
            r.update(run_ladder(run, t, bodies))
        if t.proc:
            r["peak_rss_mb"] = samplers[t.name].stop() / 1024
            t.proc.stop()
            procs.remove(t.proc)
        d = derived(r)
        log(
            f"  {t.name}: added p50 {d['add_p50'] or 0:.2f} ms, "
            f"c32 {d['c32_rps'] or 0:.0f} req/s, stream c32 {d['s32_rps'] or 0:.0f} req/s, "
            f"stall-free {d['stall_free']}, idle {d['idle_rss'] or 0:.0f} MB, "
            f"peak {d['peak_rss'] or 0:.0f} MB"
        )
    return res


def run_soak(run: Runner, t: Target, bodies: dict[str, Path], res: dict) -> dict[str, Any]:
    """Paced load at about half the measured c=32 rate, in windows; RSS after each."""
    plan = run.plan
    rate = max(1.0, 0.5 * (res.get("c32", {}).get("rps") or 100))
    conns = 16
    delay = max(0.0, conns * 1000 / rate)
    windows = []
    deadline = time.perf_counter() + plan.soak_s
    log(
        f"  soak {plan.soak_s:.0f}s at ~{rate:.0f} req/s ({conns} connections), "
        f"{plan.soak_window_s:.0f}s windows"
    )
    while time.perf_counter() < deadline - 1:
        secs = min(plan.soak_window_s, deadline - time.perf_counter())
        r = run.wrk(t.port, t.path, bodies["chat"], conns, secs, t.auth, delay_ms=delay)
        windows.append(
            {
                "rps": r.get("rps"),
                "p50_ms": r.get("p50_us", 0) / 1e3,
                "p99_ms": r.get("p99_us", 0) / 1e3,
                "errors": r.get("errors"),
                "rss_mb": rss_tree_kb(t.proc.pid) / 1024,
            }
        )
    if len(windows) < 2:
        return {"windows": windows}
    first, last = windows[0], windows[-1]
    p99s = [w["p99_ms"] for w in windows]
    half = len(p99s) // 2
    early, late = statistics.median(p99s[:half]), statistics.median(p99s[-half:])
    return {
        "seconds": plan.soak_s,
        "target_rps": rate,
        "windows": windows,
        "rss_growth_pct": 100 * (last["rss_mb"] - first["rss_mb"]) / first["rss_mb"],
        "p99_first_ms": first["p99_ms"],
        "p99_last_ms": last["p99_ms"],
        "p99_early_ms": early,
        "p99_late_ms": late,
        "p99_drift": late / early if early else None,
        "p99_max_over_median": max(p99s) / statistics.median(p99s),
        "errors": sum(w["errors"] or 0 for w in windows),
    }


# --------------------------------------------------------------------------- starting targets


def start_target(
    name: str, env: Env, upstream: str, cfgs: tuple[Path, Path], litellm_cfg: Path | None
) -> tuple[Target, float | None]:
    port = free_port()
    t = Target(name, port)
    kt = str(Path(env.python).parent / "kt")
    if name == "bare":
        cmd = [
            env.python,
            str(BENCH / "passthrough.py"),
            "--port",
            str(port),
            "--upstream",
            upstream,
        ]
        penv, cwd = dict(os.environ), WORK
    elif name == "litellm":
        if not env.litellm:
            t.unavailable = env.litellm_note or "not installed"
            return t, None
        cmd = [
            env.litellm,
            "--config",
            str(litellm_cfg),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        penv, cwd = litellm_env(), WORK / "litellm"
        t.health, t.auth = "/health/liveliness", f"Bearer {LITELLM_MASTER}"
    elif name.startswith("kt-"):
        state = WORK / "state" / name
        shutil.rmtree(state, ignore_errors=True)
        state.mkdir(parents=True)
        patternb = name.startswith("kt-patternb")
        cfg = cfgs[1] if patternb else cfgs[0]
        penv = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        penv.update(FAKE_KEYS, PYTHONUNBUFFERED="1")
        if patternb:
            p = subprocess.run(
                [
                    kt,
                    "keys",
                    "create",
                    "--role",
                    "developer",
                    "--name",
                    "bench",
                    "--state-dir",
                    str(state),
                    "--json",
                ],
                capture_output=True,
                text=True,
                env=penv,
                timeout=60,
            )
            if p.returncode != 0:
                t.unavailable = f"`kt keys create` failed: {p.stderr.strip()[-200:]}"
                return t, None
            t.auth = "Bearer " + json.loads(p.stdout)["key"]
        if name == "kt-anthropic":
            t.model = ANTHROPIC_MODEL
        cmd = [
            kt,
            "gateway",
            "run",
            "--listen",
            f"127.0.0.1:{port}",
            "--state-dir",
            str(state),
            "--policy-config",
            str(cfg),
            "--log-level",
            "WARNING",
        ]
        if name in WORKER_TARGETS:
            cmd += ["--workers", str(WORKER_TARGETS[name])]
        cwd = WORK
    else:
        raise ValueError(name)
    # Worker targets get every core: there are no more, so they share core 0 with the
    # upstream and the load generator (WORKERS_NOTE).
    cores = ",".join(str(c) for c in range(os.cpu_count() or 1)) if name in WORKER_TARGETS else 1
    t.proc = Proc(name, env.on(cores, cmd), penv, cwd)
    try:
        cold = t.proc.wait_healthy(port, t.health, timeout=120)
    except RuntimeError as exc:
        text = t.proc.log_text()
        t.proc.stop()
        t.proc = None
        if "not implemented" in text:
            line = next((x for x in text.splitlines() if "not implemented" in x), text[-200:])
            t.unavailable = "not available: " + line.strip().removeprefix("error: ")
        else:
            t.unavailable = f"failed to start ({exc}); log tail: {text.strip()[-300:]}"
        return t, None
    return t, cold


def sanity(t: Target, bodies: dict[str, Path]) -> str | None:
    """One plain and one streamed request must succeed before any load."""
    n = prompts.start()
    status, body = http_post(t.port, t.path, prompts.fill(bodies["chat"].read_bytes(), n), t.auth)
    if status != 200 or b"choices" not in body:
        return f"plain request answered {status}: {body[:300]!r}"
    stream = prompts.fill(bodies["stream"].read_bytes(), n + 1)
    status, body = http_post(t.port, t.path, stream, t.auth)
    if status != 200 or b"[DONE]" not in body:
        return f"streamed request answered {status}: {body[:300]!r}"
    return None


# --------------------------------------------------------------------------- report


def fmt_cell(vals: list[float | None], spec: str, rounds: int) -> str:
    v = [x for x in vals if x is not None]
    if not v:
        return "—"
    m = statistics.median(v)
    s = format(m, spec)
    if rounds > 1 and len(v) > 1 and min(v) != max(v):
        s += f" ({format(min(v), spec)}–{format(max(v), spec)})"
    return s


def get(res: dict, *keys: str) -> Any:
    cur: Any = res
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            return None
        cur = cur[k]
    return cur


def derived(res: dict) -> dict[str, float | None]:
    """Per-round figures for the table (ms and req/s)."""

    def ms(*k: str) -> float | None:
        v = get(res, *k)
        return v / 1e3 if v is not None else None

    d: dict[str, float | None] = {}
    c1, c1d = get(res, "c1", "p50_us"), get(res, "c1_direct", "p50_us")
    d["add_p50"] = (c1 - c1d) / 1e3 if c1 is not None and c1d is not None else None
    c1, c1d = get(res, "c1", "p99_us"), get(res, "c1_direct", "p99_us")
    d["add_p99"] = (c1 - c1d) / 1e3 if c1 is not None and c1d is not None else None
    d["c1_p50"] = ms("c1", "p50_us")
    for k in ("c32", "c64", "s32", "s64"):
        d[f"{k}_rps"] = get(res, k, "rps")
        d[f"{k}_p99"] = ms(k, "p99_us")
        d[f"{k}_err"] = get(res, k, "errors")
    tt, ttd = get(res, "ttft", "ttft_p50_ms"), get(res, "ttft_direct", "ttft_p50_ms")
    d["ttft_add"] = tt - ttd if tt is not None and ttd is not None else None
    d["ttft_p50"] = tt
    d["stall_free"] = res.get("stall_free")
    d["peak_rss"] = res.get("peak_rss_mb")
    d["idle_rss"] = res.get("idle_rss_mb")
    d["cold"] = res.get("cold_start_s")
    return d


COLUMNS = [
    ("added p50 c=1 (ms)", "add_p50", ".2f"),
    ("added p99 c=1 (ms)", "add_p99", ".2f"),
    ("req/s c=32", "c32_rps", ".0f"),
    ("p99 c=32 (ms)", "c32_p99", ".1f"),
    ("req/s c=64", "c64_rps", ".0f"),
    ("p99 c=64 (ms)", "c64_p99", ".1f"),
    ("stream req/s c=32", "s32_rps", ".0f"),
    ("stream p99 c=32 (ms)", "s32_p99", ".1f"),
    ("stream req/s c=64", "s64_rps", ".0f"),
    ("stream p99 c=64 (ms)", "s64_p99", ".1f"),
    ("TTFT added p50 (ms)", "ttft_add", ".2f"),
    ("stall-free streams", "stall_free", ".0f"),
    ("peak RSS (MB)", "peak_rss", ".0f"),
    ("idle RSS (MB)", "idle_rss", ".0f"),
    ("cold start (s)", "cold", ".2f"),
]


def table(
    results: dict[str, list[dict]], order: list[str], rounds: int, unavailable: dict[str, str]
) -> str:
    head = "| target | " + " | ".join(c[0] for c in COLUMNS) + " |"
    sep = "|---|" + "---:|" * len(COLUMNS)
    lines = [head, sep]
    for name in order:
        rows = [derived(r) for r in results.get(name, []) if "error" not in r]
        if not rows:
            why = unavailable.get(name) or next(
                (r["error"] for r in results.get(name, []) if "error" in r), "not run"
            )
            tag = "not available" if why.startswith("not available") else "not measured"
            lines.append(
                f"| {name} | {tag} (see notes) | " + " | ".join(["—"] * (len(COLUMNS) - 1)) + " |"
            )
            continue
        cells = []
        for _, key, spec in COLUMNS:
            vals = [r[key] for r in rows]
            if name == "direct" and key in ("add_p50", "add_p99", "ttft_add"):
                cells.append("0 (baseline)")
            else:
                cells.append(fmt_cell(vals, spec, rounds))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_rows(results: dict[str, list[dict]]) -> list[tuple[str, str, float | None]]:
    """Ratios computed within each round (targets ran minutes apart), then the median."""

    def per_round(a: str, b: str, key: str) -> float | None:
        ra, rb = results.get(a, []), results.get(b, [])
        vals = []
        for x, y in zip(ra, rb, strict=False):
            if "error" in x or "error" in y:
                continue
            va, vb = derived(x)[key], derived(y)[key]
            if va and vb:
                vals.append(va / vb)
        return med(vals)

    rows = []
    for kt in ("kt-empty", "kt-patternb"):
        for key, label in (
            ("c32_rps", "req/s c=32"),
            ("s32_rps", "stream req/s c=32"),
            ("c64_rps", "req/s c=64"),
            ("s64_rps", "stream req/s c=64"),
        ):
            rows.append((f"{kt} / litellm-empty, {label}", key, per_round(kt, "litellm", key)))
            rows.append((f"{kt} / bare, {label}", key, per_round(kt, "bare", key)))
    for kt in ("kt-empty", "kt-patternb"):
        for key, label in (("c32_rps", "req/s c=32"), ("s32_rps", "stream req/s c=32")):
            w2 = f"{kt}-w2"
            rows.append((f"{w2} / {kt} (2 workers / 1), {label}", key, per_round(w2, kt, key)))
            rows.append((f"{w2} / litellm-empty, {label}", key, per_round(w2, "litellm", key)))
    return rows


def checks(
    results: dict[str, list[dict]], unavailable: dict[str, str]
) -> list[tuple[str, str, str]]:
    """The issue's targets: (target, measured, verdict)."""
    ratios = {label: v for label, _, v in ratio_rows(results)}

    def m(name: str, key: str) -> float | None:
        return med([derived(r)[key] for r in results.get(name, []) if "error" not in r])

    def verdict(ok: bool | None) -> str:
        return "—" if ok is None else ("PASS" if ok else "FAIL")

    out = []

    def add(
        label: str,
        value: float | None,
        ok_fn,
        spec: str,
        unit: str = "",
        missing: str = "not measured",
    ) -> None:
        if value is None:
            out.append((label, missing, "—"))
        else:
            out.append((label, format(value, spec) + unit, verdict(ok_fn(value))))

    e, b = "kt-empty", "kt-patternb"
    na_b = unavailable.get(b, "not measured")
    add("empty chain: added p50 ≤ 0.5 ms at c=1", m(e, "add_p50"), lambda v: v <= 0.5, ".3f", " ms")
    for lab in ("req/s c=32", "stream req/s c=32"):
        add(
            f"empty chain: {lab} ≥ 25× LiteLLM",
            ratios.get(f"{e} / litellm-empty, {lab}"),
            lambda v: v >= 25,
            ".1f",
            "×",
            unavailable.get("litellm", "not measured"),
        )
        add(
            f"empty chain: {lab} ≥ 60% of bare",
            ratios.get(f"{e} / bare, {lab}"),
            lambda v: v >= 0.6,
            ".0%",
            "",
        )
    add("Pattern B: added p50 ≤ 5 ms at c=1", m(b, "add_p50"), lambda v: v <= 5, ".3f", " ms", na_b)
    for lab in ("req/s c=32", "stream req/s c=32"):
        add(
            f"Pattern B: {lab} ≥ 10× LiteLLM (empty chain)",
            ratios.get(f"{b} / litellm-empty, {lab}"),
            lambda v: v >= 10,
            ".1f",
            "×",
            na_b if b in unavailable else unavailable.get("litellm", "not measured"),
        )
    # 1,000 slow streams: from the ladder's 1000 level
    for name in (e, b):
        lv = [
            x
            for r in results.get(name, [])
            if "error" not in r
            for x in r.get("ladder", [])
            if x.get("level") == 1000
        ]
        if not lv:
            # A run without the ladder (``--ladder ''``) did not measure this at all.
            ran = any("error" not in r and r.get("ladder") for r in results.get(name, []))
            out.append(
                (
                    f"{name}: 1,000 concurrent slow streams, no stalls",
                    "ladder stopped before 1,000 (see the ladder below)"
                    if ran
                    else unavailable.get(name, "not measured"),
                    "FAIL" if ran else "—",
                )
            )
            continue
        ok = all(x.get("stall_free") for x in lv)
        worst = max(x.get("max_gap_ms") or 0 for x in lv)
        ftok = max(x.get("first_token_p99_ms") or 0 for x in lv)
        fails = sum(x.get("failed", 0) for x in lv)
        stalls = sum(x.get("stalled", 0) for x in lv)
        out.append(
            (
                f"{name}: 1,000 concurrent slow streams (50 ms chunks), no stalls",
                f"{fails} failed, {stalls} stalled, largest gap {worst:.0f} ms, first token "
                f"p99 {ftok:.0f} ms, peak RSS {m(name, 'peak_rss') or 0:.0f} MB",
                verdict(ok),
            )
        )
    add("empty chain: idle RSS ≤ 120 MB", m(e, "idle_rss"), lambda v: v <= 120, ".0f", " MB")
    add("Pattern B: idle RSS (reported)", m(b, "idle_rss"), lambda v: True, ".0f", " MB", na_b)
    add("empty chain: cold start ≤ 1.5 s", m(e, "cold"), lambda v: v <= 1.5, ".2f", " s")
    for name in (e, b):
        soaks = [
            r["soak"]
            for r in results.get(name, [])
            if "soak" in r and "rss_growth_pct" in r["soak"]
        ]
        if not soaks:
            continue
        s = soaks[-1]
        out.append(
            (
                f"{name}: soak {s['seconds']:.0f}s, RSS growth ≤ 5%",
                f"{s['rss_growth_pct']:+.1f}%",
                verdict(s["rss_growth_pct"] <= 5),
            )
        )
        out.append(
            (
                f"{name}: soak p99 stable (median p99 of the later half of the windows "
                "≤ 1.5× the earlier half)",
                f"{s['p99_early_ms']:.1f} → {s['p99_late_ms']:.1f} ms "
                f"(×{s['p99_drift']:.2f}; worst window ×{s['p99_max_over_median']:.2f} the "
                f"median; {s['errors']} errors)",
                verdict(s["p99_drift"] <= 1.5),
            )
        )
    return out


def _ms(v: float | None) -> str:
    return "—" if v is None or v != v else f"{v:.0f}"


def scrub(text: str) -> str:
    """Paths relative to the repo: reports never carry this machine's absolute paths."""
    return text.replace(str(REPO) + os.sep, "").replace(str(Path.home()), "~")


def report(
    meta: dict,
    results: dict,
    order: list[str],
    plan: Plan,
    unavailable: dict[str, str],
    notes: list[str],
) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"- Date: {meta['date']}",
        f"- Command: `{meta['command']}`",
        f"- Rounds: {plan.rounds} (cells: median, with min–max over rounds when more than one); "
        f"{plan.phase_s:.0f} s per load phase",
        "- Versions: " + "; ".join(f"{k} {v}" for k, v in meta["versions"].items() if v),
        f"- Pinning: {meta['pinning']}",
        f"- Duration: {meta.get('seconds', 0) / 60:.0f} min"
        + (
            f"; 1-minute load average at start / end: {meta['loadavg']} on {os.cpu_count()} CPUs"
            if "loadavg" in meta
            else ""
        ),
        "",
        table(results, order, plan.rounds, unavailable),
        "",
        "Added latency is the target's p50/p99 minus the direct p50/p99 measured right before it "
        "(same round, concurrency 1, non-streaming). TTFT added is the same for the first "
        "content token of a stream. Stall-free streams is the largest level of the ladder "
        f"{list(plan.ladder)} where every stream ({SLOW[1]} chunks, {SLOW[0]} ms apart) completed "
        f"with no gap over {plan.stall_ms:.0f} ms between two reads after its first content "
        "token (time to that token is in the ladder table: a policy's hold-back window shows "
        "there, not as a stall).",
        "",
        "## Ratios (computed within each round, then the median)",
        "",
        "| ratio | value |",
        "|---|---:|",
    ]
    for label, _, v in ratio_rows(results):
        lines.append(f"| {label} | {'—' if v is None else f'{v:.2f}×'} |")
    lines += [
        "",
        "## Targets from the issue",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]
    for label, value, verdict in checks(results, unavailable):
        lines.append(f"| {label} | {value} | {verdict} |")
    extra = []
    for name in order:
        if name in unavailable:
            extra.append(f"- `{name}`: {unavailable[name]}")
        for i, r in enumerate(results.get(name, [])):
            if "error" in r:
                extra.append(f"- `{name}` round {i + 1}: {r['error']}")
            errs = {k: get(r, k, "errors") for k in ("c1", "c32", "c64", "s32", "s64")}
            errs = {k: v for k, v in errs.items() if v}
            if errs:
                extra.append(f"- `{name}` round {i + 1}: load-generator errors {errs}")
            ext = {k: get(r, k, "extended_to_s") for k in ("c1", "c32", "c64", "s32", "s64")}
            ext = {k: f"{v:.0f} s" for k, v in ext.items() if v}
            if ext:
                extra.append(
                    f"- `{name}` round {i + 1}: phases run longer because their median latency "
                    f"was over a tenth of the phase: {ext}"
                )
    base = [get(r, "c32", "rps") for r in results.get("direct", []) if "error" not in r]
    base = [v for v in base if v]
    if len(base) > 1:
        spread = (max(base) - min(base)) / statistics.median(base)
        if spread > 0.25:
            extra.append(
                f"- The direct baseline's req/s at c=32 varied {spread:.0%} across rounds: "
                "other work shared the machine. Absolute figures are then lower bounds and "
                "noisy; read the ratios (measured seconds apart). A stall that hits every "
                "target in the same round, `bare` included, is the machine pausing."
            )
        else:
            extra.append(
                f"- The direct baseline's req/s at c=32 varied {spread:.0%} across rounds: "
                "the machine was quiet enough for the absolute figures to mean something."
            )
    lines += ["", "## Notes", ""] + (extra + [f"- {n}" for n in notes] or ["- none"])
    ladders = []
    for name in order:
        for i, r in enumerate(results.get(name, [])):
            for x in r.get("ladder", []):
                ladders.append(
                    f"| {name} | {i + 1} | {x['level']} | {x.get('ok', 0)} | "
                    f"{x.get('stalled', 0)} | "
                    f"{(x.get('max_gap_ms') or 0):.0f} | {_ms(x.get('first_token_p50_ms'))} / "
                    f"{_ms(x.get('first_token_p99_ms'))} | "
                    f"{x.get('rss_after_mb', 0) or 0:.0f} |"
                )
    if ladders:
        lines += [
            "",
            "## Slow-stream ladder",
            "",
            "| target | round | streams | completed | stalled | largest gap (ms) | "
            "first token p50 / p99 (ms) | RSS after (MB) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += ladders
    soaks = [(n, r["soak"]) for n in order for r in results.get(n, []) if "soak" in r]
    for name, s in soaks:
        lines += [
            "",
            f"## Soak: {name}",
            "",
            "| window | req/s | p50 (ms) | p99 (ms) | errors | RSS (MB) |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for i, w in enumerate(s.get("windows", [])):
            lines.append(
                f"| {i + 1} | {w['rps']:.0f} | {w['p50_ms']:.2f} | {w['p99_ms']:.2f} | "
                f"{w['errors']} | {w['rss_mb']:.1f} |"
            )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def rerender(raw: Path, args: argparse.Namespace) -> int:
    global SLOW
    data = json.loads(raw.read_text())
    plan = Plan(**data["plan"])
    plan.ladder = tuple(plan.ladder)
    SLOW = (plan.slow_delay_ms, plan.slow_chunks)
    order = list(data["results"])
    notes = data["notes"] + args.note
    text = scrub(report(data["meta"], data["results"], order, plan, data["unavailable"], notes))
    print(text)
    if args.results:
        Path(args.results).write_text(text)
    return 0


def main() -> int:
    global SLOW
    ap = argparse.ArgumentParser(description="gateway benchmark (see docs/benchmark.md)")
    ap.add_argument("--quick", action="store_true", help="short phases, one round (smoke check)")
    ap.add_argument("--rounds", type=int, default=0, help="rounds (default 3, 1 with --quick)")
    ap.add_argument("--phase-seconds", type=float, default=0, help="seconds per load phase")
    ap.add_argument("--skip-litellm", action="store_true")
    ap.add_argument(
        "--soak-seconds",
        type=float,
        default=0,
        help="seconds of paced soak in the last round (600 = the full soak)",
    )
    ap.add_argument(
        "--soak-targets",
        default="kt-empty,kt-patternb",
        help="targets soaked (in the last round only)",
    )
    ap.add_argument(
        "--targets",
        default=",".join(DEFAULT_TARGETS),
        help=f"comma-separated subset of {','.join(ALL_TARGETS)}",
    )
    ap.add_argument(
        "--rerender",
        metavar="RAW_JSON",
        help="write the report again from a run's raw JSON (bench/.work/results/*.json)",
    )
    ap.add_argument(
        "--phases",
        default="",
        help=f"comma-separated subset of the load phases {','.join(PHASES)} (default: all)",
    )
    ap.add_argument(
        "--ladder",
        default=None,
        help="slow-stream ladder levels, e.g. 1000 ('' skips the ladder)",
    )
    ap.add_argument("--note", action="append", default=[], help="extra note for the report")
    ap.add_argument(
        "--results",
        default=str(BENCH / "RESULTS.md"),
        help="where to write the Markdown report ('' to skip)",
    )
    args = ap.parse_args()
    if args.rerender:
        return rerender(Path(args.rerender), args)
    plan = make_plan(args)
    SLOW = (plan.slow_delay_ms, plan.slow_chunks)
    order = [t.strip() for t in args.targets.split(",") if t.strip()]
    bad = [t for t in order if t not in ALL_TARGETS]
    if bad:
        ap.error(f"unknown target(s) {bad}; choose from {ALL_TARGETS}")
    soak_targets = {t.strip() for t in args.soak_targets.split(",") if t.strip()}
    if args.skip_litellm and "litellm" in order:
        order.remove("litellm")
    WORK.mkdir(parents=True, exist_ok=True)

    notes: list[str] = []
    cpus = os.cpu_count() or 1
    pin = bool(shutil.which("taskset")) and cpus >= 2
    if pin:
        # this orchestrator (and its RSS samplers) stays off the proxy's core
        os.sched_setaffinity(0, {0})
    env = Env(python=sys.executable, pin=pin, wrk=ensure_wrk(notes))
    if not pin:
        notes.append("no core pinning (taskset missing or a single CPU)")
    unavailable: dict[str, str] = {}
    if "litellm" in order:
        env.litellm, env.litellm_note = ensure_litellm()
        if not env.litellm:
            unavailable["litellm"] = env.litellm_note
    help_text = subprocess.run(
        [str(Path(env.python).parent / "kt"), "gateway", "run", "--help"],
        capture_output=True,
        text=True,
    ).stdout
    if "--workers" not in help_text:
        notes.append(
            "`kt gateway run` has no `--workers` option: worker scaling was not measured "
            "(each target runs as one process on one core)."
        )
    elif any(t in WORKER_TARGETS for t in order):
        notes.append(WORKERS_NOTE)

    up_port = free_port()
    upstream_url = f"http://127.0.0.1:{up_port}"
    procs: list[Proc] = []
    results: dict[str, list[dict]] = {n: [] for n in order}
    started = time.time()
    load_start = os.getloadavg()[0]
    try:
        up = Proc(
            "upstream",
            env.on(0, [env.python, str(BENCH / "upstream.py"), "--port", str(up_port)]),
            dict(os.environ),
            WORK,
        )
        procs.append(up)
        up.wait_healthy(up_port, "/health", 20)
        run = Runner(env, plan, up_port)
        ctx = {
            "upstream": upstream_url,
            "cfgs": kt_configs(upstream_url),
            "llcfg": litellm_config(upstream_url) if "litellm" in order else None,
            "direct_bodies": write_bodies("gpt-4o"),
            "soak_targets": soak_targets,
        }
        for rnd in range(plan.rounds):
            # rotate the order each round so no target always runs first or last
            ordr = order[rnd % len(order) :] + order[: rnd % len(order)]
            log(f"round {rnd + 1}/{plan.rounds}: {', '.join(ordr)}")
            res = run_round(run, env, ordr, rnd, ctx, unavailable, procs)
            for name in order:
                if name in res:
                    results[name].append(res[name])
    finally:
        for p in procs:
            p.stop()

    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "bench/run.sh " + shlex.join(sys.argv[1:]),
        "versions": versions(env),
        "pinning": (
            "upstream + load generator on core 0, proxy under test on core 1 (taskset)"
            if pin
            else "none"
        ),
        "seconds": round(time.time() - started),
        "loadavg": f"{load_start:.1f} / {os.getloadavg()[0]:.1f}",
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    raw = WORK / "results" / f"{stamp}.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(
        json.dumps(
            {
                "meta": meta,
                "plan": plan.__dict__,
                "results": results,
                "unavailable": unavailable,
                "notes": notes,
            },
            indent=1,
        )
    )
    text = scrub(report(meta, results, order, plan, unavailable, notes + args.note))
    print()
    print(text)
    if args.results:
        Path(args.results).write_text(text)
        log(
            f"wrote {os.path.relpath(args.results, REPO)} and bench/.work/results/{raw.name} "
            f"({meta['seconds']} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
