"""``pii-detector``: find PII (Presidio entity names) and redact it with typed markers, or block.

Markers are consistent within a request: the same person is ``[PERSON_1]`` everywhere in it.
With ``restore: true`` the model sees markers and the client's answer gets the original
values back; the mapping lives in the request's own context and dies with it.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from keeptrusts.context import RequestContext
from keeptrusts.policies.base import ALLOW, Policy, PolicyConfig, PolicyEnv, Verdict
from keeptrusts.policies.matching import HoldBackFilter, Match, Rule, apply, compile_re2
from keeptrusts.policies.offload import run_detector
from keeptrusts.policies.registry import register
from keeptrusts.policies.text import TextSlot, request_slots, response_slots

if TYPE_CHECKING:
    from keeptrusts.detectors.pii import PiiAnalyzer

DEFAULT_ENTITIES = [
    "PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS",
]  # fmt: skip
# Long enough for an email address or an IBAN written with spaces to be seen whole.
DEFAULT_STREAM_HOLD = 80
_MARKER = re.compile(r"\[([A-Z][A-Z0-9_]*)_(\d+)\]")


class CustomPattern(PolicyConfig):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    regex: str = Field(min_length=1)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str) -> str:
        compile_re2(v)
        return v


class PiiDetectorConfig(PolicyConfig):
    action: Literal["redact", "block"] = "redact"
    entities: list[str] = Field(default_factory=lambda: list(DEFAULT_ENTITIES))
    thresholds: dict[str, float] = Field(default_factory=dict)
    detect_patterns: list[str | CustomPattern] = Field(default_factory=list)
    restore: bool = False
    apply_to: list[Literal["input", "output"]] = Field(default_factory=lambda: ["input", "output"])
    stream_hold_chars: int = Field(default=DEFAULT_STREAM_HOLD, ge=16, le=4096)

    @field_validator("entities")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        from keeptrusts.detectors.pii import supported_entities

        supported = supported_entities()
        unknown = [e for e in v if e not in supported]
        if unknown:
            raise ValueError(f"unknown entities {unknown}; supported: {', '.join(supported)}")
        return v

    @field_validator("detect_patterns")
    @classmethod
    def _patterns_compile(cls, v: list[Any]) -> list[Any]:
        for p in v:
            if isinstance(p, str):
                compile_re2(p)
        return v

    @model_validator(mode="after")
    def _thresholds_known(self) -> PiiDetectorConfig:
        names = set(self.entities) | {p for p, _ in self.custom_patterns()}
        for entity, value in self.thresholds.items():
            if entity not in names:
                raise ValueError(f"threshold for {entity!r}, which is not configured")
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"threshold for {entity!r} must be within [0, 1]")
        return self

    def custom_patterns(self) -> list[tuple[str, str]]:
        out = []
        for i, p in enumerate(self.detect_patterns):
            if isinstance(p, str):
                out.append((f"CUSTOM_{i + 1}", p))
            else:
                out.append((p.name.upper(), p.regex))
        return out


class Markers:
    """The per-request mapping between values and their typed markers."""

    def __init__(self) -> None:
        self.by_value: dict[tuple[str, str], str] = {}
        self.originals: dict[str, str] = {}
        self.counters: dict[str, int] = {}

    def marker(self, entity: str, value: str, *, restorable: bool) -> str:
        key = (entity, " ".join(value.split()).casefold())
        found = self.by_value.get(key)
        if found is None:
            n = self.counters.get(entity, 0) + 1
            self.counters[entity] = n
            found = f"[{entity}_{n}]"
            self.by_value[key] = found
            if restorable:
                self.originals[found] = value
        return found


def _counts(matches: list[Match]) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in matches:
        out[m.rule.name] = out.get(m.rule.name, 0) + 1
    return out


def _values(texts: list[str], found: list[list[Match]]) -> dict[str, Rule]:
    """Values found anywhere in the request, by case-folded text, with their entity rule."""
    out: dict[str, Rule] = {}
    for text, matches in zip(texts, found, strict=True):
        for m in matches:
            value = text[m.start : m.end]
            if len(value) >= 3:
                out.setdefault(value.casefold(), m.rule)
    return out


def _with_repeats(text: str, matches: list[Match], values: dict[str, Rule]) -> list[Match]:
    """Add other occurrences of already-found values (e.g. a name repeated in lower case)."""
    folded = text.casefold()
    if len(folded) != len(text):  # case folding changed offsets; keep what we have
        return matches
    # What is taken so far, as disjoint intervals in order (``starts[i]``..``ends[i]``), so
    # that whether a span is free is two comparisons, not a pass over every finding.
    starts: list[int] = []
    ends: list[int] = []
    for s, e in sorted((m.start, m.end) for m in matches):
        if ends and s <= ends[-1]:
            ends[-1] = max(ends[-1], e)
        else:
            starts.append(s)
            ends.append(e)
    extra: list[Match] = []
    for value, rule in values.items():
        start = folded.find(value)
        while start != -1:
            end = start + len(value)
            boundary = (start == 0 or not folded[start - 1].isalnum()) and (
                end == len(folded) or not folded[end].isalnum()
            )
            if boundary:
                i = bisect_right(starts, start)
                if (i == 0 or ends[i - 1] <= start) and (i == len(starts) or end <= starts[i]):
                    extra.append(Match(rule, start, end))
                    starts.insert(i, start)
                    ends.insert(i, end)
            start = folded.find(value, end)
    return sorted([*matches, *extra], key=lambda m: m.start) if extra else matches


# (entities, thresholds, custom patterns): what an analyzer is built from.
AnalyzerSpec = tuple[tuple[str, ...], tuple[tuple[str, float], ...], tuple[tuple[str, str], ...]]
# One analyzer per spec in each process (the gateway's and its scan process).
_ANALYZERS: dict[AnalyzerSpec, PiiAnalyzer] = {}
_MAX_ANALYZERS = 16  # configs seen across reloads; the oldest is dropped


def _analyzer(spec: AnalyzerSpec) -> PiiAnalyzer:
    analyzer = _ANALYZERS.get(spec)
    if analyzer is None:
        from keeptrusts.detectors.pii import PiiAnalyzer

        entities, thresholds, patterns = spec
        analyzer = PiiAnalyzer(
            entities=list(entities), thresholds=dict(thresholds), extra_patterns=list(patterns)
        )
        while len(_ANALYZERS) >= _MAX_ANALYZERS:
            _ANALYZERS.pop(next(iter(_ANALYZERS)))
        _ANALYZERS[spec] = analyzer
    return analyzer


def find_pii(
    spec: AnalyzerSpec, texts: list[str], cache: bool = False
) -> list[list[tuple[str, int, int]]]:
    """``(entity, start, end)`` per text, plus every other occurrence of a value found in any
    of the texts (e.g. a name repeated in lower case). ``cache``: the texts are a request's,
    whose system prompt and earlier turns come back with the next request.

    All of it is CPU work that grows with the text (the repeats with the findings too), so
    for long texts all of it runs off the event loop: in the scan process or a thread
    (``policies.offload``), which is why it is a module-level function of plain values.
    """
    analyzer = _analyzer(spec)
    rules: dict[str, Rule] = {}

    def rule(entity: str) -> Rule:
        r = rules.get(entity)
        if r is None:
            r = rules[entity] = Rule(entity, None, "redact")
        return r

    found = [
        [Match(rule(f.entity), f.start, f.end) for f in analyzer.analyze(t, cache=cache)]
        for t in texts
    ]
    if every_value := _values(texts, found):
        found = [_with_repeats(t, ms, every_value) for t, ms in zip(texts, found, strict=True)]
    return [[(m.rule.name, m.start, m.end) for m in ms] for ms in found]


@register("pii-detector")
class PiiDetector(Policy):
    Config = PiiDetectorConfig

    def __init__(self, config: PiiDetectorConfig, env: PolicyEnv) -> None:
        super().__init__(config, env)
        self.config: PiiDetectorConfig = config
        self.spec: AnalyzerSpec = (
            tuple(config.entities),
            tuple(sorted(config.thresholds.items())),
            tuple(config.custom_patterns()),
        )
        self.analyzer = _analyzer(self.spec)
        self._rules: dict[str, Rule] = {}
        self._restore_rule = Rule("restore", None, "redact")
        self.phases = frozenset(config.apply_to)

    def _rule(self, entity: str) -> Rule:
        rule = self._rules.get(entity)
        if rule is None:
            rule = self._rules[entity] = Rule(entity, None, self.config.action)
        return rule

    def _scan(self, text: str) -> list[Match]:
        return [Match(self._rule(f.entity), f.start, f.end) for f in self.analyzer.analyze(text)]

    def _markers(self, ctx: RequestContext) -> Markers:
        markers = ctx.state.get("pii")
        if markers is None:
            markers = ctx.state["pii"] = Markers()
        return markers

    def _block(self, matches: list[Match]) -> Verdict:
        kinds = ", ".join(sorted({m.rule.name for m in matches}))
        return Verdict.block(
            f"Blocked by pii-detector: found {kinds}",
            reason_code="pii_detected",
            findings=_counts(matches),
        )

    async def _check(
        self, ctx: RequestContext, slots: list[TextSlot], *, restorable: bool, cache: bool
    ) -> tuple[list[Match], Verdict | None]:
        texts = [s.text for s in slots]
        size = sum(len(t) for t in texts)
        found = [
            [Match(self._rule(entity), start, end) for entity, start, end in spans]
            for spans in await run_detector(self.env, size, find_pii, self.spec, texts, cache)
        ]
        every = [m for ms in found for m in ms]
        if not every:
            return every, None
        if self.config.action == "block":
            return every, self._block(every)
        markers = self._markers(ctx)
        for slot, matches in zip(slots, found, strict=True):
            if matches:
                text = slot.text
                slot.text = apply(
                    text,
                    matches,
                    lambda m, t=text: markers.marker(
                        m.rule.name, t[m.start : m.end], restorable=restorable
                    ),
                )
        return every, Verdict.redact(_counts(every), reason_code="pii_detected")

    async def on_request(self, ctx: RequestContext) -> Verdict:
        # A request's texts repeat (system prompt, earlier turns); a fresh answer does not.
        _, verdict = await self._check(
            ctx, request_slots(ctx.body), restorable=self.config.restore, cache=True
        )
        return verdict or ALLOW

    async def on_response(self, ctx: RequestContext, response: dict[str, Any]) -> Verdict:
        slots = response_slots(response)
        _, verdict = await self._check(ctx, slots, restorable=False, cache=False)
        if self.config.restore:
            originals = self._markers(ctx).originals
            for slot in slots:
                if originals and "[" in slot.text:
                    slot.text = _MARKER.sub(
                        lambda m: originals.get(m.group(0), m.group(0)), slot.text
                    )
        return verdict or ALLOW

    def stream_filter(self, ctx: RequestContext) -> HoldBackFilter:
        markers = self._markers(ctx)
        restore = self.config.restore

        def scan(text: str) -> list[Match]:
            found = self._scan(text)
            if restore and markers.originals:
                taken = [(m.start, m.end) for m in found]
                for mm in _MARKER.finditer(text):
                    if mm.group(0) in markers.originals and not any(
                        s < mm.end() and mm.start() < e for s, e in taken
                    ):
                        found.append(Match(self._restore_rule, mm.start(), mm.end()))
                found.sort(key=lambda m: m.start)
            return found

        def decide(matches: list[Match]) -> Verdict | None:
            real = [m for m in matches if m.rule is not self._restore_rule]
            return self._block(real) if real and self.config.action == "block" else None

        def rewrite(text: str, matches: list[Match]) -> str:
            def marker(m: Match) -> str:
                value = text[m.start : m.end]
                if m.rule is self._restore_rule:
                    return markers.originals[value]
                return markers.marker(m.rule.name, value, restorable=False)

            return apply(text, matches, marker)

        def redacted(matches: list[Match]) -> Verdict:
            real = [m for m in matches if m.rule is not self._restore_rule]
            return Verdict.redact(_counts(real), reason_code="pii_detected") if real else ALLOW

        # A marker split across chunks ("[PERS" + "ON_1]") must be held until complete.
        return HoldBackFilter(scan, decide, rewrite, redacted, self.config.stream_hold_chars)
