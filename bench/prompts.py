"""The benchmark's prompt: ~50 words with a name, an email address and a phone number, and a
different one for every request.

The gateway's detector policies remember recent request texts (system prompts and earlier
turns of a chat come back with every request), so a benchmark repeating one prompt would
measure that memory, not the detectors. Request bodies are therefore templates: ``@@N@@``
and the other markers are filled per request with a counter that starts at a random value
in each load-generator process, by ``wrk.lua`` (from the names file) and by ``loadgen.py``
and the sanity check (``fill``). The system prompt stays the same, as in a real chat.
"""

from __future__ import annotations

import random
from pathlib import Path

SYSTEM = "You are a concise assistant."
# 51 words once filled in.
TEMPLATE = (
    "Hi, I am @@FIRST@@ @@LAST@@ from the platform team. Please send the summary to "
    "@@first@@.@@last@@@example.com or call me on +1 415 @@PHONE@@ tomorrow. Explain how "
    "Kubernetes schedules pods onto nodes, which resource requests matter most, and how "
    "taints, tolerations and affinity rules change placement in a busy cluster (ref @@N@@)."
)
FIRST = (
    "Maria", "James", "Aisha", "Wei", "Olga", "Mateo", "Priya", "Lukas", "Fatima", "Kenji",
    "Sofia", "Daniel", "Amara", "Ivan", "Chloe", "Rahul", "Elena", "Tomasz", "Grace", "Omar",
    "Ingrid", "Diego", "Hannah", "Yusuf", "Camille", "Noah", "Leila", "Marco", "Zanele", "Sean",
    "Anna", "Pedro", "Mei", "Oliver", "Nadia", "Erik", "Lucia", "Samuel", "Yara", "Viktor",
)  # fmt: skip
LAST = (
    "Gonzalez", "Smith", "Okafor", "Chen", "Petrova", "Rossi", "Sharma", "Becker", "Haddad",
    "Tanaka", "Silva", "Murphy", "Kowalski", "Johansson", "Nguyen", "Dubois", "Mensah", "Novak",
    "Fischer", "Costa", "Walker", "Yilmaz", "Andersen", "Moreau", "Kumar", "Ivanova", "Lopez",
    "Schmidt", "Hughes", "Bianchi", "Larsen", "Martins", "Nowak", "Romero", "Weber",
)  # fmt: skip


def values(n: int) -> dict[str, str]:
    """The markers' values for request number ``n`` (wrk.lua computes the same)."""
    first = FIRST[n % len(FIRST)]
    last = LAST[(n // len(FIRST)) % len(LAST)]
    return {
        "@@FIRST@@": first,
        "@@LAST@@": last,
        "@@first@@": first.lower(),
        "@@last@@": last.lower(),
        "@@PHONE@@": f"{200 + n % 800:03d} {n % 10000:04d}",
        "@@N@@": str(n),
    }


def fill(body: bytes, n: int) -> bytes:
    """``body`` with its markers filled in for request number ``n``."""
    for marker, value in values(n).items():
        body = body.replace(marker.encode(), value.encode())
    return body


def start() -> int:
    """A random first request number, so no two runs send the same prompts."""
    return random.randrange(1, 2**30)


def write_names(path: Path) -> Path:
    """The name lists for wrk.lua: first names on line 1, last names on line 2."""
    path.write_text(" ".join(FIRST) + "\n" + " ".join(LAST) + "\n")
    return path
