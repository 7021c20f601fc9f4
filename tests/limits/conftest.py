"""Fixtures for the limits tests: a real Redis (or a private one started on a free port),
a random key prefix per test with cleanup, and limiters on either backend."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from keeptrusts.limits import Limiter
from keeptrusts.limits.memory import MemoryBackend
from keeptrusts.limits.redis_backend import RedisBackend

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _reachable(url: str) -> bool:
    redis = pytest.importorskip("redis")

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        ok = bool(client.ping())
        client.close()
        return ok
    except Exception:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``$KEEPTRUSTS_TEST_REDIS_URL``, a Redis on 127.0.0.1:6379, or a private
    ``redis-server`` (no persistence); skips the Redis tests if none can be had."""
    url = os.environ.get("KEEPTRUSTS_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    if _reachable(url):
        yield url
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no Redis reachable and no redis-server binary")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not _reachable(url):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.skip("could not start redis-server")
        time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix no other test uses; every key under it is deleted afterwards."""
    import redis

    prefix = f"kt-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    # The start of a 60 s window, so tests reason in whole windows.
    return FakeClock(1_800_000_000.0 - 1_800_000_000.0 % 60)


@pytest.fixture(params=["memory", "redis"])
async def make_limiter(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Any]:
    """``make_limiter(limits_dict)`` -> a Limiter on the parametrized backend."""
    made: list[Limiter] = []
    prefix = None
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")

    def make(limits: dict[str, Any], **kwargs: Any) -> Limiter:
        limits = {**limits}
        if prefix is not None:
            limits.setdefault("key_prefix", prefix)
            limiter = Limiter.from_config(limits, url, env={}, clock=kwargs.get("clock", clock))
            assert isinstance(limiter.backend, RedisBackend)
        else:
            limiter = Limiter.from_config(limits, None, env={}, clock=kwargs.get("clock", clock))
            assert isinstance(limiter.backend, MemoryBackend)
        made.append(limiter)
        return limiter

    make.backend = request.param  # type: ignore[attr-defined]
    yield make
    for limiter in made:
        await limiter.close()
