"""Text normalisation for the prompt-injection detector (stdlib only).

Attackers hide instructions from keyword filters and classifiers with tricks that a
human (or an LLM) reads straight through. Each function below undoes one family of
them; :func:`normalize` chains the in-place ones and :func:`decode_payloads` returns
the hidden texts found inside encoded blobs, which the detector scores separately.

In-place steps (:func:`normalize`), in order:

1. ``nfkc``: Unicode NFKC folds full-width letters (``ｉｇｎｏｒｅ``), mathematical
   alphanumerics (``𝐢𝐠𝐧𝐨𝐫𝐞``), circled letters, ligatures and other compatibility forms to
   their plain equivalents.
2. ``strip_invisible``: removes zero-width and other invisible format characters
   (ZWSP, ZWNJ, ZWJ, word joiner, BOM, soft hyphen, bidi controls, variation selectors)
   and turns Unicode *tag* characters (U+E0020..U+E007E, "ASCII smuggling") back into
   the ASCII they encode.
3. ``strip_combining_runs``: removes stacks of two or more combining marks ("Zalgo"
   text) while keeping ordinary single accents, so French or Vietnamese is untouched.
4. ``fold_homoglyphs``: maps Cyrillic, Greek and other Latin look-alike letters to
   Latin, but only inside words that mix them with Latin letters, or in whole
   look-alike words when the text is mostly Latin. Genuine Russian or Greek text is
   left alone.
5. whitespace is collapsed (runs of spaces/tabs to one space, 3+ newlines to two).

Decoders (:func:`decode_payloads`): base64 (standard and URL-safe), hex (plain runs,
``\\x41`` escapes and ``0x41`` lists), URL percent-encoding, HTML character references,
``\\uXXXX`` escapes and, when the text mentions ROT13, a ROT13 view. A decoded payload
is kept only if it is valid UTF-8 and mostly printable text, so hashes, UUIDs and
binary blobs do not produce noise. Decoding recurses a little (base64 of hex, ...).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
import unicodedata
from urllib.parse import unquote

__all__ = [
    "decode_payloads",
    "fold_homoglyphs",
    "nfkc",
    "normalize",
    "strip_combining_runs",
    "strip_invisible",
]

# --------------------------------------------------------------------------- invisible


def _invisible_table() -> dict[int, int | str | None]:
    table: dict[int, int | str | None] = {}
    singles = [
        0x00AD,  # soft hyphen
        0x034F,  # combining grapheme joiner
        0x061C,  # arabic letter mark
        0x115F,
        0x1160,  # hangul fillers
        0x17B4,
        0x17B5,  # khmer inherent vowels
        0x180E,  # mongolian vowel separator
        0x2028,  # (line separator -> handled as whitespace below)
        0x3164,  # hangul filler
        0xFEFF,  # BOM / zero-width no-break space
        0xFFA0,  # halfwidth hangul filler
        0xE0001,  # language tag
        0xE007F,  # cancel tag
    ]
    ranges = [
        (0x180B, 0x180F),  # mongolian free variation selectors
        (0x200B, 0x200F),  # ZWSP, ZWNJ, ZWJ, LRM, RLM
        (0x202A, 0x202E),  # bidi embeddings / overrides
        (0x2060, 0x2064),  # word joiner, invisible operators
        (0x2066, 0x206F),  # bidi isolates, deprecated format chars
        (0xFE00, 0xFE0F),  # variation selectors
        (0x1D173, 0x1D17A),  # musical invisible formatting
        (0xE0100, 0xE01EF),  # variation selectors supplement
    ]
    for cp in singles:
        table[cp] = None
    for lo, hi in ranges:
        for cp in range(lo, hi + 1):
            table[cp] = None
    table[0x2028] = "\n"
    table[0x2029] = "\n"
    # Tag characters spell ASCII invisibly: U+E0041 is a hidden "A".
    for cp in range(0xE0020, 0xE007F):
        table[cp] = cp - 0xE0000
    return table


_INVISIBLE = _invisible_table()


def _char_class(codepoints: list[int]) -> str:
    """A regex character class of runs (``a-z``): one range per run of consecutive code
    points is much faster to match than hundreds of single characters."""
    runs: list[list[int]] = []
    for cp in sorted(codepoints):
        if runs and cp == runs[-1][1] + 1:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp])
    parts = (re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else "") for a, b in runs)
    return "[" + "".join(parts) + "]"


_INVISIBLE_RE = re.compile(_char_class(list(_INVISIBLE)))


def nfkc(text: str) -> str:
    """Unicode NFKC normalisation (compatibility forms to plain characters)."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFKC", text)


def strip_invisible(text: str) -> str:
    """Remove zero-width / invisible format characters; decode Unicode tag characters."""
    if text.isascii() or not _INVISIBLE_RE.search(text):
        return text
    return text.translate(_INVISIBLE)


_COMBINING_RUN_RE = re.compile(
    r"[\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]{2,}"
)


def strip_combining_runs(text: str) -> str:
    """Drop stacks of 2+ combining diacritics (Zalgo text); single accents stay."""
    if text.isascii():
        return text
    return _COMBINING_RUN_RE.sub("", text)


# --------------------------------------------------------------------------- homoglyphs

# Look-alike letter -> Latin letter. Only letters that render (nearly) identically to a
# Latin letter in common fonts are listed.
_CONFUSABLES: dict[str, str] = {
    # Cyrillic lower case
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
    "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i",
    "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "һ": "h", "ү": "y", "ɡ": "g",
    "ь": "b", "п": "n", "г": "r", "д": "d", "ԍ": "g", "ӽ": "x", "ɩ": "i",
    # Cyrillic upper case
    "А": "A", "В": "B", "Е": "E", "Ё": "E", "К": "K", "М": "M", "Н": "H", "О": "O",
    "Р": "P", "С": "C", "Т": "T", "У": "Y", "Х": "X", "Ѕ": "S", "І": "I", "Ї": "I",
    "Ј": "J", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W", "Ӏ": "I", "Һ": "H", "Ү": "Y",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v",
    "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ϲ": "c", "ϳ": "j",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "Ϲ": "C",
    # Armenian
    "օ": "o", "ս": "u", "ո": "n", "հ": "h", "ց": "g", "ք": "p", "զ": "q",
    # Latin-script look-alikes outside ASCII (not folded by NFKC)
    "ı": "i", "ɑ": "a", "ɒ": "a", "ǀ": "l", "ɛ": "e", "ɪ": "i", "ʀ": "r", "ᴀ": "a",
    "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ɢ": "g", "ʜ": "h", "ᴊ": "j", "ᴋ": "k",
    "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u",
    "ᴠ": "v", "ᴡ": "w", "ʏ": "y", "ᴢ": "z",
}  # fmt: skip
_CONFUSABLE_TABLE = str.maketrans(_CONFUSABLES)
_CONFUSABLE_CLASS = "".join(sorted(_CONFUSABLES))
_HAS_CONFUSABLE_RE = re.compile(f"[{_CONFUSABLE_CLASS}]")
_LATIN = "A-Za-z\u00c0-\u024f\u1e00-\u1eff"
_LATIN_RE = re.compile(f"[{_LATIN}]")
# Scripts whose letters are the usual look-alike sources.
_LOOKALIKE_SCRIPT_RE = re.compile("[\u0370-\u03ff\u1f00-\u1fff\u0400-\u052f\u0530-\u058f]")
_WORD_RE = re.compile(r"[^\W\d_]+", re.UNICODE)


def fold_homoglyphs(text: str) -> str:
    """Map Cyrillic/Greek/Armenian/small-capital look-alikes to Latin letters.

    A word is folded when it mixes Latin letters with look-alikes (``pаypаl`` with
    Cyrillic ``а``), or when it consists only of look-alikes and the text as a whole is
    mostly Latin. Real Cyrillic or Greek prose keeps its letters.
    """
    if text.isascii() or not _HAS_CONFUSABLE_RE.search(text):
        return text
    n_latin = len(_LATIN_RE.findall(text))
    n_other = len(_LOOKALIKE_SCRIPT_RE.findall(text))
    latin_doc = n_latin > n_other

    def repl(m: re.Match[str]) -> str:
        word = m.group(0)
        if not _HAS_CONFUSABLE_RE.search(word):
            return word
        if _LATIN_RE.search(word):
            return word.translate(_CONFUSABLE_TABLE)
        if latin_doc and all(ch in _CONFUSABLES for ch in word):
            return word.translate(_CONFUSABLE_TABLE)
        return word

    return _WORD_RE.sub(repl, text)


_HSPACE_RE = re.compile(r"[^\S\n]+")
_MANY_NL_RE = re.compile(r"\n\s*\n(\s*\n)+")


# The ASCII whitespace characters other than space and newline.
_ASCII_HSPACE_OTHER = ("\t", "\x0b", "\x0c", "\r", "\x1c", "\x1d", "\x1e", "\x1f")


def collapse_whitespace(text: str) -> str:
    """Collapse horizontal whitespace to one space and 3+ line breaks to two."""
    # Skip a substitution that cannot change anything (it costs one replacement per
    # word otherwise): an ASCII text whose only horizontal whitespace is single spaces,
    # or fewer than three line breaks.
    if not (
        text.isascii() and "  " not in text and not any(ch in text for ch in _ASCII_HSPACE_OTHER)
    ):
        text = _HSPACE_RE.sub(" ", text)
    if text.count("\n") >= 3:
        text = _MANY_NL_RE.sub("\n\n", text)
    return text.strip()


def normalize(text: str) -> str:
    """All in-place normalisations: NFKC, invisibles, Zalgo, homoglyphs, whitespace."""
    text = nfkc(text)
    text = strip_invisible(text)
    text = strip_combining_runs(text)
    text = fold_homoglyphs(text)
    return collapse_whitespace(text)


# --------------------------------------------------------------------------- decoders

_MIN_DECODED = 6  # shortest decoded payload worth scoring (characters)
_MAX_PAYLOADS = 12
_MAX_DEPTH = 2

_B64_RE = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX_ESC_RE = re.compile(r"(?:\\x[0-9a-fA-F]{2}){4,}")
_HEX_0X_RE = re.compile(r"(?:0x[0-9a-fA-F]{2}[\s,;]*){4,}")
# Same as ``(?<![0-9a-fA-F])(?:[0-9a-fA-F]{2}[ :]?){8,}(?![0-9a-fA-F])``, written to
# start with a character class (the lookbehind moved after the first digit), so that the
# regex engine skips to hex digits instead of trying every position: about twice as fast.
_HEX_RUN_RE = re.compile(
    r"[0-9a-fA-F](?<![0-9a-fA-F].)[0-9a-fA-F][ :]?(?:[0-9a-fA-F]{2}[ :]?){7,}(?![0-9a-fA-F])"
)
_PCT_RE = re.compile(r"%[0-9a-fA-F]{2}")
_HTML_REF_RE = re.compile(r"&#(?:[0-9]{2,7}|[xX][0-9a-fA-F]{2,6});")
_U_ESC_RE = re.compile(r"\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})")
_ROT13_RE = re.compile(r"\brot[\s_-]?13\b", re.IGNORECASE)


def _looks_like_text(s: str) -> bool:
    """Valid, mostly printable text with some letters (not binary noise)."""
    if len(s) < _MIN_DECODED:
        return False
    letters = sum(1 for ch in s if ch.isalpha())
    spaces = s.count(" ") + s.count("\n")
    if not _printable(s) or letters < 0.5 * len(s.replace(" ", "")):
        return False
    # A single long "word" of random letters is usually a mis-decode of something else.
    return spaces > 0 or len(s) <= 24


def _printable(s: str) -> bool:
    return bool(s) and sum(1 for ch in s if ch.isprintable() or ch in "\n\r\t") >= 0.95 * len(s)


def _bytes_to_text(raw: bytes) -> str | None:
    """UTF-8 text that is readable, or that is itself another encoded layer."""
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _looks_like_text(s):
        return s
    # An intermediate layer (base64 of hex, hex of base64 ...) is kept for recursion.
    if (
        len(s) >= 16
        and s.isascii()
        and _printable(s)
        and (_HEX_RUN_RE.fullmatch(s) or _B64_RE.fullmatch(s))
    ):
        return s
    return None


def _decode_b64(token: str) -> str | None:
    core = token.rstrip("=")
    # Plain words and identifiers are not base64: require a digit, '+', '/', or mixed case.
    if core.isalpha() and (core.islower() or core.isupper()):
        return None
    if len(core) % 4 == 1:
        return None
    padded = core + "=" * (-len(core) % 4)
    altchars = b"-_" if ("-" in core or "_" in core) else None
    try:
        raw = base64.b64decode(padded, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _bytes_to_text(raw)


def _decode_hex(token: str) -> str | None:
    digits = re.sub(r"\\x|0x|[\s,;:]", "", token)
    if len(digits) % 2:
        return None
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        return None
    return _bytes_to_text(raw)


def _u_esc(m: re.Match[str]) -> str:
    cp = int(m.group(1) or m.group(2), 16)
    try:
        return chr(cp)
    except ValueError:
        return m.group(0)


def _decode_once(text: str) -> list[str]:
    # Each regex runs only if a string that every match contains occurs in the text (a
    # substring test is far cheaper than a regex scan): "%", "&#", "\\u"/"\\U" (both
    # contain a backslash), "\\x", "0x" and, for ROT13 (any case), "13".
    out: list[str] = []
    if "%" in text and len(_PCT_RE.findall(text)) >= 2:
        out.append(unquote(text))
    if "&#" in text and len(_HTML_REF_RE.findall(text)) >= 3:
        out.append(html.unescape(text))
    backslash = "\\" in text
    if backslash and len(_U_ESC_RE.findall(text)) >= 3:
        out.append(_U_ESC_RE.sub(_u_esc, text))
    hex_res = [_HEX_RUN_RE]
    if "0x" in text:
        hex_res.insert(0, _HEX_0X_RE)
    if backslash and "\\x" in text:
        hex_res.insert(0, _HEX_ESC_RE)
    for rx in hex_res:
        for m in rx.finditer(text):
            dec = _decode_hex(m.group(0))
            if dec:
                out.append(dec)
    for m in _B64_RE.finditer(text):
        dec = _decode_b64(m.group(0))
        if dec:
            out.append(dec)
    if "13" in text and _ROT13_RE.search(text):
        out.append(codecs.decode(text, "rot13"))
    return out


def decode_payloads(text: str) -> list[str]:
    """Return normalised texts hidden in encoded payloads inside ``text``.

    The list excludes ``text`` itself and contains no duplicates. At most
    ``_MAX_PAYLOADS`` payloads are returned, found up to ``_MAX_DEPTH`` levels deep
    (for example hex inside base64).
    """
    found: list[str] = []
    seen = {text}
    frontier = [text]
    for _ in range(_MAX_DEPTH):
        nxt: list[str] = []
        for t in frontier:
            for dec in _decode_once(t):
                dec = normalize(dec)
                if dec and dec not in seen:
                    seen.add(dec)
                    found.append(dec)
                    nxt.append(dec)
                    if len(found) >= _MAX_PAYLOADS:
                        return found
        if not nxt:
            break
        frontier = nxt
    return found
