"""Who is calling: a gateway key from ``Authorization``, cached in memory.

A bearer token that is not a gateway key (the seed's ``api_key="unused"``, or a provider
key meant for a target without its own secret) leaves the caller anonymous. A gateway key
is never forwarded upstream.
"""

from __future__ import annotations

import time

from keeptrusts.context import Identity, RequestContext
from keeptrusts.errors import GatewayError
from keeptrusts.identity.keys import KEY_PREFIX, KeyRecord, KeyStore, hash_key

# Revocations made with `kt keys revoke` take effect within this many seconds.
REFRESH_SECONDS = 1.0


class InvalidKey(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class Authenticator:
    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self._keys: dict[str, KeyRecord] = store.active()
        self._version = store.version()
        self._checked = time.monotonic()

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < REFRESH_SECONDS:
            return
        self._checked = now
        version = self.store.version()
        if version != self._version:
            self._version = version
            self._keys = self.store.active()

    def authenticate(self, ctx: RequestContext) -> None:
        auth = ctx.client_auth
        if not auth:
            return
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else auth.strip()
        if not token.startswith(KEY_PREFIX):
            return
        # Never forward a gateway key upstream, valid or not.
        ctx.client_auth = None
        self._refresh()
        rec = self._keys.get(hash_key(token))
        if rec is None:
            raise InvalidKey(
                "The gateway key is not valid or has been revoked. Create one with "
                "`kt keys create --role ROLE`."
            )
        ctx.identity = Identity(key_id=rec.id, name=rec.name, role=rec.role, source="key")
