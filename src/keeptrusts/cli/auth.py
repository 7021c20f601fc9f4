"""``kt auth login|logout|whoami``: remember a running gateway and its admin token.

``login`` stores ``{"gateway": URL, "token": T}`` in ``<state_dir>/auth.json`` (mode 0600,
written atomically); ``kt events`` then reads that gateway's admin API. Tokens are never
printed back, only a short fingerprint.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import hashlib
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from keeptrusts.cli.common import default_state_dir

AUTH_FILE = "auth.json"
ADMIN_TOKEN_ENV = "KEEPTRUSTS_ADMIN_TOKEN"
ADMIN_TOKEN_FILE = "admin-token"


class AdminError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AdminClient:
    """A small synchronous client for the gateway's ``/keeptrusts`` admin API."""

    def __init__(self, gateway: str, token: str, *, timeout: float = 30.0) -> None:
        self.gateway = normalize_url(gateway)
        self._token = token
        self.timeout = timeout

    def __repr__(self) -> str:  # never show the token
        return f"AdminClient({self.gateway!r})"

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        url = self.gateway + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        req = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:
            msg = f"{self.gateway}: HTTP {exc.code}: {_error_message(exc)}"
            raise AdminError(msg, exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdminError(f"cannot reach {self.gateway}: {reason}") from None
        except orjson.JSONDecodeError:
            raise AdminError(f"{self.gateway}: the answer is not JSON") from None


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = orjson.loads(exc.read())
        return str(body["error"]["message"])
    except Exception:
        return exc.reason or "error"


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise AdminError(f"gateway URL must be http:// or https://, got {url!r}")
    return url


def fingerprint(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def state_dir_of(args: argparse.Namespace) -> Path:
    value = getattr(args, "state_dir", None)
    return Path(value).expanduser() if value else default_state_dir()


def load_auth(state_dir: Path) -> dict[str, str] | None:
    """The saved login, or None. Warns if the file is readable by others."""
    path = state_dir / AUTH_FILE
    try:
        st = path.stat()
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if st.st_mode & 0o077:
        print(f"warning: {path} is readable by other users; run chmod 600", file=sys.stderr)
    if not isinstance(data, dict) or not data.get("gateway") or not data.get("token"):
        return None
    return {"gateway": str(data["gateway"]), "token": str(data["token"])}


def save_auth(state_dir: Path, gateway: str, token: str) -> Path:
    """Write ``auth.json`` with mode 0600 from its creation (temp file, fsync, rename)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / AUTH_FILE
    tmp = state_dir / f".{AUTH_FILE}.{os.getpid()}.tmp"
    data = orjson.dumps({"gateway": gateway, "token": token}) + b"\n"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def resolve_admin_client(
    state_dir: Path, gateway: str | None, *, local: bool = False
) -> AdminClient | None:
    """Where ``kt events`` reads from: an ``AdminClient``, or None for the local audit log.

    ``--gateway URL`` wins (token from ``$KEEPTRUSTS_ADMIN_TOKEN``, the saved login for that
    URL, or the local ``admin-token`` file); ``--local`` forces the local log; otherwise a
    saved ``kt auth login`` is used if there is one.
    """
    if local:
        return None
    saved = load_auth(state_dir)
    if gateway:
        url = normalize_url(gateway)
        token = os.environ.get(ADMIN_TOKEN_ENV, "").strip()
        if not token and saved and normalize_url(saved["gateway"]) == url:
            token = saved["token"]
        if not token:
            try:
                token = (state_dir / ADMIN_TOKEN_FILE).read_text().strip()
            except OSError:
                token = ""
        if not token:
            raise AdminError(
                f"no admin token for {url}: run `kt auth login --gateway {url}` "
                f"or set {ADMIN_TOKEN_ENV}"
            )
        return AdminClient(url, token)
    if saved:
        return AdminClient(saved["gateway"], saved["token"])
    return None


def add_commands(groups: argparse._SubParsersAction) -> None:
    auth = groups.add_parser("auth", help="log in to a running gateway's admin API")
    sub = auth.add_subparsers(dest="command", required=True, metavar="COMMAND")

    login = sub.add_parser("login", help="save a gateway URL and admin token for kt events")
    login.add_argument("--gateway", required=True, metavar="URL", help="gateway base URL")
    login.add_argument(
        "--token",
        help=f"admin token (default: ${ADMIN_TOKEN_ENV}, the state dir's admin-token "
        "file, else a prompt); prefer --token-stdin over putting it on the command line",
    )
    login.add_argument("--token-stdin", action="store_true", help="read the token from stdin")
    login.add_argument("--no-verify", action="store_true", help="save without checking the token")
    login.set_defaults(func=run_login)

    logout = sub.add_parser("logout", help="forget the saved gateway and token")
    logout.set_defaults(func=run_logout)

    whoami = sub.add_parser("whoami", help="show the saved gateway (never the token)")
    whoami.add_argument("--offline", action="store_true", help="do not contact the gateway")
    whoami.set_defaults(func=run_whoami)

    for p in (login, logout, whoami):
        p.add_argument(
            "--state-dir", default=None, help="default $KEEPTRUSTS_HOME or ~/.keeptrusts"
        )


def run_login(args: argparse.Namespace) -> int:
    state_dir = state_dir_of(args)
    try:
        url = normalize_url(args.gateway)
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    token = (args.token or "").strip()
    if args.token_stdin:
        token = sys.stdin.readline().strip()
    if not token:
        token = os.environ.get(ADMIN_TOKEN_ENV, "").strip()
    if not token:
        try:
            token = (state_dir / ADMIN_TOKEN_FILE).read_text().strip()
        except OSError:
            token = ""
    if not token and sys.stdin.isatty():
        token = getpass.getpass("admin token: ").strip()
    if not token:
        print("error: no admin token given (--token, --token-stdin or a prompt)", file=sys.stderr)
        return 1
    if not args.no_verify:
        try:
            cfg = AdminClient(url, token, timeout=10).get("/keeptrusts/config")
        except AdminError as exc:
            if exc.status in (401, 403):
                print(f"error: the gateway rejected the token ({exc})", file=sys.stderr)
                return 1
            print(f"warning: {exc}; saving the login anyway", file=sys.stderr)
        else:
            pack = cfg.get("pack", {}) if isinstance(cfg, dict) else {}
            print(
                f"gateway {url} accepted the token (pack {pack.get('name')}@{pack.get('version')})"
            )
    path = save_auth(state_dir, url, token)
    print(f"logged in to {url}; token {fingerprint(token)} saved in {path}")
    return 0


def run_logout(args: argparse.Namespace) -> int:
    path = state_dir_of(args) / AUTH_FILE
    try:
        path.unlink()
    except FileNotFoundError:
        print("not logged in")
        return 0
    print(f"logged out (removed {path})")
    return 0


def run_whoami(args: argparse.Namespace) -> int:
    saved = load_auth(state_dir_of(args))
    if saved is None:
        print("not logged in (kt events reads the local audit log)")
        return 1
    print(f"gateway: {saved['gateway']}")
    print(f"token:   {fingerprint(saved['token'])}")
    if args.offline:
        return 0
    try:
        AdminClient(saved["gateway"], saved["token"], timeout=10).get("/keeptrusts/config")
    except AdminError as exc:
        print(f"status:  {'token rejected' if exc.status in (401, 403) else 'unreachable'} ({exc})")
        return 1
    print("status:  ok")
    return 0
