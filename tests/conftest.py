"""Shared fixtures: a fake upstream provider and real gateway processes (``kt gateway run``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
EXAMPLES = SHARED / "examples"
FAKE_KEYS = {
    "OPENAI_API_KEY": "sk-test-openai-secret-0000",
    "ANTHROPIC_API_KEY": "sk-ant-test-secret-1111",
    "GROQ_API_KEY": "gsk_test_secret_2222",
    "MISTRAL_API_KEY": "mistral-test-secret-3333",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class GatewayProcess:
    url: str
    proc: subprocess.Popen
    state_dir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def admin_headers(self) -> dict[str, str]:
        """The admin API's bearer header, from the token the gateway wrote at start."""
        token = (self.state_dir / "admin-token").read_text().strip()
        return {"authorization": f"Bearer {token}"}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = 2, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def base_url_overlay(tmp: Path, config: Path, url: str) -> Path:
    """An overlay that points every target of ``config`` at the fake provider."""
    doc = yaml.safe_load(config.read_text())
    targets = []
    for t in doc["providers"]["targets"]:
        provider = t["provider"].split(":")[0].split("/")[0]
        base = url if provider == "anthropic" else url + "/v1"
        targets.append({"id": t["id"], "base_url": base})
    return write_yaml(tmp / f"overlay-{config.stem}.yaml", {"providers": {"targets": targets}})


def start_gateway(
    tmp: Path,
    configs: list[Path],
    *,
    env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
    state_dir: Path | None = None,
    wait: bool = True,
) -> GatewayProcess:
    port = free_port()
    state = state_dir or (tmp / "state")
    log_path = tmp / f"gateway-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    full_env.update(env if env is not None else FAKE_KEYS)
    full_env["PYTHONUNBUFFERED"] = "1"
    cmd = [sys.executable, "-m", "keeptrusts.cli.main", "gateway", "run"]
    cmd += ["--listen", f"127.0.0.1:{port}", "--state-dir", str(state)]
    for c in configs:
        cmd += ["--policy-config", str(c)]
    cmd += extra_args or []
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    gw = GatewayProcess(f"http://127.0.0.1:{port}", proc, state, log_path, full_env)
    if wait:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited {proc.returncode}:\n{gw.log()}")
            try:
                if httpx.get(gw.url + "/health", timeout=1).status_code == 200:
                    return gw
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        gw.stop()
        raise RuntimeError(f"gateway did not become healthy:\n{gw.log()}")
    return gw


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator:
    started: list[GatewayProcess] = []

    def factory(configs: list[Path], **kwargs) -> GatewayProcess:  # type: ignore[no-untyped-def]
        gw = start_gateway(tmp_path, configs, **kwargs)
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        gw.stop()


@pytest.fixture(scope="session")
def fake():  # type: ignore[no-untyped-def]
    from tests.fakeprovider import FakeProvider

    fp = FakeProvider()
    fp.start()
    yield fp
    fp.stop()


@pytest.fixture
def fp(fake):  # type: ignore[no-untyped-def]
    fake.reset()
    return fake
