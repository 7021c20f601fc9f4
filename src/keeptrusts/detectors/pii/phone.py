"""PHONE_NUMBER: a cheap candidate regex, then libphonenumber (``phonenumbers``) validation.

Numbers with a country code (``+44 …``, ``0044 …``) are parsed as international. Other candidates
are tried against each region in ``REGIONS`` and accepted for the first region in which
libphonenumber calls them valid. A number libphonenumber only calls *possible* (right length,
unassigned range, e.g. the UK's drama numbers) scores below the default threshold unless it has a
country code or a context word such as "call" or "phone".
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator

import phonenumbers
from phonenumbers import NumberParseException

from keeptrusts.detectors.base import Finding
from keeptrusts.detectors.pii.engine import adjusted_score, context_delta, lowest_delta
from keeptrusts.detectors.pii.recognizer import Recognizer, has_digits

# US, Canada, UK, Germany, France, Spain, Italy, Netherlands, India, Brazil, Poland, Australia,
# plus a few large neighbours whose national formats are common in European and Indian text.
REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "IN", "BR", "PL", "AU", "CA",
           "IE", "BE", "AT", "CH", "PT", "MX")  # fmt: skip

_CANDIDATE = re.compile(
    r"(?<![\w+/@.\-])"
    r"(?:\+|00)?\(?\d[\d \t().\-/]{5,24}\d"
    r"(?P<ext>[ \t]*(?:x|ext\.?|extension)[ \t]*\d{1,6})?"
    r"(?![\w@]|[.\-/]\d)",
    re.IGNORECASE,
)
# What ``_CANDIDATE`` may start with, and the characters its look-behind rejects before a start
_CANDIDATE_FIRST = re.compile(r"[+(\d]")
_NO_START_AFTER = re.compile(r"[\w+/@.\-]*")
_EXTENSION = re.compile(r"[ \t]*(?:x|ext\.?|extension)[ \t]*\d{1,6}$", re.IGNORECASE)
_REJECT = (
    re.compile(r"^\d{1,4}[./\-]\d{1,2}[./\-]\d{1,4}$"),  # dates: 2024-06-15, 15.06.2024, 6/15/24
    re.compile(r"^(?:19|20)\d\d[ \-]*(?:19|20)\d\d$"),  # year ranges
    re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$"),  # IPv4 / version quads
    re.compile(r"^\d{3}-\d{2}-\d{4}$"),  # SSN shape
    re.compile(r"^\d+\.\d+$"),  # decimals: 3.14159265
    re.compile(r"^\d{4}[ \-]\d{4}[ \-]\d{4}[ \-]\d{1,7}$"),  # card-like groups of four
)


# "+1 415 555 0123": the one international form ``_parse`` builds itself, without
# ``phonenumbers.parse`` (half the cost of a verdict). For it, ``parse`` gives country code 1
# and the ten digits as the national number: the first digit is not the national prefix "1"
# (nothing to strip) nor a "0" (no leading zeros to keep).
_NANP = re.compile(r"\+1 ([2-9][0-9]{2}) ([0-9]{3}) ([0-9]{4})")
MIN_DIGITS = 7  # in a phone number, extension aside
# Candidates whose libphonenumber verdict is remembered per recognizer: the same numbers come
# back (a signature, the earlier turns of a chat), and one verdict costs 30 to 300 us.
PARSE_CACHE_SIZE = 4096

# an IBAN-like code running right up to the candidate: two capitals, two digits, then
# capitals and digits, single spaces between them. One character per repetition, taken
# possessively: the same strings as groups of one to four characters, but without trying
# every way to cut a long run into such groups (exponential: 0.1 s for "XY99ABCD...UV (").
_IN_GROUPED_CODE = re.compile(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9])*+[ \-]?$")


def candidates(text: str) -> Iterator[re.Match[str]]:
    """``_CANDIDATE.finditer(text)``, a few times faster.

    ``finditer`` would try the pattern at every position of the text (it opens with a
    look-behind, so ``re`` cannot skip ahead). Here it is tried only where a match can start:
    at a "+", "(" or digit (``re`` finds those quickly) not preceded by a character the
    look-behind rejects. After a failed try at a digit or "+", the run of such characters
    that it begins is skipped: no position inside it can start a match.
    """
    pos = 0
    while (first := _CANDIDATE_FIRST.search(text, pos)) is not None:
        start = first.start()
        m = _CANDIDATE.match(text, start)
        if m is not None:
            yield m
            pos = m.end()  # never empty
        elif text[start] == "(":
            pos = start + 1  # "(" is no letter or digit: a match may start right after it
        else:
            pos = _NO_START_AFTER.match(text, start).end()


class PhoneRecognizer(Recognizer):
    entity = "PHONE_NUMBER"
    name = "phone"
    context = ("phone", "call", "tel", "telephone", "mobile", "cell", "cellphone", "whatsapp",
               "sms", "text", "fax", "ring", "reach", "dial", "number", "contact", "landline",
               "hotline", "handy", "telefon", "tél", "téléphone", "telefono", "móvil",
               "ph")  # fmt: skip
    negative_context = ("order", "invoice", "ticket", "id", "account", "acct", "ref", "reference",
                        "serial", "sku", "version", "build", "tracking", "iban", "card", "ssn",
                        "isbn", "po", "pin", "otp", "code", "zip", "postcode", "amount",
                        "total", "balance", "case", "issue", "pr", "commit", "timestamp",
                        "epoch", "unix", "seconds", "ms", "bytes", "population")  # fmt: skip
    context_boost = 0.3

    SCORE_INTERNATIONAL = 0.85
    SCORE_NATIONAL_FORMATTED = 0.7
    SCORE_NATIONAL_BARE = 0.5
    SCORE_POSSIBLE_INTERNATIONAL = 0.5
    SCORE_POSSIBLE_NATIONAL = 0.3

    def __init__(self, regions: tuple[str, ...] = REGIONS) -> None:
        self.regions = tuple(regions)
        # load libphonenumber's per-region metadata now, not lazily on a request thread
        for region in self.regions:
            phonenumbers.PhoneMetadata.metadata_for_region(region)
            with contextlib.suppress(NumberParseException):
                phonenumbers.parse("0", region)
        # ``_parse`` depends on its argument and ``self.regions`` only
        self._parse_cached = functools.lru_cache(maxsize=PARSE_CACHE_SIZE)(self._parse)
        self._lowest_delta = lowest_delta(self)
        # the best base score ``_parse`` can give: (international, formatted) -> score
        self._best = {
            (True, True): max(self.SCORE_INTERNATIONAL, self.SCORE_POSSIBLE_INTERNATIONAL),
            (True, False): max(self.SCORE_INTERNATIONAL, self.SCORE_POSSIBLE_INTERNATIONAL),
            (False, True): max(self.SCORE_NATIONAL_FORMATTED, self.SCORE_POSSIBLE_NATIONAL),
            (False, False): self.SCORE_NATIONAL_BARE,  # bare digits are never "possible"
        }

    def _parse(self, cand: str) -> tuple[float, bool] | None:
        international = cand.startswith(("+", "00"))
        if international:
            value = "+" + cand[2:] if cand.startswith("00") else cand
            value = value.replace("(0)", "")
            nanp = _NANP.fullmatch(value)
            if nanp is not None:
                num = phonenumbers.PhoneNumber(
                    country_code=1, national_number=int("".join(nanp.groups()))
                )
            else:
                try:
                    num = phonenumbers.parse(value, None)
                except NumberParseException:
                    return None
            if phonenumbers.is_valid_number(num):
                return self.SCORE_INTERNATIONAL, True
            if phonenumbers.is_possible_number(num):
                return self.SCORE_POSSIBLE_INTERNATIONAL, False
            return None
        formatted = not cand.isdigit()
        possible = False
        for region in self.regions:
            try:
                num = phonenumbers.parse(cand, region)
            except NumberParseException:
                continue
            if phonenumbers.is_valid_number_for_region(num, region):
                return (
                    self.SCORE_NATIONAL_FORMATTED if formatted else self.SCORE_NATIONAL_BARE
                ), True
            possible = possible or phonenumbers.is_possible_number(num)
        if possible and formatted:
            return self.SCORE_POSSIBLE_NATIONAL, False
        return None

    def analyze(self, text: str) -> list[Finding]:
        return self.analyze_above(text, 0.0)

    def analyze_above(self, text: str, min_score: float) -> list[Finding]:
        out: list[Finding] = []
        if not has_digits(text, MIN_DIGITS):
            return out
        for m in candidates(text):
            start, end = m.span()
            cand = m.group()
            # without the extension group the candidate holds no letter: nothing to remove
            body = cand if m.group("ext") is None else _EXTENSION.sub("", cand)
            digits = sum(map(str.isdigit, body))
            if not MIN_DIGITS <= digits <= 15 or "\n" in cand or "  " in body:
                continue
            if body.count("(") != body.count(")") or any(rx.match(body) for rx in _REJECT):
                continue
            if body.count("/") > 1 or (body.isdigit() and not 8 <= len(body) <= 11):
                continue  # bare digit strings: 8 to 11 digits, else IDs, cards or timestamps
            if _IN_GROUPED_CODE.search(text, max(0, start - 40), start):
                continue  # the tail of an IBAN or account code: "NL52 DOUS 6431 5885 49"
            # Parsing is the costly part (a bare number is tried in every region), so first
            # ask whether the best score ``_parse`` could give this candidate, moved by its
            # context words as the engine will move them, reaches the threshold: "(ref
            # 123456789)" cannot (0.5 - 0.3 < 0.4). The context words are looked up only
            # when the lowest context adjustment would fail.
            best = self._best[body.startswith(("+", "00")), not body.isdigit()]
            if (
                adjusted_score(best, self._lowest_delta) < min_score
                and adjusted_score(best, context_delta(text, self, start)) < min_score
            ):
                continue
            parsed = self._parse_cached(body)
            if parsed is None:
                continue
            if end > start:
                out.append(Finding(self.entity, start, end, parsed[0], self.name))
        return out
