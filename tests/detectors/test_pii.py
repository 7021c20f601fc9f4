"""Tests for the PII detector library (``keeptrusts.detectors.pii``)."""

from __future__ import annotations

import threading

import pytest

from keeptrusts.detectors.base import Finding
from keeptrusts.detectors.pii import (
    DEFAULT_THRESHOLDS,
    PiiAnalyzer,
    RecognizerRegistry,
    analyze,
    resolve_overlaps,
    supported_entities,
)
from keeptrusts.detectors.pii.patterns import iban_ok, luhn_ok
from keeptrusts.detectors.pii.recognizer import Recognizer

ALL = [
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "US_SSN",
    "IBAN_CODE",
    "IP_ADDRESS",
]


@pytest.fixture(scope="module")
def everything() -> PiiAnalyzer:
    return PiiAnalyzer(entities=ALL)


def found(analyzer: PiiAnalyzer, text: str, entity: str) -> list[str]:
    return [text[f.start : f.end] for f in analyzer.analyze(text) if f.entity == entity]


# --- API -------------------------------------------------------------------------------------


def test_supported_entities_lists_the_presidio_names() -> None:
    assert supported_entities() == sorted(ALL)


def test_unknown_entity_raises_and_lists_supported() -> None:
    with pytest.raises(ValueError) as exc:
        PiiAnalyzer(entities=["EMAIL_ADDRESS", "PASSPORT"])
    msg = str(exc.value)
    assert "PASSPORT" in msg
    for entity in ALL:
        assert entity in msg


def test_threshold_for_unconfigured_entity_is_rejected() -> None:
    with pytest.raises(ValueError, match="PERSON"):
        PiiAnalyzer(entities=["EMAIL_ADDRESS"], thresholds={"PERSON": 0.5})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        PiiAnalyzer(entities=["EMAIL_ADDRESS"], thresholds={"EMAIL_ADDRESS": 1.5})


def test_per_entity_default_thresholds() -> None:
    assert DEFAULT_THRESHOLDS["PHONE_NUMBER"] < 0.5  # a global 0.5 silently drops phones
    an = PiiAnalyzer(entities=["PHONE_NUMBER", "EMAIL_ADDRESS"], thresholds={"EMAIL_ADDRESS": 0.9})
    assert an.thresholds == {
        "PHONE_NUMBER": DEFAULT_THRESHOLDS["PHONE_NUMBER"],
        "EMAIL_ADDRESS": 0.9,
    }


def test_findings_use_the_detector_contract(everything: PiiAnalyzer) -> None:
    text = "Mail jane.doe@example.com please"
    (f,) = everything.analyze(text)
    assert isinstance(f, Finding)
    assert (f.entity, text[f.start : f.end], f.score) == (
        "EMAIL_ADDRESS",
        "jane.doe@example.com",
        1.0,
    )
    assert f.detector == "email"


def test_only_configured_entities_are_reported() -> None:
    text = "Anna Kowalska, anna@example.pl, +48 512 345 678"
    an = PiiAnalyzer(entities=["PHONE_NUMBER"])
    assert [f.entity for f in an.analyze(text)] == ["PHONE_NUMBER"]
    assert analyze("", ALL) == []


def test_threshold_raises_filter_findings() -> None:
    text = "see 030 1234567"  # a valid German landline, formatted, no context word: 0.7
    assert found(PiiAnalyzer(entities=["PHONE_NUMBER"]), text, "PHONE_NUMBER") == ["030 1234567"]
    strict = PiiAnalyzer(entities=["PHONE_NUMBER"], thresholds={"PHONE_NUMBER": 0.9})
    assert strict.analyze(text) == []
    assert found(strict, "call 030 1234567", "PHONE_NUMBER") == ["030 1234567"]  # context: 1.0


def test_extra_patterns_are_reported_with_their_name() -> None:
    an = PiiAnalyzer(entities=["EMAIL_ADDRESS"], extra_patterns=[("EMPLOYEE_ID", r"EMP-\d{6}")])
    fs = an.analyze("EMP-123456 wrote to ops@example.com")
    assert [(f.entity, f.start, f.end, f.score) for f in fs] == [
        ("EMPLOYEE_ID", 0, 10, 1.0),
        ("EMAIL_ADDRESS", 20, 35, 1.0),
    ]


def test_extra_pattern_invalid_regex_raises() -> None:
    with pytest.raises(ValueError, match="invalid detect pattern"):
        PiiAnalyzer(entities=[], extra_patterns=[("BAD", "(unclosed")])


def test_extra_pattern_with_lookaround_falls_back_to_re() -> None:
    an = PiiAnalyzer(entities=[], extra_patterns=[("TAG", r"(?<=#)\w+")])
    assert [(f.start, f.end) for f in an.analyze("see #secret now")] == [(5, 11)]


def test_thread_safe_shared_analyzer(everything: PiiAnalyzer) -> None:
    texts = [
        f"Ask Maria Garcia ({i}) at maria{i}@example.com or +44 20 7946 0958, "
        "card 4111 1111 1111 1111"
        for i in range(40)
    ]
    expected = [everything.analyze(t) for t in texts]
    results: dict[int, list[Finding]] = {}

    def work(i: int) -> None:
        results[i] = everything.analyze(texts[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(texts))] == expected
    assert {f.entity for f in expected[0]} == {
        "PERSON",
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "CREDIT_CARD",
    }


# --- engine: overlap resolution ------------------------------------------------------------------


def test_resolve_overlaps_prefers_score_then_length() -> None:
    fs = [
        Finding("PHONE_NUMBER", 0, 11, 0.7, "phone"),
        Finding("US_SSN", 0, 11, 0.85, "us_ssn"),
        Finding("PERSON", 20, 30, 0.6, "person"),
        Finding("PERSON", 20, 25, 0.6, "person"),
        Finding("PERSON", 20, 30, 0.6, "other"),
    ]
    kept = resolve_overlaps(fs)
    assert [(f.entity, f.start, f.end) for f in kept] == [("US_SSN", 0, 11), ("PERSON", 20, 30)]


def test_email_wins_over_person_inside_it(everything: PiiAnalyzer) -> None:
    text = "write to john.smith@example.com today"
    fs = everything.analyze(text)
    assert [(f.entity, text[f.start : f.end]) for f in fs] == [
        ("EMAIL_ADDRESS", "john.smith@example.com")
    ]


def test_iban_wins_over_card_and_phone_inside_it(everything: PiiAnalyzer) -> None:
    text = "IBAN DE89 3704 0044 0532 0130 00 please"
    fs = everything.analyze(text)
    assert [(f.entity, text[f.start : f.end]) for f in fs] == [
        ("IBAN_CODE", "DE89 3704 0044 0532 0130 00")
    ]


def test_engine_is_recognizer_agnostic() -> None:
    class Shouty(Recognizer):
        entity = "SHOUT"
        name = "shouty"
        context = ("loud",)
        context_boost = 0.3

        def analyze(self, text: str) -> list[Finding]:
            i = text.find("HEY")
            return [Finding("SHOUT", i, i + 3, 0.4, self.name)] if i >= 0 else []

    reg = RecognizerRegistry({"SHOUT": [Shouty]})
    an = PiiAnalyzer(entities=["SHOUT"], registry=reg)
    assert an.analyze("HEY you") == []  # 0.4 < default 0.5
    (f,) = an.analyze("loud HEY you")  # context word lifts it to 0.7
    assert (f.entity, f.start, f.end, round(f.score, 2)) == ("SHOUT", 5, 8, 0.7)


# --- checksum entities ---------------------------------------------------------------------------


def test_luhn_and_iban_checksums() -> None:
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")
    assert iban_ok("DE89370400440532013000")
    assert iban_ok("GB82WEST12345698765432")
    assert not iban_ok("DE89370400440532013001")
    assert not iban_ok("DE8937040044053201300")  # wrong length for DE


@pytest.mark.parametrize(
    "card",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5555555555554444",
        "378282246310005",  # Amex
        "6011111111111117",  # Discover
        "3530111333300000",  # JCB
        "2221000000000009",  # Mastercard 2-series
    ],
)
def test_credit_card_valid(everything: PiiAnalyzer, card: str) -> None:
    assert found(everything, f"my card is {card}, exp 09/27", "CREDIT_CARD") == [card]


@pytest.mark.parametrize(
    "text",
    [
        "my card is 4111 1111 1111 1112",  # Luhn fails
        "my card is 4111-1111 1111-1111",  # mixed separators
        "order 1234567812345678 shipped",  # Luhn fails
        "my card is 0000000000000000",
    ],
)
def test_credit_card_invalid(everything: PiiAnalyzer, text: str) -> None:
    assert found(everything, text, "CREDIT_CARD") == []


@pytest.mark.parametrize("ssn", ["536-22-1234", "536 22 1234"])
def test_ssn_valid(everything: PiiAnalyzer, ssn: str) -> None:
    assert found(everything, f"SSN {ssn} on file", "US_SSN") == [ssn]


def test_ssn_without_separators_needs_context() -> None:
    an = PiiAnalyzer(entities=["US_SSN"])
    assert found(an, "my social security number is 536221234", "US_SSN") == ["536221234"]
    assert found(an, "reference 536221234 attached", "US_SSN") == []


@pytest.mark.parametrize(
    "ssn",
    ["000-12-3456", "666-12-3456", "912-12-3456", "536-00-1234", "536-22-0000", "123-45-6789"],
)
def test_ssn_invalid_ranges(everything: PiiAnalyzer, ssn: str) -> None:
    assert found(everything, f"SSN {ssn} on file", "US_SSN") == []


@pytest.mark.parametrize(
    "iban",
    [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91 ABNA 0417 1643 00",
        "ES91 2100 0418 4502 0005 1332",
        "PL61 1090 1014 0000 0712 1981 2874",
    ],
)
def test_iban_valid(everything: PiiAnalyzer, iban: str) -> None:
    assert found(everything, f"Wire it to {iban}. Thanks", "IBAN_CODE") == [iban]


@pytest.mark.parametrize(
    "iban",
    ["DE89 3704 0044 0532 0130 01", "GB82 WEST 1234 5698 7654 33", "XX89370400440532013000"],
)
def test_iban_invalid_checksum(everything: PiiAnalyzer, iban: str) -> None:
    text = f"Wire it to {iban}."
    assert found(everything, text, "IBAN_CODE") == []
    assert found(everything, text, "CREDIT_CARD") == []
    assert found(everything, text, "PHONE_NUMBER") == []


@pytest.mark.parametrize(
    "ip",
    ["192.168.1.20", "8.8.8.8", "2001:db8::1", "::1", "fe80::1ff:fe23:4567:890a",
     "2001:0db8:85a3:0000:0000:8a2e:0370:7334"],
)  # fmt: skip
def test_ip_valid(everything: PiiAnalyzer, ip: str) -> None:
    assert found(everything, f"block {ip} now", "IP_ADDRESS") == [ip]


@pytest.mark.parametrize(
    "text",
    [
        "block 256.1.1.1 now",
        "the time is 12:30:45",
        "MAC 00:1A:2B:3C:4D:5E",
        "Version 10.4.2.1 fixes it",
        "call std::vector in C++",
    ],
)
def test_ip_invalid(everything: PiiAnalyzer, text: str) -> None:
    assert found(everything, text, "IP_ADDRESS") == []


@pytest.mark.parametrize(
    "email", ["jane.doe@example.com", "j_o+tag@mail.example.co.uk", "łukasz@example.pl"]
)
def test_email_valid(everything: PiiAnalyzer, email: str) -> None:
    assert found(everything, f"Contact: {email}.", "EMAIL_ADDRESS") == [email]


@pytest.mark.parametrize(
    "text", ["ping @jane on slack", "user@localhost", "a..b@example.com", "name at example dot com"]
)
def test_email_invalid(everything: PiiAnalyzer, text: str) -> None:
    assert found(everything, text, "EMAIL_ADDRESS") == []


# --- phones ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        # US / Canada
        "(415) 555-0132", "415-555-0132", "415.555.0132", "+1 415 555 0132", "+14155550132",
        "(416) 555-0199", "+1 (604) 555-0143",
        # UK
        "020 7946 0958", "+44 20 7946 0958", "+44 (0)20 7946 0958", "07911 123456",
        # Germany
        "030 12345678", "+49 30 12345678", "0151 23456789", "+49 (0)151 23456789",
        # France
        "01 23 45 67 89", "06 12 34 56 78", "+33 6 12 34 56 78",
        # Spain
        "612 345 678", "+34 912 345 678",
        # Italy
        "02 1234 5678", "+39 347 123 4567",
        # Netherlands
        "020-1234567", "06 1234 5678", "+31 20 123 4567",
        # India
        "098765 43210", "+91 98765 43210",
        # Brazil
        "(11) 91234-5678", "+55 11 91234-5678",
        # Poland
        "512 345 678", "+48 512 345 678",
        # Australia
        "(02) 9876 5432", "0412 345 678", "+61 412 345 678",
        # international prefix 00
        "0049 30 12345678",
    ],
)  # fmt: skip
def test_phone_per_country(everything: PiiAnalyzer, phone: str) -> None:
    assert found(everything, f"Call me on {phone} tomorrow.", "PHONE_NUMBER") == [phone]


def test_phone_extension_is_part_of_the_match(everything: PiiAnalyzer) -> None:
    assert found(everything, "phone 415-555-0132 ext. 42", "PHONE_NUMBER") == [
        "415-555-0132 ext. 42"
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Order 20240615-7781 shipped on 2024-06-15.",
        "Meeting on 15.06.2024 at 10:30.",
        "Version 3.14.15926 is out.",
        "Between 2019-2024 revenue doubled.",
        "Invoice 12345 totals 1,234,567.89 EUR.",
        "Use timestamp 1718444800 for the cut-off.",
        "Tracking number 1Z999AA10123456784.",
        "It costs 42 dollars.",
    ],
)
def test_phone_negatives(everything: PiiAnalyzer, text: str) -> None:
    assert found(everything, text, "PHONE_NUMBER") == []


def test_phone_invalid_range_needs_country_code_or_context() -> None:
    an = PiiAnalyzer(entities=["PHONE_NUMBER"])
    # +44 7700 900xxx is an Ofcom drama range: possible but not valid, so it scores 0.5
    assert found(an, "+44 7700 900123", "PHONE_NUMBER") == ["+44 7700 900123"]
    assert found(an, "order ref +44 7700 900123", "PHONE_NUMBER") == []  # negative context


# --- PERSON ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Please forward the contract to John Smith before Friday.", "John Smith"),
        ("Dear María José García, thanks for your order.", "María José García"),
        ("Ich habe mit Jürgen Schmidt gesprochen.", "Jürgen Schmidt"),
        ("Best regards,\nFrançoise Dubois", "Françoise Dubois"),
        ("Ask Giuseppe Rossi about the invoice.", "Giuseppe Rossi"),
        ("The report was written by Sanne van der Berg.", "Sanne van der Berg"),
        ("Małgorzata Wiśniewska will join the call.", "Małgorzata Wiśniewska"),
        ("Please ping Wojciech Kowalski about it.", "Wojciech Kowalski"),
        ("Our CEO Priya Venkataraman will present.", "Priya Venkataraman"),
        ("Can you email Rahul Sharma the slides?", "Rahul Sharma"),
        ("Meeting with Wang Wei and the design team.", "Wang Wei"),
        ("Hiroshi Tanaka approved the budget.", "Hiroshi Tanaka"),
        ("Send it to Mohammed Al-Rashid today.", "Mohammed Al-Rashid"),
        ("Abdullah bin Salman signed the lease.", "Abdullah bin Salman"),
        ("Dr. Okafor will see you at 3pm.", "Okafor"),
        ("Thanks, Chiamaka Okonkwo!", "Chiamaka Okonkwo"),
        ("Hi Anna, can you check this?", "Anna"),
        ("Sarah's laptop needs a new battery.", "Sarah"),
    ],
)
def test_person_locales(everything: PiiAnalyzer, text: str, name: str) -> None:
    assert found(everything, text, "PERSON") == [name]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("my name is john smith and i need help", "john smith"),
        ("hey, i'm maria gonzalez, my order is late", "maria gonzalez"),
        ("ping michelle m. delattre about the outage", "michelle m. delattre"),
        ("can you ask priya sharma about the deploy", "priya sharma"),
        ("thanks, celestina!", "celestina"),
    ],
)
def test_person_lower_case(everything: PiiAnalyzer, text: str, name: str) -> None:
    assert found(everything, text, "PERSON") == [name]


def test_person_several_in_one_text(everything: PiiAnalyzer) -> None:
    text = "Attendees: Lars Jensen, Ana Souza and Kenji Watanabe."
    assert found(everything, text, "PERSON") == ["Lars Jensen", "Ana Souza", "Kenji Watanabe"]


@pytest.mark.parametrize(
    "text",
    [
        "Kubernetes pod scheduling fails when the node is tainted.",
        "Grafana shows a spike in p99 latency.",
        "Meet me at Victoria Station at noon.",
        "The Jenkins pipeline failed on step 3.",
        "Our Tesla Model 3 needs new tyres.",
        "Ask Claude to summarise the report.",
        "Deploy the Redis cluster with Helm and Terraform.",
        "We flew from London to Paris on Monday.",
        "Upgrade Django to 5.0 and PostgreSQL to 16.",
        "Please open a PR and tag QA.",
        "Thanks for the update!",
        "Mark the ticket as resolved.",
        "Will you send the file today?",
        "Quarterly Business Review",
        "Ship it to Acme GmbH in Berlin.",
    ],
)
def test_person_hard_negatives(everything: PiiAnalyzer, text: str) -> None:
    assert found(everything, text, "PERSON") == []
    assert found(everything, text.lower(), "PERSON") == []


def test_person_score_is_a_probability(everything: PiiAnalyzer) -> None:
    (f,) = [f for f in everything.analyze("Dear Mr. Johnson, thank you.") if f.entity == "PERSON"]
    assert 0.5 < f.score <= 1.0
    assert f.detector == "person"


def test_cached_analysis_is_the_same_and_only_for_short_texts() -> None:
    from keeptrusts.detectors.pii import CACHE_MAX_CHARS, PiiAnalyzer

    a = PiiAnalyzer(entities=["PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER"])
    text = "Hi, I am Maria Gonzalez, mail maria@example.com or call +1 415 555 0134."
    first = a.analyze(text, cache=True)
    assert first == a.analyze(text) == a.analyze(text, cache=True)
    first.clear()  # callers get their own list: the cached findings are not theirs to change
    assert a.analyze(text, cache=True) == a.analyze(text)
    info = a._recent.cache_info()
    assert info.hits == 2 and info.misses == 1
    long_text = "Maria Gonzalez " * (CACHE_MAX_CHARS // 10)
    assert a.analyze(long_text, cache=True) == a.analyze(long_text)
    assert a._recent.cache_info().currsize == 1
