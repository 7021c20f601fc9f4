"""``kt doctor``: check what a gateway needs, and say how to fix what is wrong.

Checks, in order: the policy config (as ``kt policy lint`` does, but against this shell's
environment, so a key variable that is not exported shows up); the state directory
(exists, owned by you, not readable by others; ``keys.db``, ``audit.db``, ``admin-token``
and friends mode 0600); each target's address (a TCP connect to ``base_url``'s host and
port with a short timeout: nothing is sent, no key leaves the machine); the key store and
the audit log (opens, hash chain verified as ``kt events verify`` does); and, with
``--gateway URL``, a running gateway's ``/health``.

Exit 0 when nothing failed (warnings do not fail unless ``--strict``), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from keeptrusts.cli.common import default_state_dir
from keeptrusts.config.load import load_config
from keeptrusts.config.model import GatewayConfig, Target
from keeptrusts.policies import registry as policy_registry

Status = Literal["ok", "warn", "fail", "skip"]
DEFAULT_CONFIG = "policy-config.yaml"
DEFAULT_TIMEOUT = 2.0
# Files in the state dir that hold secrets or the audit trail: owner-only.
PRIVATE_FILES = (
    "keys.db", "keys.db-wal", "keys.db-shm", "audit.db", "audit.db-wal", "audit.db-shm",
    "audit-head.json", "admin-token", "auth.json",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    message: str
    fix: str | None = None


def add_commands(groups: argparse._SubParsersAction) -> None:
    doctor = groups.add_parser(
        "doctor",
        help="check config, state dir, providers and audit log; print what to fix",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    doctor.add_argument(
        "--policy-config",
        "--config",
        dest="policy_config",
        action="append",
        metavar="FILE",
        help=f"config to check; repeat to layer (default: ./{DEFAULT_CONFIG} if present)",
    )
    doctor.add_argument(
        "--state-dir", default=None, help="state dir (default $KEEPTRUSTS_HOME or ~/.keeptrusts)"
    )
    doctor.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds per connection attempt (default %(default)s)",
    )
    doctor.add_argument("--no-network", action="store_true", help="skip provider reachability")
    doctor.add_argument("--gateway", metavar="URL", help="also check a running gateway's /health")
    doctor.add_argument("--strict", action="store_true", help="fail on warnings too")
    doctor.add_argument("--json", action="store_true", help="print {ok, checks} as JSON")
    doctor.set_defaults(func=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir).expanduser() if args.state_dir else default_state_dir()
    checks: list[Check] = []
    config = check_config(args.policy_config, checks)
    checks += check_state_dir(state_dir)
    if config is not None:
        checks += check_targets(config.targets, timeout=args.timeout, network=not args.no_network)
        if args.no_network:
            checks.append(Check("providers", "skip", "reachability not checked (--no-network)"))
    checks += check_key_store(state_dir)
    checks += check_audit(state_dir)
    if args.gateway:
        checks.append(check_gateway(args.gateway, timeout=args.timeout))
    bad = {"fail", "warn"} if args.strict else {"fail"}
    ok = not any(c.status in bad for c in checks)
    if args.json:
        print(json.dumps({"ok": ok, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        _print(checks)
    return 0 if ok else 1


# -- config ----------------------------------------------------------------------------------


def check_config(paths: Sequence[str] | None, checks: list[Check]) -> GatewayConfig | None:
    if not paths:
        if not Path(DEFAULT_CONFIG).is_file():
            checks.append(
                Check(
                    "config",
                    "warn",
                    f"no --policy-config given and no ./{DEFAULT_CONFIG}; config not checked",
                    f"kt doctor --policy-config FILE (or run kt doctor next to {DEFAULT_CONFIG})",
                )
            )
            return None
        paths = [DEFAULT_CONFIG]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        checks.append(Check("config", "fail", f"no such file: {', '.join(missing)}"))
        return None
    config, problems = load_config(paths)
    where = ", ".join(paths)
    for p in problems:
        # A key variable that is not set shows on its target's line, with the fix.
        if p.severity == "warning" and p.path.endswith("secret_key_ref.env"):
            continue
        status: Status = "fail" if p.severity == "error" else "warn"
        checks.append(Check("config", status, str(p), f"kt policy lint --file {p.file}"))
    if config is None:
        return None
    unrunnable = [n for n in config.chain if policy_registry.get(n) is None]
    if unrunnable:
        checks.append(
            Check(
                "config",
                "fail",
                f"policies.chain names {', '.join(unrunnable)}, not implemented in this "
                "version: the gateway refuses to start",
                "remove them from policies.chain",
            )
        )
    if not config.targets:
        checks.append(Check("config", "warn", "no providers.targets: every model request gets 404"))
    if not any(c.name == "config" and c.status == "fail" for c in checks):
        chain = " -> ".join(config.chain) or "(empty chain)"
        checks.append(
            Check(
                "config",
                "ok",
                f"{where}: {config.pack}, {len(config.targets)} target(s), chain {chain}",
            )
        )
    return config


# -- state dir -------------------------------------------------------------------------------


def check_state_dir(state_dir: Path) -> list[Check]:
    name = "state dir"
    if not state_dir.exists():
        return [
            Check(
                name,
                "warn",
                f"{state_dir} does not exist yet",
                "`kt gateway run --state-dir DIR` creates it (mode 0700); or mkdir -m 700 "
                f"{state_dir}",
            )
        ]
    if not state_dir.is_dir():
        return [Check(name, "fail", f"{state_dir} is not a directory", "point --state-dir at one")]
    out: list[Check] = []
    st = state_dir.stat()
    uid = os.getuid()
    if st.st_uid != uid:
        out.append(
            Check(
                name,
                "fail",
                f"{state_dir} is owned by uid {st.st_uid}, not you (uid {uid})",
                f"chown -R {uid} {state_dir}",
            )
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o007:
        out.append(
            Check(
                name,
                "fail",
                f"{state_dir} is open to other users (mode {mode:04o}): keys and the audit "
                "log are inside",
                f"chmod 700 {state_dir}",
            )
        )
    elif mode & 0o070:
        out.append(
            Check(
                name,
                "warn",
                f"{state_dir} is open to its group (mode {mode:04o})",
                f"chmod 700 {state_dir}",
            )
        )
    if not os.access(state_dir, os.W_OK | os.X_OK):
        out.append(
            Check(name, "fail", f"{state_dir} is not writable by you", f"chmod u+rwx {state_dir}")
        )
    for fname in PRIVATE_FILES:
        path = state_dir / fname
        if not path.exists():
            continue
        fst = path.stat()
        fmode = stat.S_IMODE(fst.st_mode)
        if fst.st_uid != uid:
            out.append(
                Check(
                    name,
                    "fail",
                    f"{path} is owned by uid {fst.st_uid}, not you",
                    f"chown {uid} {path}",
                )
            )
        if fmode & 0o077:
            out.append(
                Check(
                    name,
                    "fail",
                    f"{path} is readable by others (mode {fmode:04o}); it should be 0600",
                    f"chmod 600 {path}",
                )
            )
    if not out:
        out.append(Check(name, "ok", f"{state_dir}: owned by you, mode {mode:04o}, files 0600"))
    return out


# -- providers -------------------------------------------------------------------------------


def _endpoint(base_url: str) -> tuple[str, int] | None:
    parts = urlsplit(base_url)
    if not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _connect(host: str, port: int, timeout: float) -> tuple[bool, str]:
    """Open and close a TCP connection; nothing is sent. (ok, detail)."""
    started = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror as exc:
        return False, f"cannot resolve {host}: {exc.strerror or exc}"
    except TimeoutError:
        return False, f"no answer from {host}:{port} within {timeout:g}s"
    except OSError as exc:
        return False, f"cannot connect to {host}:{port}: {exc.strerror or exc}"
    return True, f"{host}:{port} reachable in {(time.perf_counter() - started) * 1000:.0f} ms"


def check_targets(
    targets: Sequence[Target], *, timeout: float = DEFAULT_TIMEOUT, network: bool = True
) -> list[Check]:
    """Each target's key, and (with ``network``) whether its host:port accepts a connection."""
    endpoints = {t.id: _endpoint(t.base_url) for t in targets if t.base_url}
    unique = sorted({e for e in endpoints.values() if e is not None}) if network else []
    with ThreadPoolExecutor(max_workers=min(8, len(unique) or 1)) as pool:
        results = dict(
            zip(unique, pool.map(lambda e: _connect(e[0], e[1], timeout), unique), strict=True)
        )
    out: list[Check] = []
    for t in targets:
        name = f"target {t.id}"
        if t.unavailable:
            fix = f"export {t.key_env}" if t.key_env else "set the target's key"
            out.append(Check(name, "fail", f"unavailable: {t.unavailable}", fix))
        if not t.base_url:
            out.append(Check(name, "skip", f"provider {t.provider} makes no network calls"))
            continue
        if not network:
            if not t.unavailable:
                key = f"key from ${t.key_env}" if t.key_env else "no key configured"
                out.append(Check(name, "ok", f"{key}; {t.base_url} not contacted"))
            continue
        ep = endpoints.get(t.id)
        if ep is None:
            out.append(Check(name, "fail", f"cannot read host and port from {t.base_url!r}"))
            continue
        ok, detail = results[ep]
        if ok:
            out.append(Check(name, "ok", detail))
        else:
            out.append(
                Check(
                    name,
                    "fail",
                    detail,
                    f"check base_url ({t.base_url}), DNS, and any firewall or proxy between "
                    "this machine and the provider",
                )
            )
    return out


# -- stores ----------------------------------------------------------------------------------


def check_key_store(state_dir: Path) -> list[Check]:
    path = state_dir / "keys.db"
    if not path.exists():
        return [Check("key store", "skip", "no keys.db yet (kt keys create makes one)")]
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            (result,) = conn.execute("PRAGMA quick_check").fetchone()
            (active,) = conn.execute(
                "SELECT COUNT(*) FROM keys WHERE revoked_at IS NULL"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return [Check("key store", "fail", f"{path}: cannot read: {exc}", "restore it from backup")]
    if result != "ok":
        return [Check("key store", "fail", f"{path}: damaged ({result})", "restore it from backup")]
    return [Check("key store", "ok", f"{path}: {active} active key(s)")]


def check_audit(state_dir: Path) -> list[Check]:
    name = "audit log"
    try:
        from keeptrusts.audit.store import AuditStoreMissing, SQLiteAuditStore
    except ImportError:  # an install without the local audit store
        return [Check(name, "skip", "no local audit store in this version")]
    if not (state_dir / "audit.db").exists():
        return [Check(name, "skip", "no audit.db yet (the gateway creates it on first start)")]
    verify_cmd = f"kt events verify --state-dir {state_dir}"
    try:
        store = SQLiteAuditStore(state_dir, readonly=True)
        try:
            result = store.verify()
        finally:
            store.close()
    except (AuditStoreMissing, sqlite3.Error, OSError, ValueError) as exc:
        return [Check(name, "fail", f"cannot open the audit log: {exc}", verify_cmd)]
    if result.ok:
        return [Check(name, "ok", result.summary())]
    return [
        Check(
            name,
            "fail",
            result.summary(),
            f"keep a copy of {state_dir} before changing anything; {verify_cmd} shows where "
            "the chain breaks",
        )
    ]


def check_gateway(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> Check:
    health = url.rstrip("/") + "/health"
    if "://" not in health:
        health = "http://" + health
    try:
        with urllib.request.urlopen(health, timeout=timeout) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return Check("gateway", "fail", f"{health}: HTTP {exc.code}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check("gateway", "fail", f"{health}: {reason}", "is `kt gateway run` running?")
    status = body.get("status") if isinstance(body, dict) else None
    level: Status = {"healthy": "ok", "degraded": "warn"}.get(str(status), "fail")  # type: ignore[assignment]
    return Check("gateway", level, f"{health}: {status}")


# -- output ----------------------------------------------------------------------------------


def _print(checks: Sequence[Check], out: Callable[[str], None] = print) -> None:
    labels = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}
    width = max((len(c.name) for c in checks), default=0)
    for c in checks:
        out(f"{labels[c.status]:<4}  {c.name:<{width}}  {c.message}")
        if c.fix and c.status in ("warn", "fail"):
            out(f"{'':<4}  {'':<{width}}  fix: {c.fix}")
    counts = {s: sum(c.status == s for c in checks) for s in labels}
    summary = f"{counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failed"
    out(summary + (f", {counts['skip']} skipped" if counts["skip"] else ""))
    if counts["fail"]:
        out("fix the FAIL lines above, then run kt doctor again")
