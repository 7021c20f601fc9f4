"""``prompt-injection``: score each request in [0, 1] and block (or log) above a threshold.

The detector (``detectors.injection``) normalises text (NFKC, zero-width and homoglyph
folding, embedded base64/hex/URL payloads) and runs a trained classifier. By default it
scans what untrusted parties write: user messages and tool results (indirect injection),
not the operator's system prompt.

``deep: true`` adds a second opinion (``detectors.injection.deep``: a MiniLM sentence
embedding and a classifier head trained on other public datasets) at about ten times the
cost; its scan always runs off the event loop.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Literal, NamedTuple

from pydantic import Field, model_validator

from keeptrusts.context import RequestContext
from keeptrusts.policies.base import Policy, PolicyConfig, PolicyEnv, Verdict
from keeptrusts.policies.offload import INLINE_MAX_CHARS, run_detector
from keeptrusts.policies.registry import register
from keeptrusts.policies.text import request_slots

DEFAULT_MESSAGE = "Request blocked: potential prompt injection detected"


class ResponseConfig(PolicyConfig):
    action: Literal["block", "log"] = "block"
    message: str = DEFAULT_MESSAGE


class PromptInjectionConfig(PolicyConfig):
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    # Canonical spelling of `threshold`.
    embedding_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    action: Literal["block", "log"] | None = None
    response: ResponseConfig | None = None
    scan_roles: list[
        Literal["system", "developer", "user", "assistant", "tool", "tool_call_arguments"]
    ] = Field(default_factory=lambda: ["user", "tool"])
    # Optional transformer layer (pip install 'keeptrusts[deep]'); off by default.
    deep: bool = False
    # Tokens of each text the deep layer reads (the shipped model always reads all of it).
    deep_max_tokens: int = Field(default=1024, ge=1, le=65536)

    @model_validator(mode="after")
    def _one_spelling(self) -> PromptInjectionConfig:
        if self.deep:
            from keeptrusts.detectors.injection.deep import DeepUnavailable, check_installed

            try:
                check_installed()
            except DeepUnavailable as exc:
                raise ValueError(str(exc)) from None
        both = self.threshold is not None and self.embedding_threshold is not None
        if both and self.threshold != self.embedding_threshold:
            raise ValueError("set threshold or embedding_threshold, not both")
        if self.action and self.response and self.action != self.response.action:
            raise ValueError("action and response.action disagree")
        return self

    @property
    def effective_threshold(self) -> float:
        return next((t for t in (self.threshold, self.embedding_threshold) if t is not None), 0.8)

    @property
    def effective_action(self) -> str:
        return self.action or (self.response.action if self.response else "block")


def max_score(texts: list[str]) -> float:
    """The highest injection score of ``texts``; a module-level function of plain values so
    that a long request can be scored in the scan process (``policies.offload``)."""
    return max_scores([(texts,)])[0]


def max_scores(calls: list[tuple[list[str]]]) -> list[float]:
    """:func:`max_score` of several requests' texts (``(texts,)`` each, as passed to
    ``run_detector``): the texts not remembered are scored in one batch."""
    from keeptrusts.detectors.injection import InjectionDetector

    detector = InjectionDetector.load()  # one per process, loaded once
    known: dict[str, float] = {}
    todo: list[str] = []
    for (texts,) in calls:
        for t in texts:
            if t in known:
                continue
            got = _RECENT.get(t) if len(t) <= CACHE_MAX_CHARS else None
            if got is None:
                known[t] = -1.0
                todo.append(t)
            else:
                known[t] = got
    if todo:
        # One text alone takes the per-text path: the batch's bookkeeping costs more.
        scores = detector.score_many(todo) if len(todo) > 1 else [detector.score(todo[0])]
        for t, score in zip(todo, scores, strict=True):
            known[t] = score
            if len(t) <= CACHE_MAX_CHARS:
                _RECENT.put(t, score)
    return [max((known[t] for t in texts), default=0.0) for (texts,) in calls]


def max_score_deep(texts: list[str], max_tokens: int) -> float:
    """:func:`max_score` with the deep layer: each text's shipped logit plus the deep
    head's, through the deep calibration; the highest of the texts."""
    from keeptrusts.detectors.injection import InjectionDetector
    from keeptrusts.detectors.injection.deep import load_blend, load_scorer

    if not texts:
        return 0.0
    detector = InjectionDetector.load()
    shipped = max_scores([([t],) for t in texts])
    todo = [t for t in texts if _RECENT_DEEP.get(_deep_key(t, max_tokens)) is None]
    if todo:
        for t, r in zip(todo, load_scorer().score_many(todo, max_tokens), strict=True):
            _RECENT_DEEP.put(_deep_key(t, max_tokens), r.logit)
    blend = load_blend()
    scores = []
    for t, s in zip(texts, shipped, strict=True):
        got = _RECENT_DEEP.get(_deep_key(t, max_tokens))
        assert got is not None
        scores.append(blend.score(detector.uncalibrated(s), got))
    return max(scores)


def _deep_key(text: str, max_tokens: int) -> str:
    return f"{max_tokens}\x00{text}"


# Scores by exact text, per process: a chat sends its earlier turns again with every
# request (the answer does not change, so neither does their score). Only short texts are
# kept, which bounds the memory to a few MB.
CACHE_ENTRIES = 1024
CACHE_MAX_CHARS = 2000


class CacheInfo(NamedTuple):
    hits: int
    misses: int
    currsize: int


class _RecentScores:
    """Least-recently-used scores by text (``functools.lru_cache`` cannot be asked which
    texts it lacks, and those are what a batch scores). Locked: a long request's scan may
    run in a thread while the event loop scores short ones."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._scores: OrderedDict[str, float] = OrderedDict()
        self._hits = self._misses = 0
        self._lock = threading.Lock()

    def get(self, text: str) -> float | None:
        with self._lock:
            score = self._scores.get(text)
            if score is None:
                self._misses += 1
            else:
                self._hits += 1
                self._scores.move_to_end(text)
            return score

    def put(self, text: str, score: float) -> None:
        with self._lock:
            self._scores[text] = score
            self._scores.move_to_end(text)
            while len(self._scores) > self._size:
                self._scores.popitem(last=False)

    def cache_info(self) -> CacheInfo:
        return CacheInfo(self._hits, self._misses, len(self._scores))


_RECENT = _RecentScores(CACHE_ENTRIES)
# The deep head's logits, by (max_tokens, text): a chat's earlier turns are not re-encoded.
_RECENT_DEEP = _RecentScores(CACHE_ENTRIES)


@register("prompt-injection")
class PromptInjection(Policy):
    Config = PromptInjectionConfig
    phases = frozenset({"input"})

    def __init__(self, config: PromptInjectionConfig, env: PolicyEnv) -> None:
        super().__init__(config, env)
        from keeptrusts.detectors.injection import InjectionDetector

        self.detector = InjectionDetector.load()
        self.threshold = config.effective_threshold
        self.action = config.effective_action
        self.message = config.response.message if config.response else DEFAULT_MESSAGE
        self.roles = frozenset(config.scan_roles)
        self.deep_max_tokens = config.deep_max_tokens if config.deep else 0
        if config.deep:
            # Load now: a missing or altered file stops the gateway at startup, not later.
            from keeptrusts.detectors.injection.deep import load_blend, load_scorer

            load_scorer()
            load_blend()

    async def on_request(self, ctx: RequestContext) -> Verdict:
        texts = [s.text for s in request_slots(ctx.body) if s.where in self.roles and s.text]
        size = sum(len(t) for t in texts)
        if self.deep_max_tokens:
            # A transformer pass is never short work: always off the event loop.
            size = max(size, INLINE_MAX_CHARS + 1)
            score = await run_detector(self.env, size, max_score_deep, texts, self.deep_max_tokens)
        else:
            score = await run_detector(self.env, size, max_score, texts, batch=max_scores)
        score = round(score, 4)
        if score < self.threshold:
            return Verdict.allow(score=score)
        message = f"{self.message} (score {score:.2f} >= {self.threshold})"
        if self.action == "log":
            return Verdict.log(message, reason_code="prompt_injection_detected", score=score)
        return Verdict.block(message, reason_code="prompt_injection_detected", score=score)
