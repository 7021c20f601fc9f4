"""``prompt-injection``: score each request in [0, 1] and block (or log) above a threshold.

The detector (``detectors.injection``) normalises text (NFKC, zero-width and homoglyph
folding, embedded base64/hex/URL payloads) and runs a trained classifier. By default it
scans what untrusted parties write: user messages and tool results (indirect injection),
not the operator's system prompt.

``deep: true`` adds a second opinion (``detectors.injection.deep``: a MiniLM sentence
embedding and a classifier head trained on other public datasets) at ~80 times the cost;
it always runs off the event loop, in threads of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, NamedTuple

from pydantic import Field, model_validator

from keeptrusts.context import RequestContext
from keeptrusts.policies.base import Policy, PolicyConfig, PolicyEnv, Verdict
from keeptrusts.policies.offload import run_detector
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


def text_scores(texts: list[str]) -> list[float]:
    """The shipped model's score of each text (cached like :func:`max_scores`)."""
    return max_scores([([t],) for t in texts])


def deep_logits(texts: list[str], max_tokens: int) -> list[float | None]:
    """The deep head's logit of each text; earlier turns of a chat are not encoded again."""
    from keeptrusts.detectors.injection.deep import load_scorer

    known: dict[str, float | None] = {}
    todo: list[str] = []
    for t in texts:
        got = _RECENT_DEEP.get(f"{max_tokens}\x00{t}") if len(t) <= CACHE_MAX_CHARS else None
        if got is None:
            todo.append(t)
        else:  # NaN marks "not scanned (code)" in the float cache
            known[t] = None if got != got else got
    if todo:
        for t, r in zip(todo, load_scorer().score_many(todo, max_tokens), strict=True):
            known[t] = r.logit
            if len(t) <= CACHE_MAX_CHARS:
                logit = float("nan") if r.logit is None else r.logit
                _RECENT_DEEP.put(f"{max_tokens}\x00{t}", logit)
    return [known[t] for t in texts]


def blended_max(texts: list[str], shipped: list[float], deep: list[float | None]) -> float:
    """Each text's shipped and deep logits through the deep calibration (the shipped score
    alone for a text the deep layer does not read, i.e. code); the highest."""
    from keeptrusts.detectors.injection import InjectionDetector
    from keeptrusts.detectors.injection.deep import load_blend

    detector, blend = InjectionDetector.load(), load_blend()
    return max(
        (blend.text_score(detector, s, z) for s, z in zip(shipped, deep, strict=True)),
        default=0.0,
    )


def max_score_deep(texts: list[str], max_tokens: int) -> float:
    """:func:`max_score` with the deep layer, in one call (benchmarks, evaluation)."""
    return blended_max(texts, text_scores(texts), deep_logits(texts, max_tokens))


# Deep scans run in threads of their own (onnxruntime releases the GIL, so the event loop
# keeps running): one pool for prompts that fit in about one window, one for longer ones,
# so that a short prompt's scan never waits behind another request's long document.
DEEP_SHORT_CHARS = 1500
DEEP_TIMEOUT_S = 10.0
_DEEP_POOLS: dict[bool, ThreadPoolExecutor] = {}
_DEEP_POOLS_LOCK = threading.Lock()


# Long scans' threads also run at a lower priority, so that on a busy core a short prompt's
# scan (and the event loop) gets the CPU first.
LONG_SCAN_NICE = 10


def _lower_priority() -> None:
    with contextlib.suppress(AttributeError, OSError):  # per-thread nice is Linux-only
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LONG_SCAN_NICE)


def _deep_pool(short: bool) -> ThreadPoolExecutor:
    with _DEEP_POOLS_LOCK:
        pool = _DEEP_POOLS.get(short)
        if pool is None:
            pool = _DEEP_POOLS[short] = ThreadPoolExecutor(
                max_workers=2,
                thread_name_prefix="kt-deep-short" if short else "kt-deep-long",
                initializer=None if short else _lower_priority,
            )
        return pool


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
# The deep head's logits, by (max_tokens, text), short texts only, as above: a chat's
# earlier turns are not encoded again.
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
            # A long document's transformer pass takes ~0.5 s alone, longer when several
            # queue; past this the chain still applies --fail-mode (never a silent pass).
            self.timeout_s = DEEP_TIMEOUT_S
            # Load now: a missing or altered file stops the gateway at startup, not later.
            from keeptrusts.detectors.injection.deep import load_blend, load_scorer

            load_scorer()
            load_blend()

    async def on_request(self, ctx: RequestContext) -> Verdict:
        texts = [s.text for s in request_slots(ctx.body) if s.where in self.roles and s.text]
        size = sum(len(t) for t in texts)
        if self.deep_max_tokens and texts:
            # The shipped model as without the deep layer (inline when short, else off the
            # loop), and at the same time the deep head in its own threads.
            loop = asyncio.get_running_loop()
            shipped, deep = await asyncio.gather(
                run_detector(self.env, size, text_scores, texts),
                loop.run_in_executor(
                    _deep_pool(size <= DEEP_SHORT_CHARS), deep_logits, texts, self.deep_max_tokens
                ),
            )
            score = blended_max(texts, shipped, deep)
        else:
            score = await run_detector(self.env, size, max_score, texts, batch=max_scores)
        score = round(score, 4)
        if score < self.threshold:
            return Verdict.allow(score=score)
        message = f"{self.message} (score {score:.2f} >= {self.threshold})"
        if self.action == "log":
            return Verdict.log(message, reason_code="prompt_injection_detected", score=score)
        return Verdict.block(message, reason_code="prompt_injection_detected", score=score)
