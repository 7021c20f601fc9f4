"""LiteLLM guardrails as this gateway's policies.

Both spellings are read: the ``guardrails:`` list (``guardrail: presidio``, ``lakera_v2``,
``litellm_content_filter``, ...) and the older ``litellm_settings`` callbacks
(``callbacks: [detect_prompt_injection, presidio, banned_keywords, hide_secrets]``). Each
kind folds into one policy block, since a policy appears once in the chain:

* Presidio and PII masking   -> ``pii-detector`` (entities, MASK/BLOCK, restore)
* prompt-injection detectors -> ``prompt-injection`` (the built-in classifier)
* content filters, keywords  -> ``dlp-filter`` (RE2 patterns, ``blocked_terms``)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keeptrusts.migrate.report import Report

# Content-filter prebuilt patterns (and Presidio entities a regex can stand in for), written
# for RE2: no lookaround, linear time.
_CARD = {
    "visa": r"\b4\d{3}[\s-]?\d{4}[\s-]?\d{4}[\s-]?\d{4}\b",
    "mastercard": r"\b5[1-5]\d{2}[\s-]?\d{4}[\s-]?\d{4}[\s-]?\d{4}\b",
    "amex": r"\b3[47]\d{2}[\s-]?\d{6}[\s-]?\d{5}\b",
    "discover": r"\b6(?:011|5\d{2})[\s-]?\d{4}[\s-]?\d{4}[\s-]?\d{4}\b",
}
PREBUILT: dict[str, str] = {
    "us_ssn": r"\b\d{3}-\d{2}-\d{4}\b",
    "email": r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b",
    "us_phone": r"\b(?:\+?1[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}\b",
    **_CARD,
    "credit_card": "(?:" + "|".join(_CARD.values()) + ")",
    "aws_access_key": r"\bAKIA[0-9A-Z]{16}\b",
    "github_token": r"\bgh[pousr]_[A-Za-z0-9]{36}\b",
    "slack_token": r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",
    "generic_api_key": r"(?i)\bapi[-_]?key\b\s*[:=]\s*['\"]?[A-Za-z0-9_\-]{20,}",
    "ipv4": r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b",
    "url": r"\bhttps?://[^\s]+",
}
# Presidio entities with a regex stand-in, for BLOCK entities next to MASK ones.
ENTITY_REGEX: dict[str, str] = {
    "US_SSN": PREBUILT["us_ssn"],
    "EMAIL_ADDRESS": PREBUILT["email"],
    "CREDIT_CARD": PREBUILT["credit_card"],
    "IP_ADDRESS": PREBUILT["ipv4"],
    "IBAN_CODE": r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,4})?\b",
}
# What LiteLLM's hide_secrets guardrail masks, as far as a few patterns can.
SECRETS: dict[str, str] = {
    "openai-key": r"\bsk-[A-Za-z0-9_-]{20,}",
    "aws-access-key": PREBUILT["aws_access_key"],
    "github-token": PREBUILT["github_token"],
    "slack-token": PREBUILT["slack_token"],
    "private-key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    "api-key-assignment": PREBUILT["generic_api_key"],
}

INJECTION_GUARDRAILS = {
    "lakera": "Lakera Guard",
    "lakera_v2": "Lakera Guard",
    "lakera_prompt_injection": "Lakera Guard",
    "azure/prompt_shield": "Azure Prompt Shield",
    "aim": "Aim Security",
    "prompt_injection": "LiteLLM prompt-injection detection",
    "detect_prompt_injection": "LiteLLM prompt-injection detection",
}
PII_GUARDRAILS = {"presidio", "pii_masking", "presidio_pii"}
CONTENT_FILTERS = {"litellm_content_filter", "content_filter"}
SECRET_GUARDRAILS = {"hide-secrets", "hide_secrets"}
KEYWORD_GUARDRAILS = {"banned_keywords", "banned-keywords"}
# Callbacks that only log or meter; the audit log and /metrics replace them.
LOGGING_CALLBACKS = {
    "langfuse", "langsmith", "datadog", "prometheus", "otel", "opentelemetry", "s3", "gcs_bucket",
    "lunary", "helicone", "mlflow", "arize", "braintrust", "sentry", "slack", "posthog",
    "openmeter", "dynamodb", "athina", "logfire", "traceloop", "wandb", "supabase",
    "custom_callback_api", "generic_api", "greenscale", "literalai", "opik", "humanloop",
    "azure_storage", "cloudzero",
}  # fmt: skip


def _modes(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, Mapping):  # {tags: {...}, default: pre_call}
        return _modes(value.get("default", "pre_call"))
    return ["pre_call"]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "pattern"


def _term_regex(term: str) -> str:
    escaped = re.escape(term)
    left = r"\b" if term[:1].isalnum() else ""
    right = r"\b" if term[-1:].isalnum() else ""
    return f"(?i){left}{escaped}{right}"


@dataclass(slots=True)
class _Pii:
    actions: dict[str, str] = field(default_factory=dict)  # entity -> MASK | BLOCK
    all_entities: bool = False  # a guardrail with no pii_entities_config: every entity
    phases: set[str] = field(default_factory=set)
    restore: bool = False
    thresholds: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class _Injection:
    action: str = "block"
    threshold: float = 0.8


class GuardrailConverter:
    """Folds every guardrail seen into at most one block per policy."""

    def __init__(self, report: Report, base_dir: Path | None = None) -> None:
        self.report = report
        self.base_dir = base_dir
        self.pii: _Pii | None = None
        self.injection: _Injection | None = None
        self.patterns: list[dict[str, Any]] = []
        self.blocked_terms: list[str] = []

    # -- entry points ------------------------------------------------------------------------

    def guardrail(self, where: str, entry: Mapping[str, Any]) -> None:
        """One item of the ``guardrails:`` list."""
        params = entry.get("litellm_params")
        params = params if isinstance(params, Mapping) else {}
        kind = str(params.get("guardrail") or entry.get("guardrail") or "").strip()
        name = entry.get("guardrail_name") or kind or "guardrail"
        here = f"{where} ({name})"
        modes = _modes(params.get("mode", entry.get("mode", "pre_call")))
        if params.get("default_on", entry.get("default_on")) is False:
            self.report.changed(
                here,
                "default_on: false (runs only when a request or key asks for it) has no "
                "equivalent: the policy now runs on every request",
            )
        known = PII_GUARDRAILS | set(INJECTION_GUARDRAILS) | CONTENT_FILTERS | SECRET_GUARDRAILS
        for key in ("api_key", "api_base"):
            if kind in known and params.get(key) is not None:
                self.report.changed(
                    f"{here}.{key}", "not needed: the check runs inside the gateway, no service"
                )
        if kind in PII_GUARDRAILS:
            self.presidio(here, params, modes)
        elif kind in INJECTION_GUARDRAILS:
            self.prompt_injection(here, INJECTION_GUARDRAILS[kind], params, modes)
        elif kind in CONTENT_FILTERS:
            self.content_filter(here, params, modes)
        elif kind in SECRET_GUARDRAILS:
            self.hide_secrets(here)
        elif kind in KEYWORD_GUARDRAILS:
            self.banned_keywords(here, params.get("banned_keywords_list") or params.get("keywords"))
        elif "." in kind:
            self.report.dropped(
                here,
                f"custom guardrail class {kind!r} is Python code for LiteLLM; port it as a "
                "policy plugin (KEEPTRUSTS_POLICY_MODULES) and add it to policies.chain",
            )
        else:
            self.report.dropped(
                here,
                f"guardrail {kind or '(none)'!r} has no equivalent policy in this gateway "
                "(built in: prompt-injection, pii-detector, dlp-filter, rbac)",
            )

    def callbacks(self, where: str, names: Iterable[Any], settings: Mapping[str, Any]) -> None:
        """``litellm_settings.callbacks`` and friends: guardrails and loggers by name."""
        for i, raw in enumerate(names):
            name = str(raw)
            here = f"{where}[{i}] ({name})"
            if name == "presidio":
                params = {
                    "output_parse_pii": settings.get("output_parse_pii"),
                    "presidio_ad_hoc_recognizers": settings.get("presidio_ad_hoc_recognizers"),
                }
                self.presidio(here, params, ["pre_call"])
            elif name in ("detect_prompt_injection", "lakera_prompt_injection"):
                self.prompt_injection(here, INJECTION_GUARDRAILS[name], {}, ["pre_call"])
                pip = settings.get("prompt_injection_params")
                if isinstance(pip, Mapping):
                    self._injection_params("litellm_settings.prompt_injection_params", pip)
            elif name == "banned_keywords":
                self.banned_keywords(
                    "litellm_settings.banned_keywords_list", settings.get("banned_keywords_list")
                )
            elif name == "hide_secrets":
                self.hide_secrets(here)
            elif name.lower() in LOGGING_CALLBACKS:
                self.report.dropped(
                    here,
                    "logging/metering callback: every request is in the audit log instead "
                    "(kt events list/export) and metrics are at GET /metrics",
                )
            else:
                self.report.dropped(here, f"callback {name!r} has no equivalent in this gateway")

    def v1_guardrails(self, where: str, items: Any, settings: Mapping[str, Any]) -> None:
        """``litellm_settings.guardrails: [{name: {callbacks: [...], default_on}}]``."""
        if not isinstance(items, list):
            return
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                continue
            for gname, spec in item.items():
                spec = spec if isinstance(spec, Mapping) else {}
                here = f"{where}[{i}].{gname}"
                if spec.get("default_on") is False:
                    self.report.changed(
                        here, "default_on: false has no equivalent: it now runs on every request"
                    )
                self.callbacks(f"{here}.callbacks", spec.get("callbacks") or [], settings)

    # -- kinds -------------------------------------------------------------------------------

    def presidio(self, where: str, params: Mapping[str, Any], modes: list[str]) -> None:
        pii = self.pii = self.pii or _Pii()
        self._phases(where, pii.phases, modes, "pii-detector")
        config = params.get("pii_entities_config")
        if isinstance(config, Mapping) and config:
            for entity, action in config.items():
                act = str(action).upper()
                if act not in ("MASK", "BLOCK"):
                    self.report.dropped(
                        f"{where}.pii_entities_config.{entity}",
                        f"action {action!r} is not MASK or BLOCK; the entity is masked",
                    )
                    act = "MASK"
                previous = pii.actions.get(str(entity))
                if previous and previous != act:
                    self.report.changed(
                        f"{where}.pii_entities_config.{entity}",
                        f"{entity} is {previous} in another guardrail; BLOCK wins",
                    )
                    act = "BLOCK"
                pii.actions[str(entity)] = act
        else:
            pii.all_entities = True
        if params.get("output_parse_pii"):
            pii.restore = True
        thresholds = params.get("presidio_score_thresholds")
        if isinstance(thresholds, Mapping):
            for entity, value in thresholds.items():
                if entity == "ALL":
                    self.report.dropped(
                        f"{where}.presidio_score_thresholds.ALL",
                        "one threshold for every entity is not carried: this gateway's "
                        "detectors have their own per-entity defaults",
                    )
                elif isinstance(value, (int, float)):
                    pii.thresholds[str(entity)] = float(value)
        lang = params.get("presidio_language")
        if lang and str(lang).lower() not in ("en", "english"):
            self.report.changed(
                f"{where}.presidio_language",
                f"language {lang!r}: the built-in PII detectors are tuned for English",
            )
        if params.get("presidio_ad_hoc_recognizers"):
            self.report.dropped(
                f"{where}.presidio_ad_hoc_recognizers",
                "ad-hoc recognizer files are not read; add their regexes to "
                "policy.pii-detector.detect_patterns ({name, regex})",
            )
        for key in ("presidio_analyzer_api_base", "presidio_anonymizer_api_base"):
            if params.get(key):
                self.report.changed(
                    f"{where}.{key}", "not needed: PII detection runs inside the gateway"
                )
        if params.get("presidio_entities_deny_list"):
            self.report.dropped(
                f"{where}.presidio_entities_deny_list", "has no equivalent in pii-detector"
            )

    def prompt_injection(
        self, where: str, vendor: str, params: Mapping[str, Any], modes: list[str]
    ) -> None:
        self.injection = self.injection or _Injection()
        if vendor != "LiteLLM prompt-injection detection":
            self.report.changed(
                where,
                f"{vendor} is replaced by the built-in prompt-injection classifier (block at "
                "score >= 0.8); the vendor's scores and categories do not carry over",
            )
        for key in ("category_thresholds", "lakera_guard_thresholds", "threshold"):
            if params.get(key) is not None:
                self.report.dropped(
                    f"{where}.{key}",
                    "vendor thresholds are on another scale; tune "
                    "policy.prompt-injection.threshold (0-1) with `kt policy test`",
                )
        if any(m not in ("pre_call", "during_call") for m in modes):
            self.report.changed(
                f"{where}.mode",
                f"mode {', '.join(modes)}: prompt-injection checks the request before the "
                "upstream call, and blocks it there",
            )

    def _injection_params(self, where: str, params: Mapping[str, Any]) -> None:
        if params.get("llm_api_check"):
            self.report.dropped(
                f"{where}.llm_api_check",
                "asking an LLM to judge each prompt is not supported; the built-in classifier "
                "runs locally",
            )
        for key in ("similarity_check", "heuristics_check"):
            if params.get(key) is False:
                self.report.changed(
                    f"{where}.{key}", "the built-in classifier cannot switch its checks off"
                )

    def content_filter(self, where: str, params: Mapping[str, Any], modes: list[str]) -> None:
        for i, p in enumerate(params.get("patterns") or []):
            if not isinstance(p, Mapping):
                continue
            here = f"{where}.patterns[{i}]"
            action = "block" if str(p.get("action", "BLOCK")).upper() == "BLOCK" else "redact"
            if p.get("pattern_type") == "prebuilt" or p.get("pattern_name"):
                pname = str(p.get("pattern_name") or "")
                regex = PREBUILT.get(pname)
                if regex is None:
                    self.report.dropped(
                        here, f"prebuilt pattern {pname!r} has no equivalent here; add a regex"
                    )
                    continue
                self._pattern(here, p.get("name") or pname, regex, action)
            elif p.get("pattern"):
                self._pattern(here, p.get("name") or f"custom-{i + 1}", str(p["pattern"]), action)
        for i, w in enumerate(params.get("blocked_words") or []):
            if isinstance(w, str):
                w = {"keyword": w, "action": "BLOCK"}
            if not isinstance(w, Mapping) or not w.get("keyword"):
                continue
            word = str(w["keyword"])
            if str(w.get("action", "BLOCK")).upper() == "BLOCK":
                self._term(word)
            else:
                here = f"{where}.blocked_words[{i}]"
                self._pattern(here, f"keyword-{_slug(word)}", _term_regex(word), "redact")
        if params.get("blocked_words_file"):
            self.report.dropped(
                f"{where}.blocked_words_file",
                "keyword files are not read; list the words under policy.dlp-filter.blocked_terms",
            )
        if params.get("categories"):
            self.report.dropped(
                f"{where}.categories",
                "content categories (toxicity, bias, ...) have no equivalent; dlp-filter "
                "matches only the patterns and terms it lists",
            )

    def banned_keywords(self, where: str, words: Any) -> None:
        if isinstance(words, str):
            words = self._word_file(where, words)
        if not isinstance(words, list) or not words:
            self.report.dropped(where, "no banned keywords found to carry over")
            return
        for w in words:
            self._term(str(w))

    def hide_secrets(self, where: str) -> None:
        for name, regex in SECRETS.items():
            self._pattern(where, name, regex, "redact", quiet=True)
        self.report.changed(
            where,
            "hide_secrets becomes dlp-filter patterns for common credentials (OpenAI, AWS, "
            "GitHub, Slack keys, private keys); LiteLLM's detect-secrets plugin set is larger",
        )

    # -- helpers -----------------------------------------------------------------------------

    def _word_file(self, where: str, path: str) -> list[str] | None:
        file = Path(path)
        if not file.is_absolute() and self.base_dir is not None:
            file = self.base_dir / file
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except OSError:
            self.report.dropped(
                where, f"keyword file {path!r} could not be read; list the words instead"
            )
            return None
        return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]

    def _phases(self, where: str, phases: set[str], modes: list[str], policy: str) -> None:
        for mode in modes:
            if mode in ("pre_call", "during_call"):
                phases.add("input")
                if mode == "during_call":
                    self.report.changed(
                        f"{where}.mode",
                        f"during_call (in parallel with the model) becomes a {policy} check "
                        "before the call",
                    )
            elif mode == "post_call":
                phases.update(("input", "output"))
            elif mode == "logging_only":
                self.report.changed(
                    f"{where}.mode",
                    "logging_only is not needed: the audit log never stores prompt or "
                    "response text",
                )
            else:
                self.report.dropped(f"{where}.mode", f"mode {mode!r} is not known; pre_call used")
                phases.add("input")

    def _pattern(
        self, where: str, name: str, regex: str, action: str, *, quiet: bool = False
    ) -> None:
        from keeptrusts.policies.matching import compile_re2

        try:
            compile_re2(regex)
        except ValueError as exc:
            self.report.dropped(
                where,
                f"regex for {name!r} does not compile under RE2 ({exc}); rewrite it without "
                "lookaround or backreferences",
            )
            return
        taken = {p["name"] for p in self.patterns}
        base, n = str(name), 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        self.patterns.append({"name": name, "regex": regex, "action": action})

    def _term(self, word: str) -> None:
        if word and word.casefold() not in {t.casefold() for t in self.blocked_terms}:
            self.blocked_terms.append(word)

    # -- result ------------------------------------------------------------------------------

    def blocks(self) -> dict[str, dict[str, Any]]:
        """Policy blocks in chain order: prompt-injection, pii-detector, dlp-filter."""
        out: dict[str, dict[str, Any]] = {}
        if self.injection is not None:
            out["prompt-injection"] = {
                "threshold": self.injection.threshold,
                "action": self.injection.action,
            }
        if self.pii is not None:
            block = self._pii_block(self.pii)
            if block is not None:
                out["pii-detector"] = block
        if self.patterns or self.blocked_terms:
            self.report.changed(
                "policy.dlp-filter",
                "dlp-filter checks requests and responses (streams included), whichever "
                "LiteLLM mode its patterns and keywords came from",
            )
            dlp: dict[str, Any] = {}
            if self.patterns:
                dlp["patterns"] = self.patterns
            if self.blocked_terms:
                dlp["blocked_terms"] = self.blocked_terms
            dlp["action"] = "redact"
            out["dlp-filter"] = dlp
        return out

    def _pii_block(self, pii: _Pii) -> dict[str, Any] | None:
        from keeptrusts.detectors.pii import supported_entities
        from keeptrusts.policies.pii_detector import DEFAULT_ENTITIES

        if not pii.phases:  # logging_only everywhere: LiteLLM never touched the traffic
            return None
        supported = set(supported_entities())
        actions = dict(pii.actions)
        if pii.all_entities:
            for e in DEFAULT_ENTITIES:
                actions.setdefault(e, "MASK")
            self.report.changed(
                "guardrails (presidio)",
                f"'all Presidio entities' becomes {', '.join(DEFAULT_ENTITIES)}; other Presidio "
                "types (LOCATION, DATE_TIME, NRP, US_PASSPORT, ...) are not detected",
            )
        unsupported = sorted(e for e in actions if e not in supported)
        if unsupported:
            self.report.dropped(
                "guardrails (presidio).pii_entities_config",
                f"{', '.join(unsupported)}: not detected by this gateway (supported: "
                f"{', '.join(sorted(supported))})",
            )
        mask = [e for e, a in actions.items() if a == "MASK" and e in supported]
        block = [e for e, a in actions.items() if a == "BLOCK" and e in supported]
        if not mask and not block:
            return None
        if block and not mask:
            action, entities = "block", block
        else:
            action, entities = "redact", mask
            for e in block:
                if e in ENTITY_REGEX:
                    self._pattern("guardrails (presidio)", e.lower(), ENTITY_REGEX[e], "block")
                    self.report.changed(
                        f"guardrails (presidio).pii_entities_config.{e}",
                        "BLOCK next to MASK entities: pii-detector has one action, so "
                        f"{e} is blocked by a dlp-filter regex instead (format match only)",
                    )
                else:
                    entities.append(e)
                    self.report.changed(
                        f"guardrails (presidio).pii_entities_config.{e}",
                        "BLOCK next to MASK entities: pii-detector has one action and no "
                        f"regex can stand in for {e}, so it is redacted, not blocked",
                    )
        block_out: dict[str, Any] = {"action": action, "entities": entities}
        thresholds = {e: v for e, v in pii.thresholds.items() if e in entities and 0 <= v <= 1}
        if thresholds:
            block_out["thresholds"] = thresholds
        if pii.restore:
            if action == "redact":
                block_out["restore"] = True
                if "output" not in pii.phases:
                    pii.phases.add("output")
                    self.report.changed(
                        "guardrails (presidio).output_parse_pii",
                        "restoring masked values in responses needs the output phase, so "
                        "pii-detector also redacts PII the model writes itself",
                    )
            else:
                self.report.dropped(
                    "guardrails (presidio).output_parse_pii",
                    "nothing to restore: every configured entity blocks",
                )
        block_out["apply_to"] = [p for p in ("input", "output") if p in pii.phases]
        return block_out
