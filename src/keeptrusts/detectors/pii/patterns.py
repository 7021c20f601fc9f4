"""Pattern recognizers with checksums: EMAIL_ADDRESS, CREDIT_CARD, US_SSN, IBAN_CODE, IP_ADDRESS."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from keeptrusts.detectors.base import Finding
from keeptrusts.detectors.pii.recognizer import Pattern, PatternRecognizer, has_digits


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to 10..35; mod 97 == 1."""
    iban = iban.upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    num = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(num) % 97 == 1


# IBAN length per country (SWIFT IBAN registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


# the characters of an email address's local part (as in ``EmailRecognizer``'s pattern)
_LOCAL_CHARS = re.compile(r"[\w.%+\-]+")


class EmailRecognizer(PatternRecognizer):
    entity = "EMAIL_ADDRESS"
    name = "email"
    needs_any = "@"
    patterns = (
        Pattern(
            "email",
            r"(?<![\w.%+\-])[\w.%+\-]+@(?:[^\W_](?:[\w\-]{0,61}[^\W_])?\.)+[^\W\d_]{2,24}(?![\w\-])",
            1.0,
        ),
    )

    def matches(self, text: str) -> Iterator[tuple[Pattern, re.Match[str]]]:
        """The matches ``finditer`` would give, found from the "@" signs.

        ``finditer`` would try every position of the text (the pattern opens with a
        look-behind, so ``re`` cannot skip ahead). But a match holds exactly one "@" (neither
        part may contain one), and it starts where the run of local-part characters ending
        at that "@" starts (the look-behind forbids starting inside the run). So each "@"
        has one possible start, found by matching the run backwards in the reversed text,
        and is tried there unless that start lies inside the previous match, where
        ``finditer`` would not look.
        """
        pattern, rx = self._compiled[0]
        at = text.find("@")
        if at < 0:
            return
        reversed_text = text[::-1]
        n = len(text)
        last_end = 0
        while at >= 0:
            run = _LOCAL_CHARS.match(reversed_text, n - at)
            if run is not None:
                start = at - (run.end() - run.start())
                if start >= last_end:
                    m = rx.match(text, start)
                    if m is not None:
                        yield pattern, m
                        last_end = m.end()
            at = text.find("@", at + 1)

    def validate(self, value: str, match: re.Match[str]) -> bool | float:
        local = value.split("@", 1)[0]
        return not (local.startswith(".") or local.endswith(".") or ".." in local)


# a digit-bearing group right before, or a digit group right after: the candidate is a slice
# of a longer code such as an IBAN ("FR42 6567 1227 9290 2862 8994 535")
_GROUP_BEFORE = re.compile(r"[A-Z0-9]*\d[A-Z0-9]*[ \-]$")
_GROUP_AFTER = re.compile(r"[ \-]\d")


class CreditCardRecognizer(PatternRecognizer):
    """13-19 digits, optionally grouped by spaces or dashes, a known card prefix and Luhn."""

    entity = "CREDIT_CARD"
    name = "credit_card"
    min_digits = 12
    prefilters = (r"\d(?:[ \-]?\d){11}",)
    patterns = (Pattern("card", r"(?<![\w\-.])[12-6](?:[ \-]?\d){11,18}(?![\w\-]|\.\d)", 1.0),)
    context = ("card", "credit", "visa", "mastercard", "amex", "cc", "debit", "payment")

    def validate(self, value: str, match: re.Match[str]) -> bool | float:
        digits = re.sub(r"[ \-]", "", value)
        if not 12 <= len(digits) <= 19 or not luhn_ok(digits) or len(set(digits)) == 1:
            return False
        if len(set(re.findall(r"[ \-]", value))) > 1:
            return False
        text, start, end = match.string, match.start(), match.end()
        if _GROUP_BEFORE.search(text, max(0, start - 8), start) or _GROUP_AFTER.match(text, end):
            return False  # part of a longer grouped code, such as an IBAN
        first, prefix4 = digits[0], int(digits[:4])
        if len(digits) == 12:
            return digits[:2] in ("50", "56", "57", "58") or first == "6"  # Maestro
        if len(digits) == 15 and prefix4 in (1800, 2131):  # old 15-digit JCB
            return True
        if first in "3456":
            return True
        return first == "2" and 2221 <= prefix4 <= 2720  # Mastercard 2-series


class UsSsnRecognizer(PatternRecognizer):
    """US social security number (AAA-GG-SSSS) with the SSA's never-issued ranges excluded.

    Unseparated nine-digit strings score low and need a context word to pass the threshold.
    """

    entity = "US_SSN"
    name = "us_ssn"
    min_digits = 9
    prefilters = (r"[\- ]\d\d[\- ]", r"\d\d\d\d\d\d\d\d\d")  # dashed, plain
    patterns = (
        Pattern("ssn_dashed", r"(?<![\w\-.])\d{3}([\- ])\d{2}\1\d{4}(?![\w\-]|\.\d)", 0.85),
        Pattern("ssn_plain", r"(?<![\w\-.])\d{9}(?![\w\-]|\.\d)", 0.3),
    )
    context = ("ssn", "social security", "social-security", "ss#", "taxpayer")
    context_boost = 0.4

    _INVALID = frozenset({"123456789", "078051120", "219099999"})

    def validate(self, value: str, match: re.Match[str]) -> bool | float:
        digits = re.sub(r"[ \-]", "", value)
        area, group, serial = digits[:3], digits[3:5], digits[5:]
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            return False
        return digits not in self._INVALID and len(set(digits)) > 1


class IbanRecognizer(PatternRecognizer):
    """IBAN: country code, two check digits, BBAN; validated by length and the mod-97 checksum."""

    entity = "IBAN_CODE"
    name = "iban"
    min_digits = 2  # the check digits
    patterns = (
        Pattern("iban", r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ \-]?[A-Za-z0-9]){11,30}", 1.0),
    )

    def analyze(self, text: str) -> list[Finding]:
        out: list[Finding] = []
        if not self.may_match(text):
            return out
        for pattern, m in self.matches(text):
            start = m.start()
            length = IBAN_LENGTHS.get(text[start : start + 2].upper())
            if length is None:
                continue
            chars: list[str] = []
            end = start
            for i in range(start, m.end()):
                ch = text[i]
                if ch.isalnum():
                    chars.append(ch)
                    end = i + 1
                    if len(chars) == length:
                        break
            if len(chars) != length or (end < len(text) and text[end].isalnum()):
                # too short, or the IBAN runs on into more alphanumerics without a separator
                continue
            if iban_ok("".join(chars)):
                out.append(Finding(self.entity, start, end, pattern.score, self.name))
        return out


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_V4_SHAPE = re.compile(r"\d\.\d+\.\d+\.\d")  # what every IPv4 candidate contains


class IpRecognizer(PatternRecognizer):
    entity = "IP_ADDRESS"
    name = "ip_address"
    patterns = (
        Pattern("ipv4", rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)", 0.8),
        Pattern("ipv6", r"(?<![\w:.])(?=[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:)[0-9A-Fa-f:.]{2,45}", 0.9),
    )
    negative_context = ("version", "release", "v.", "build", "firmware", "semver")
    context_boost = 0.4

    def validate(self, value: str, match: re.Match[str]) -> bool | float:
        return ":" not in value  # IPv6 candidates are handled in analyze (their end needs trimming)

    def analyze(self, text: str) -> list[Finding]:
        # IPv4 needs three dots and four digits; IPv6 two colons (its candidates never pass
        # ``validate``, so the base class's pass only finds IPv4).
        v4 = text.count(".") >= 3 and has_digits(text, 4) and _V4_SHAPE.search(text)
        out = super().analyze(text) if v4 else []
        if text.count(":") < 2:
            return out
        v6 = self._compiled[1]
        for pattern, rx in (v6,):
            for m in rx.finditer(text):
                start, end = m.span()
                end_ok = end < len(text) and (text[end].isalnum() or text[end] == "_")
                value = text[start:end].rstrip(".:")
                if end_ok and text[end] != "%":
                    continue
                if not any(c in "0123456789abcdefABCDEF" for c in value):
                    continue
                try:
                    ipaddress.IPv6Address(value)
                except ValueError:
                    continue
                end = start + len(value)
                if end < len(text) and text[end] == "%":  # zone id, e.g. fe80::1%eth0
                    zm = re.match(r"%[\w.\-]+", text[end:])
                    end += zm.end() if zm else 0
                out.append(Finding(self.entity, start, end, pattern.score, self.name))
        return out
