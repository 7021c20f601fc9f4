"""The recognizer registry: entity name -> recognizer factory, instances built once and shared."""

from __future__ import annotations

import threading
from collections.abc import Callable

from keeptrusts.detectors.pii.recognizer import Recognizer


def _person() -> Recognizer:
    from keeptrusts.detectors.pii.person import PersonRecognizer

    return PersonRecognizer()


def _phone() -> Recognizer:
    from keeptrusts.detectors.pii.phone import PhoneRecognizer

    return PhoneRecognizer()


def _pattern(cls_name: str) -> Callable[[], Recognizer]:
    def make() -> Recognizer:
        from keeptrusts.detectors.pii import patterns

        return getattr(patterns, cls_name)()

    return make


class RecognizerRegistry:
    """Maps entity names to recognizer factories; each recognizer is built on first use.

    Recognizers are immutable, so one instance serves every analyzer and thread.
    """

    def __init__(self, factories: dict[str, list[Callable[[], Recognizer]]]) -> None:
        self._factories = {k: list(v) for k, v in factories.items()}
        self._instances: dict[str, list[Recognizer]] = {}
        self._lock = threading.Lock()

    def supported_entities(self) -> list[str]:
        return sorted(self._factories)

    def add(self, entity: str, factory: Callable[[], Recognizer]) -> None:
        with self._lock:
            self._factories.setdefault(entity, []).append(factory)
            self._instances.pop(entity, None)

    def recognizers(self, entities: list[str]) -> list[Recognizer]:
        unknown = [e for e in entities if e not in self._factories]
        if unknown:
            raise ValueError(
                f"unknown PII entit{'y' if len(unknown) == 1 else 'ies'} "
                f"{', '.join(map(repr, unknown))}; supported: "
                f"{', '.join(self.supported_entities())}"
            )
        out: list[Recognizer] = []
        for entity in dict.fromkeys(entities):
            inst = self._instances.get(entity)
            if inst is None:
                with self._lock:
                    inst = self._instances.get(entity)
                    if inst is None:
                        inst = [make() for make in self._factories[entity]]
                        self._instances[entity] = inst
            out.extend(inst)
        return out


DEFAULT_REGISTRY = RecognizerRegistry(
    {
        "PERSON": [_person],
        "EMAIL_ADDRESS": [_pattern("EmailRecognizer")],
        "PHONE_NUMBER": [_phone],
        "CREDIT_CARD": [_pattern("CreditCardRecognizer")],
        "US_SSN": [_pattern("UsSsnRecognizer")],
        "IBAN_CODE": [_pattern("IbanRecognizer")],
        "IP_ADDRESS": [_pattern("IpRecognizer")],
    }
)
