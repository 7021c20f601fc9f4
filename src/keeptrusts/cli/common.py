"""Helpers shared by CLI commands."""

from __future__ import annotations

import os
from pathlib import Path


def default_state_dir() -> Path:
    """``KEEPTRUSTS_HOME`` if set, else ``~/.keeptrusts``."""
    home = os.environ.get("KEEPTRUSTS_HOME")
    return Path(home).expanduser() if home else Path.home() / ".keeptrusts"


def ensure_state_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:PORT`` for IPv6)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen must be HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)
