"""The detector seam: detectors find, policies decide.

A detector looks at one piece of text and reports what it found, with a score. It never
redacts, blocks or logs: the policy that calls it owns the action, and the engine
(``DetectorRegistry.analyze``) owns thresholds and de-duplication, as in Presidio.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Finding:
    """One match: ``text[start:end]`` is an ``entity`` with confidence ``score`` in [0, 1]."""

    entity: str
    start: int
    end: int
    score: float
    detector: str
