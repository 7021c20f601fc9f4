"""Console sessions: a random id in an HttpOnly cookie, the rest on the server.

A session is created by posting the admin token to the login form; the token itself is never
stored in the browser or put in a URL. Sessions expire ``SESSION_TTL`` after login, end at
logout, and end as soon as the gateway's admin token changes. Each carries a CSRF token that
every POST form must send back (on top of the ``SameSite=Strict`` cookie).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

COOKIE = "kt_console"
LOGIN_COOKIE = "kt_console_login"  # binds the login form to the browser that loaded it
COOKIE_PATH = "/console"
SESSION_TTL = 12 * 3600.0
MAX_SESSIONS = 1000
# Failed logins per client address in LOGIN_WINDOW seconds before it must wait.
MAX_FAILURES = 10
LOGIN_WINDOW = 60.0


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


@dataclass(slots=True)
class Session:
    csrf: str
    created: float
    expires: float
    token_digest: bytes  # which admin token logged in (the session dies if it changes)
    remote: str | None = None


class Sessions:
    """The server-side session map (in memory: a restart logs everyone out)."""

    def __init__(
        self, *, ttl: float = SESSION_TTL, max_sessions: int = MAX_SESSIONS, clock=time.time
    ) -> None:  # type: ignore[no-untyped-def]
        self.ttl = ttl
        self.max_sessions = max_sessions
        self.clock = clock
        self._by_id: dict[bytes, Session] = {}  # keyed by sha256(session id)
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def create(self, token: str, remote: str | None = None) -> tuple[str, Session]:
        """A new session for whoever proved they hold ``token``; returns (cookie value, session)."""
        now = self.clock()
        sid = secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(32), now, now + self.ttl, _digest(token), remote)
        with self._lock:
            self._expire(now)
            while len(self._by_id) >= self.max_sessions:
                oldest = min(self._by_id, key=lambda k: self._by_id[k].created)
                del self._by_id[oldest]
            self._by_id[_digest(sid)] = session
        return sid, session

    def get(self, sid: str | None, token: str | None) -> Session | None:
        """The live session for cookie value ``sid``, if the admin token is still ``token``."""
        if not sid or not token:
            return None
        key = _digest(sid)
        with self._lock:
            session = self._by_id.get(key)
            if session is None:
                return None
            if self.clock() >= session.expires or not hmac.compare_digest(
                session.token_digest, _digest(token)
            ):
                del self._by_id[key]
                return None
            return session

    def drop(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._by_id.pop(_digest(sid), None)

    def __len__(self) -> int:
        return len(self._by_id)

    def _expire(self, now: float) -> None:
        for key in [k for k, s in self._by_id.items() if now >= s.expires]:
            del self._by_id[key]

    # -- login throttling -------------------------------------------------------------------

    def throttled(self, remote: str | None) -> bool:
        """True while ``remote`` has failed ``MAX_FAILURES`` times in the last minute."""
        now = self.clock()
        with self._lock:
            q = self._failures.get(remote or "")
            if not q:
                return False
            while q and now - q[0] > LOGIN_WINDOW:
                q.popleft()
            return len(q) >= MAX_FAILURES

    def failed(self, remote: str | None) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) > 10_000:  # bounded: forget the quiet ones
                for k in [k for k, q in self._failures.items() if not q or now - q[-1] > 60]:
                    del self._failures[k]
            q = self._failures.setdefault(remote or "", deque(maxlen=MAX_FAILURES))
            q.append(now)

    def succeeded(self, remote: str | None) -> None:
        with self._lock:
            self._failures.pop(remote or "", None)


def csrf_ok(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())
