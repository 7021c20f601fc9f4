"""Helpers for the CLI tests: run ``kt`` in-process, and lint with every variable set."""

from __future__ import annotations

import pytest

from keeptrusts.cli.main import main


def kt(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``kt ARGV`` in this process; return (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err
