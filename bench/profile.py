"""Profile our gateway's hot path under load with py-spy; print the top functions.

    .venv/bin/python bench/profile.py [--target kt-empty|kt-patternb|kt-anthropic]
                                      [--kind chat|stream] [--connections 32] [--seconds 15]

Same layout as bench/run.py (upstream + wrk + py-spy on core 0, gateway on core 1). py-spy
is installed into bench/.work/tools-venv on first use. Writes the collapsed stacks to
bench/.work/profile-TARGET-KIND.txt (open them in speedscope or flamegraph.pl).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench


def ensure_pyspy() -> str:
    # One next to this interpreter (the repo's .venv may have it) saves an install.
    local = Path(sys.executable).parent / "py-spy"
    if local.exists():
        return str(local)
    exe = bench.WORK / "tools-venv" / "bin" / "py-spy"
    if not exe.exists():
        venv = exe.parent.parent
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "py-spy"], check=True)
    return str(exe)


def summarize(path: Path, top: int) -> str:
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        self_t[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    out = [f"{total} samples", "", "self time:"]
    for f, c in self_t.most_common(top):
        out.append(f"  {100 * c / total:5.1f}%  {f}")
    out += ["", "inclusive (keeptrusts frames):"]
    kt = [(f, c) for f, c in incl.items() if "keeptrusts" in f]
    for f, c in sorted(kt, key=lambda x: -x[1])[:top]:
        out.append(f"  {100 * c / total:5.1f}%  {f}")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--target", default="kt-empty", choices=("bare", "kt-empty", "kt-patternb", "kt-anthropic")
    )
    ap.add_argument("--kind", default="chat", choices=("chat", "stream"))
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL")
    args = ap.parse_args()
    bench.WORK.mkdir(parents=True, exist_ok=True)
    pyspy = ensure_pyspy()
    notes: list[str] = []
    env = bench.Env(
        python=sys.executable,
        pin=bool(shutil.which("taskset")) and (os.cpu_count() or 1) >= 2,
        wrk=bench.ensure_wrk(notes),
    )
    up_port = bench.free_port()
    url = f"http://127.0.0.1:{up_port}"
    up = bench.Proc(
        "profile-upstream",
        env.on(0, [sys.executable, str(bench.BENCH / "upstream.py"), "--port", str(up_port)]),
        dict(os.environ),
        bench.WORK,
    )
    t = None
    try:
        up.wait_healthy(up_port, "/health", 20)
        cfgs = bench.kt_configs(url)
        t, _ = bench.start_target(args.target, env, url, cfgs, None)
        if t.unavailable:
            print(t.unavailable)
            return 1
        bodies = bench.write_bodies(t.model)
        run = bench.Runner(
            env,
            bench.make_plan(
                argparse.Namespace(quick=True, rounds=0, phase_seconds=0, soak_seconds=0)
            ),
            up_port,
        )
        run.wrk(t.port, t.path, bodies[args.kind], 8, 2, t.auth)  # warm-up
        out = bench.WORK / f"profile-{args.target}-{args.kind}.txt"
        spy = subprocess.Popen(
            env.on(
                0,
                [
                    pyspy,
                    "record",
                    *(["--gil"] if args.gil else []),
                    "-f",
                    "raw",
                    "-r",
                    "250",
                    "-d",
                    str(args.seconds + 1),
                    "-o",
                    str(out),
                    "-p",
                    str(t.proc.pid),
                ],
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        r = run.wrk(t.port, t.path, bodies[args.kind], args.connections, args.seconds, t.auth)
        spy.wait(args.seconds + 30)
        print(
            f"{args.target} {args.kind} c={args.connections}: {r.get('rps', 0):.0f} req/s "
            f"(under py-spy), p99 {r.get('p99_us', 0) / 1e3:.1f} ms"
        )
        print(summarize(out, args.top))
        print(f"\ncollapsed stacks: {os.path.relpath(out, bench.REPO)}")
    finally:
        if t is not None and t.proc:
            t.proc.stop()
        up.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
