"""The migration report: every LiteLLM setting that was dropped, changed, or needs a step.

A line names where the setting was (``model_list[2].litellm_params.rpm``) and says why.
Lines never carry a secret's value: a literal key is described, never quoted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Kind = Literal["dropped", "changed", "action"]

_HEADINGS: dict[str, str] = {
    "dropped": "Not carried over (no equivalent in this gateway)",
    "changed": "Carried over with a difference",
    "action": "Needs a step from you",
}


@dataclass(frozen=True, slots=True)
class Note:
    kind: Kind
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


@dataclass(slots=True)
class Report:
    notes: list[Note] = field(default_factory=list)

    def dropped(self, where: str, message: str) -> None:
        self._add("dropped", where, message)

    def changed(self, where: str, message: str) -> None:
        self._add("changed", where, message)

    def action(self, where: str, message: str) -> None:
        self._add("action", where, message)

    def _add(self, kind: Kind, where: str, message: str) -> None:
        note = Note(kind, where, message)
        if note not in self.notes:  # the same setting seen twice reports once
            self.notes.append(note)

    def of(self, kind: Kind) -> list[Note]:
        return [n for n in self.notes if n.kind == kind]

    def render(self) -> str:
        """The report for people, grouped by kind; empty sections left out."""
        out: list[str] = []
        for kind, heading in _HEADINGS.items():
            notes = self.of(kind)  # type: ignore[arg-type]
            if notes:
                out.append(f"{heading} ({len(notes)}):")
                out.extend(f"  - {n}" for n in notes)
        return "\n".join(out) if out else "Everything was carried over."

    def to_dict(self) -> list[dict[str, Any]]:
        return [asdict(n) for n in self.notes]
