"""Hashed character and word n-gram features, computed with numpy only.

The same code builds the training matrix (``scripts/train_injection.py``) and scores at
run time, so training and inference cannot drift apart.

Feature definition for one text ``t``:

* ``t`` is lower-cased, whitespace runs become one space, and it is padded with a space
  on both sides (so word-initial and word-final n-grams are distinct).
* Character n-grams for every ``n`` in ``char_ngrams`` (they cross word boundaries), and
  word n-grams over ``\\w+`` tokens for every ``n`` in ``word_ngrams``.
* Every n-gram is hashed with a polynomial hash mod 2**64 (computed for all positions at
  once from prefix sums, so there is no Python loop over characters), salted with its
  kind and length, mixed with the SplitMix64 finaliser, and reduced to ``2**n_bits``
  buckets. The hash is independent of ``PYTHONHASHSEED``.
* Optional *cue* features (``cues=1``; ``2`` adds the same cues in six more
  languages, ``3`` goal hijacking and role switches without override wording): a few
  source-independent signals of an attack
  (instruction override, references to hidden/system instructions, extraction
  requests, persona/jailbreak vocabulary, refusal suppression, fake role/boundary
  markers, "say '...'" payloads), each one regex over the prepared text and one
  bucket, so that many paraphrases share one weight. A match counts as ``CUE_REPEAT``
  occurrences, which makes the cue stand out against hundreds of n-grams.
* Values are ``1 + log(count)`` per bucket, and the vector is L2-normalised.

:func:`HashingFeaturizer.positions` also returns each n-gram's start offset, which lets
the detector score sliding windows of a long text without re-hashing it.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass

import numpy as np

from .literals import LiteralSet

_U64 = np.uint64
_MOD = 1 << 64
_P = 0x100000001B3  # FNV-1 64-bit prime (odd, so it is invertible mod 2**64)
_PINV = pow(_P, -1, _MOD)
_PAIR = 0x9E3779B97F4A7C15
_C1 = _U64(0xBF58476D1CE4E5B9)
_C2 = _U64(0x94D049BB133111EB)
_WS_RE = re.compile(r"\s+")
_TOKEN_RE = re.compile(r"\w+")


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> _U64(30))
    x = x * _C1
    x = x ^ (x >> _U64(27))
    x = x * _C2
    return x ^ (x >> _U64(31))


def _mix_inplace(x: np.ndarray, tmp: np.ndarray) -> None:
    """:func:`_mix` in place (``tmp``: scratch of the same shape): same result, no
    temporaries, which matters for arrays of a few hundred elements."""
    np.right_shift(x, _U64(30), out=tmp)
    x ^= tmp
    x *= _C1
    np.right_shift(x, _U64(27), out=tmp)
    x ^= tmp
    x *= _C2
    np.right_shift(x, _U64(31), out=tmp)
    x ^= tmp


# Source-independent cues of prompt injection, matched on the prepared (lower-cased,
# space-collapsed) text. Each is one feature, whatever the exact wording.
CUE_REPEAT = 6
_OBJ = (
    r"(?:instructions?|prompts?|rules|guidelines|directions|directives|programming|"
    r"restrictions|guardrails|polic(?:y|ies)|filters?|training|constraints|context)"
)
_CUE_SPECS: tuple[tuple[tuple[str, ...], str], ...] = (
    # (literal starts: every match begins with one of them, regex anchored there)
    # instruction override
    (
        ("ignor", "disregard", "forget", "overrid", "bypass", "circumvent", "abandon", "set aside"),
        r"(?:ignore|disregard|forget|override|bypass|circumvent|abandon|set aside)\b"
        rf"[^.!?\n]{{0,40}}\b{_OBJ}",
    ),
    (
        ("ignor", "disregard", "forget"),
        r"(?:ignore|disregard|forget)\b[^.!?\n]{0,20}\b(?:above|previous|prior|earlier|"
        r"everything|all that)\b",
    ),
    # references to hidden instructions
    (
        ("previous", "prior", "above", "earlier", "preceding", "initial", "original", "hidden",
         "secret", "system", "developer"),
        r"(?:previous|prior|above|earlier|preceding|initial|original|hidden|secret|system|"
        rf"developer)\s+(?:\w+\s+)?{_OBJ}",
    ),
    (
        ("system", "initial", "hidden", "secret", "original"),
        r"(?:system|initial|hidden|secret|original)\s+(?:prompt|message|instructions?)\b",
    ),
    (
        ("your ",),
        r"your\s+(?:\w+\s+)?(?:instructions|rules|programming|guidelines|restrictions|"
        r"filters|training|prompt|creators?|developers?)\b",
    ),
    # extraction requests
    (
        ("reveal", "print", "repeat", "show", "output", "display", "leak", "disclose",
         "spell out", "dump", "tell me"),
        r"(?:reveal|print|repeat|show|output|display|leak|disclose|spell out|dump|tell me)"
        r"\b[^.!?\n]{0,30}\b(?:prompt|instructions|password|secret|key|above|rules|"
        r"configuration)\b",
    ),
    # persona / jailbreak vocabulary
    (
        ("you are now", "from now on", "you will now", "starting now", "you're now"),
        r"(?:you are now|from now on|you will now|starting now|you're now)\b",
    ),
    (
        ("dan", "jailbreak", "developer mode", "god mode", "do anything now", "unfiltered",
         "uncensored", "unrestricted", "amoral", "unethical", "no ethical", "no moral",
         "without"),
        r"(?:dan|jailbreak\w*|developer mode|god mode|do anything now|unfiltered|uncensored|"
        r"unrestricted|amoral|unethical|no (?:ethical|moral)|without (?:any )?(?:restrictions|"
        r"limits|limitations|filters|censorship|rules))\b",
    ),
    (
        ("openai", "content polic", "ethical guidelines", "safety guidelines", "moral", "censor"),
        r"(?:openai|content polic(?:y|ies)|ethical guidelines|safety guidelines|"
        r"moral(?:s|ity)?|censor\w*)\b",
    ),
    (
        ("never ", "do not refuse", "don't refuse", "cannot refuse", "can't refuse",
         "no matter what", "regardless of", "must ", "stay in character", "break character"),
        r"(?:never refuse|do not refuse|don't refuse|cannot refuse|can't refuse|"
        r"no matter what|regardless of|must (?:always )?(?:answer|comply|obey)|"
        r"never (?:say|mention|apologi[sz]e)|stay in character|break character)\b",
    ),
    # fake boundaries and role switches
    (
        ("###", "<", "[inst", "[/inst", "end of ", "system", "assistant", "admin", "user"),
        r"(?:#{3,}|</?(?:system|instructions?|user|assistant|im_start|im_end)>|\[/?inst\]|"
        r"<\|[a-z_]+\|>|end of (?:prompt|input|text|instructions|document)\b|"
        r"(?:system|assistant|admin|user)\s*:)",
    ),
    (
        ("new ",),
        r"new (?:task|instructions?|rules?|objective|role|directive)s?\b",
    ),
    # payload wording
    (
        ("say", "print", "output", "respond with", "reply with", "write", "answer with"),
        r"(?:say|print|output|respond with|reply with|write|answer with)\s+(?:only\s+|"
        r"exactly\s+|just\s+)?[\"'“‘]",
    ),
    (
        ("pwned", "hacked", "hijack", "exfiltrat", "admin password", "api key"),
        r"(?:pwned|hacked|hijack\w*|exfiltrat\w*|admin password|api keys?)\b",
    ),
    (
        ("hypothetical", "fictional world", "for educational purposes", "purely fictional",
         "in this "),
        r"(?:hypothetical\w*|fictional world|for educational purposes|purely fictional|"
        r"in this (?:story|world|universe|game))\b",
    ),
)  # fmt: skip
CUES: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = tuple(
    (starts, re.compile(rx)) for starts, rx in _CUE_SPECS
)

# Cue version 2: the same cues in German, French, Spanish, Italian, Portuguese and Dutch,
# plus a few more English persona switches. Each extra regex feeds the bucket of the cue
# it translates (index into CUES), so the weight learnt mostly from English attacks
# carries over to other languages, for which the training data has few attacks.
_DE_OBJ = (
    r"(?:\w*anweisung\w*|instruktion\w*|\w*befehl\w*|\w*regeln|vorgaben|\w*richtlinien|"
    r"aufgabe\w*|einschränkung\w*|programmierung|consignes|instructions?|règles|directives?|"
    r"instrucciones|instrucción|reglas|directrices|directriz|órdenes|istruzioni|regole|"
    r"direttive|instruções|instrucoes|regras|diretrizes|instructies|regels|opdrachten)"
)
_VERB = (
    r"(?:vergiss|vergessen sie|ignorier\w*|ignore[rz]|missacht\w*|überspring\w*|oublie\w*|"
    r"olvida\w*|ignora\w*|descarta\w*|dimentica\w*|esque[cç]a\w*|negeer\w*|vergeet)"
)
_CUE_EXTRA_SPECS: tuple[tuple[int, str], ...] = (
    (0, rf"{_VERB}\b[^.!?\n]{{0,40}}\b{_DE_OBJ}\b"),
    (1, rf"{_VERB}\b[^.!?\n]{{0,20}}\b(?:alles|obige\w*|vorherige\w*|bisherige\w*|tout|"
        r"précédent\w*|ci-dessus|todo|anterior\w*|tutto|precedent\w*|tudo|hierboven)\b"),
    (2, r"(?:vorherige\w*|bisherige\w*|obige\w*|ursprünglich\w*|geheime\w*|versteckte\w*|"
        r"vorangegangene\w*)\s+(?:\w+\s+)?(?:anweisung\w*|befehl\w*|regeln|vorgaben|"
        r"richtlinien|instruktion\w*)\b"),
    (2, r"(?:instructions|consignes|règles|instrucciones|reglas|istruzioni|regole|instruções|"
        r"regras|instructies)\s+(?:précédentes|initiales|secrètes|cachées|anteriores|previas|"
        r"iniciales|secretas|ocultas|precedenti|iniziali|segrete|nascoste|prévias|iniciais|"
        r"vorige|eerdere|geheime)\b"),
    (3, r"(?:system-?prompts?|systemanweisung\w*|systemnachricht\w*|prompt (?:système|"
        r"del sistema|di sistema|do sistema)|invite système|systeemprompt)\b"),
    (4, r"\b(?:deine|ihre|dein|tes|vos|tus|sus|tue|tuoi|suas|seus|je)\s+(?:\w+\s+)?"
        r"(?:anweisungen|regeln|programmierung|richtlinien|einschränkungen|vorgaben|"
        r"entwickler\w*|instructions|règles|consignes|instrucciones|reglas|istruzioni|regole|"
        r"instruções|regras|instructies|regels)\b"),
    (5, r"(?:zeig\w*|verrat\w*|nenn\w*|wiederhol\w*|druck\w*|gib|révèle\w*|affiche\w*|"
        r"montre\w*|répète\w*|revela\w*|muestra\w*|repite\w*|expon\w*|mostr\w*|rivela\w*|"
        r"ripeti\w*|toon|herhaal)\b[^.!?\n]{0,40}\b(?:\w*prompt\w*|\w*anweisung\w*|"
        r"passwort|kennwort|geheimnis|schlüssel|mot de passe|contraseña|clave|password|senha|"
        r"instructions?|instrucci\w+|istruzion\w|instruç\w+|directive\w*|directriz\w*|"
        r"diretriz\w*|direttiv\w|indicaci\w+|wachtwoord)\b"),
    (6, r"(?:du bist (?:jetzt|nun|ab jetzt|ab sofort|ab heute)|ab (?:jetzt|sofort)|von nun an|"
        r"tu es (?:maintenant|désormais)|à partir de maintenant|désormais|dorénavant|"
        r"ahora eres|a partir de ahora|de ahora en adelante|da ora in poi|d'ora in poi|"
        r"ora sei|agora (?:você é|voce e|és)|a partir de agora|vanaf nu|je bent nu|"
        r"now you(?: are|'re)|pretend (?:to be|you are|you're)|imagine (?:you are|you're)|"
        r"you are no longer|act as if you (?:have|had) no)\b"),
    (7, r"(?:ohne (?:jegliche |irgendwelche |alle )?(?:einschränkungen|regeln|filter|zensur|"
        r"grenzen|moral|ethik)|uneingeschränkt\w*|unzensiert\w*|sans (?:aucune )?(?:restrictions?|"
        r"règles|filtres?|censure|limites)|sin (?:ninguna )?(?:restricciones|reglas|filtros|"
        r"censura|límites)|senza (?:alcuna )?(?:restrizion\w|regole|filtri|censura|limiti)|"
        r"sem (?:nenhuma )?(?:restrições|regras|filtros|censura|limites)|zonder (?:regels|"
        r"beperkingen|filters|censuur))\b"),
    (11, r"(?:neue (?:aufgabe|anweisung\w*|regel\w*|rolle)|nouvel\w* (?:tâche|instructions?|"
         r"règles?|rôle)|nuev\w* (?:tarea|instrucci\w+|reglas?|rol)|nuov\w (?:compito|istruzion\w|"
         r"regol\w|ruolo)|nov\w (?:tarefa|instruç\w+|regras?|função)|nieuwe (?:taak|"
         r"instructies|regels|rol))\b"),
    (12, r"(?:sag|sage|schreib\w*|antworte\w* (?:nur )?mit|gib (?:nur )?aus|dis|écris|réponds|"
         r"di|escribe|responde con|scrivi|rispondi con|diga|escreva|responda com|zeg|schrijf)"
         r"\s+(?:nur\s+|genau\s+|seulement\s+|solo\s+|só\s+|alleen\s+)?[\"'“„«‘]"),
    (14, r"(?:gehackt|gekapert|piraté|hackeado|hackerato|gehackt)\b"),
)  # fmt: skip
# Cue version 3: goal hijacking and role switches that carry no "ignore your
# instructions" wording ("your real task is ...", "whatever the operator said",
# "du bist keine KI mehr"), requests for other users' data or internal settings, and
# "maintenance mode" style jailbreaks, in English and German. Versioned separately so
# that an artifact trained with version 2 keeps exactly the features it was fitted on.
_CUE_V3_SPECS: tuple[tuple[int, str], ...] = (
    # One alternative per regex: each gets its own, more selective substring gate, so
    # that a long benign text runs few of them (see "fast cue scanning" below).
    (11, r"your (?:real|actual|true) (?:task|job|goal|instructions?)\b"),
    (11, r"(?:deine|ihre) (?:eigentliche|wahre|echte) (?:aufgabe|anweisung)\b"),
    (11, r"whatever (?:you were told|the (?:operator|developer|system|admin)\w* "
         r"(?:said|told you))\b"),
    (11, r"egal,? was (?:man dir|dir|der|die) (?:\w+ )?(?:gesagt|befohlen|vorgegeben)\b"),
    (6, r"du bist (?:jetzt |nun |ab sofort )?(?:keine?|nicht mehr) (?:ki|assistent\w*|"
        r"chatbot|bot|sprachmodell)\b"),
    (6, r"sei (?:kein|keine) \w+ (?:\w+ )?mehr\b"),
    (6, r"tu so,? als (?:ob|hättest|wärst)\b"),
    (6, r"spielen wir ein (?:spiel|rollenspiel),? (?:in dem|bei dem|wo) du\b"),
    (6, r"(?:you are|you're) (?:not|no longer) an? (?:ai|assistant|chatbot|language model)\b"),
    (6, r"stop being an? (?:\w+ )?(?:ai|assistant|chatbot)\b"),
    (6, r"let's (?:play a game|roleplay|role-play) (?:where|in which) you\b"),
    (7, r"(?:ki|bot|modell|ai|model|assistant|chatbot) (?:ohne|without|with no) (?:\w+ )?"
        r"(?:gesetze|regeln|grenzen|ethik|moral|laws|rules|limits|ethics|morals)\b"),
    (7, r"(?:wartungs|debug|admin|entwickler|god)-?modus\b"),
    (7, r"(?:maintenance|debug|admin) mode\b"),
    (5, r"(?:daten|informationen|details|data|information) (?:\w+ )?(?:über|von|about|on|of) "
        r"(?:andere|anderen|other) (?:nutzer\w*|benutzer\w*|kunden|users?|customers?)"),
    (5, r"(?:interne\w*|internal|hidden|versteckte\w*) (?:konfiguration\w*|configuration|"
        r"einstellungen|settings)"),
    (5, r"(?:passwort|password|kennwort)[^.!?\n]{0,60}\b(?:buchstabier\w*|spell|backwards|"
        r"rückwärts|base64|encode\w*|kodier\w*|verschlüssel\w*)"),
)  # fmt: skip
CUE_EXTRA: tuple[tuple[int, re.Pattern[str], int], ...] = tuple(
    [(k, re.compile(rx), 2) for k, rx in _CUE_EXTRA_SPECS]
    + [(k, re.compile(rx), 3) for k, rx in _CUE_V3_SPECS]
)


# ---------------------------------------------------------------- fast cue scanning
#
# Scanning a text with a few dozen unanchored regexes costs far more than the n-grams.
# Two shortcuts keep the result identical:
#
# * The CUES regexes are tried only at their candidate positions (one of their literal
#   starts, at a word start when the literal begins with a letter or digit).
# * Each CUE_EXTRA regex gets a *gate*: sets of strings such that every match contains
#   at least one string of every set (derived from the parsed regex, below). A regex
#   whose gate fails cannot match and is not run.
#
# Both need to know which of a few hundred literal strings occur in the text. One RE2
# set match answers that in a single linear pass (about 1.5 us for a 50-word prompt,
# against about 30 us for a zero-width scan regex plus a substring test per string);
# only the literals found are then located with ``str.find``.

_Gate = tuple[tuple[str, ...], ...]


def _minimal(strings: set[str]) -> tuple[str, ...]:
    """Drop strings that contain another one of the set (the shorter one is implied)."""
    keep = [s for s in strings if not any(o != s and o in s for o in strings)]
    return tuple(sorted(keep))


def _required(seq: object) -> list[set[str]] | None:
    """Necessary-substring sets of a parsed regex sequence: every match contains at least
    one string of each returned set. ``None`` (or an empty list) means "no usable set".

    Conservative on purpose: any construct not understood contributes nothing, so an
    error here can only make a gate weaker, never wrong.
    """
    from re import _constants as c  # type: ignore[attr-defined]

    sets: list[set[str]] = []
    run: list[str] = []
    for op, av in seq:  # type: ignore[attr-defined]
        if op is c.LITERAL:
            run.append(chr(av))
            continue
        if run:
            sets.append({"".join(run)})
            run = []
        sub: list[set[str]] | None = None
        if op is c.SUBPATTERN:
            _group, add_flags, _del_flags, p = av
            if add_flags & (c.SRE_FLAG_IGNORECASE | c.SRE_FLAG_VERBOSE):
                return None
            sub = _required(p)
        elif op is c.BRANCH:
            alts: set[str] = set()
            for alt in av[1]:
                got = _required(alt)
                if not got:
                    sub = None
                    break
                alts |= _best(got)
            else:
                sub = [alts]
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT) and av[0] >= 1:
            sub = _required(av[2])
        elif op is c.IN and av and all(o is c.LITERAL for o, _ in av):
            sub = [{chr(ch) for _, ch in av}]  # a class of plain characters: [\"']
        if sub:
            sets.extend(sub)
    if run:
        sets.append({"".join(run)})
    return sets


def _best(sets: list[set[str]]) -> set[str]:
    """The most selective set: longest shortest string, then fewest strings."""
    return max(sets, key=lambda s: (min(map(len, s)), -len(s)))


def _gate(rx: re.Pattern[str]) -> _Gate:
    """Gate of ``rx`` (see above); ``()`` when none could be derived (always run)."""
    if rx.flags & (re.IGNORECASE | re.VERBOSE):
        return ()
    try:
        from re import _parser  # type: ignore[attr-defined]

        sets = _required(_parser.parse(rx.pattern, rx.flags))
    except Exception:  # private parser API: no gate is always correct
        return ()
    if not sets:
        return ()

    # Cheap and selective sets first, so that most texts are rejected after a few
    # substring tests: sets of strings of 4+ characters or of punctuation (quote marks)
    # rarely all miss in vain; within a kind, fewer strings cost less.
    def rank(strings: set[str]) -> tuple[bool, int]:
        selective = all(len(x) >= 4 or not any(ch.isalnum() for ch in x) for x in strings)
        return (not selective, len(strings))

    ranked = sorted((_minimal(s) for s in sets), key=lambda s: rank(set(s)))
    return tuple(ranked[:3])


_LITERALS = LiteralSet(
    [lit for starts, _rx in CUES for lit in starts]
    + [x for _k, rx, _v in CUE_EXTRA for group in _gate(rx) for x in group]
)


# Literal index -> ((cue index, whether the literal must start a word), ...) for the
# CUES whose literal starts it is.
_CUES_OF_LITERAL: dict[int, tuple[tuple[int, bool], ...]] = {}
for _k, (_starts, _rx) in enumerate(CUES):
    for _lit in _starts:
        _j = _LITERALS.index[_lit]
        _CUES_OF_LITERAL[_j] = (*_CUES_OF_LITERAL.get(_j, ()), (_k, _lit[0].isalnum()))
# (cue index, regex, gate as literal indices, cue version); an empty gate always passes.
_CUE_EXTRA_GATED: tuple[tuple[int, re.Pattern[str], tuple[frozenset[int], ...], int], ...] = tuple(
    (k, rx, tuple(frozenset(_LITERALS.index[x] for x in group) for group in _gate(rx)), v)
    for k, rx, v in CUE_EXTRA
)


def _word_start(t: str, i: int) -> bool:
    # ``\w`` minus ``_`` is exactly ``str.isalnum``.
    return i == 0 or not t[i - 1].isalnum()


@functools.lru_cache(maxsize=8)
def _cue_buckets(seed: int, n_features: int) -> tuple[int, ...]:
    """One bucket per cue (salted like the n-grams, so it depends on ``seed`` only)."""
    keys = np.array([(seed * 7919 + 0xC0E + k) * _PAIR % _MOD for k in range(len(CUES))], _U64)
    return tuple(int(b) & (n_features - 1) for b in _mix(keys))


def _powers(base: int, n: int) -> np.ndarray:
    """``base**0 .. base**(n-1)`` mod 2**64."""
    out = np.full(n, base, dtype=_U64)
    out[0] = 1
    return np.cumprod(out, dtype=_U64)


@functools.lru_cache(maxsize=256)
def _salt(seed: int, kind: int, n: int) -> np.uint64:
    """Salt of the n-grams of one kind and length (cached: big-int arithmetic)."""
    return _U64((seed * 1_000_003 + kind * 101 + n) * _PAIR % _MOD)


class _Tables:
    """Powers of ``_P`` and ``_PINV`` and ``0, 1, 2 ...``, computed once for a length and
    sliced per text (slices of a cumulative product equal a shorter product). Grown by
    replacing the whole tuple, so concurrent readers always see a consistent set."""

    def __init__(self) -> None:
        self._t = self._build(4096)

    @staticmethod
    def _build(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tables = (_powers(_P, n), _powers(_PINV, n), np.arange(n, dtype=np.int64))
        for a in tables:
            a.setflags(write=False)
        return tables

    def get(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(P**k, PINV**k, k)`` for ``k < n`` at least (maybe longer)."""
        t = self._t
        if t[0].shape[0] < n:
            t = self._build(max(n, 2 * t[0].shape[0]))
            self._t = t
        return t


_TABLES = _Tables()

# ASCII code -> 1 if the character is a ``\w`` character ([0-9A-Za-z_]), else 0.
_ASCII_WORD = np.zeros(128, dtype=np.int8)
for _c in range(128):
    _ASCII_WORD[_c] = 1 if re.fullmatch(r"\w", chr(_c)) else 0


def prepare(text: str) -> str:
    """The exact string the n-grams are taken from."""
    # ``str.split()`` splits at runs of exactly the characters ``\s`` matches and drops
    # the ends: the same as ``_WS_RE.sub(" ", ...).strip()``, without one substitution
    # per space.
    return " " + " ".join(text.lower().split()) + " "


def _code_prefix(t: str) -> tuple[np.ndarray | None, np.ndarray]:
    """``(t's bytes if it is ASCII else None, prefix)`` with ``prefix[k] = sum_{j<k} c[j] *
    P^-j`` over its code points ``c`` (mod 2**64): the hash of ``t[s:e]`` is then
    ``P^(e-1) * (prefix[e] - prefix[s])``, whatever ``s`` is."""
    if t.isascii():
        codes8 = np.frombuffer(t.encode("ascii"), dtype=np.uint8)
        codes = codes8.astype(_U64)
    else:
        codes8 = None
        codes = np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32).astype(_U64)
    length = codes.shape[0]
    prefix = np.zeros(length + 1, dtype=_U64)
    np.multiply(codes, _TABLES.get(length + 1)[1][:length], out=codes)
    np.cumsum(codes, dtype=_U64, out=prefix[1:])
    return codes8, prefix


_SENTINEL = np.uint32(0xFFFFFFFF)


def _sparse(buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sorted distinct buckets as uint32, L2-normalised 1 + log(count))`` of a
    non-empty bucket array (every bucket below 2**32 - 1).

    The same values as ``np.unique(buckets, return_counts=True)`` and the arithmetic of
    :meth:`HashingFeaturizer.vectorize`, in fewer numpy calls: 32-bit keys sort about
    twice as fast as 64-bit ones, and a sentinel after the last key closes the last run.
    """
    n = buckets.shape[0]
    b = np.empty(n + 1, dtype=np.uint32)
    b[:n] = buckets
    b[n] = _SENTINEL
    b.sort()
    idx, vals = _counted(b)
    vals /= np.sqrt((vals * vals).sum())
    return idx, vals


def _counted(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(distinct keys, 1 + log(count) of each)`` of sorted ``keys`` whose last element
    is a sentinel above all others (it closes the last run and is not counted)."""
    # Run boundaries: 0, every k where keys[k] != keys[k-1], and the sentinel's index.
    edge = np.empty(keys.shape[0], dtype=bool)
    edge[0] = True
    np.not_equal(keys[1:], keys[:-1], out=edge[1:])
    bounds = np.flatnonzero(edge)
    vals = np.log(bounds[1:] - bounds[:-1])
    vals += 1.0
    return keys[bounds[:-1]], vals


_SENTINEL64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def sparse_many(
    buckets: np.ndarray, owner: np.ndarray, n_texts: int
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """:func:`_sparse` of several texts' buckets at once (``owner``: each bucket's text).

    Returns ``(idx, vals, bounds)``: text ``i``'s sparse vector is
    ``idx[bounds[i]:bounds[i + 1]]`` and ``vals[...]``, equal to ``_sparse`` of its
    buckets value for value (same sorted order; each text's norm is summed over its own
    slice, so even the floating-point rounding is the same). A text without buckets gets
    an empty slice.
    """
    n = buckets.shape[0]
    key = np.empty(n + 1, dtype=_U64)
    np.left_shift(owner.astype(_U64), _U64(32), out=key[:n])
    key[:n] |= buckets.astype(_U64)
    key[n] = _SENTINEL64
    key.sort()
    first, vals = _counted(key)
    idx = (first & _U64(0xFFFFFFFF)).astype(np.uint32)
    text_of = (first >> _U64(32)).astype(np.int64)
    bounds = np.searchsorted(text_of, np.arange(n_texts + 1)).tolist()
    for a, b in itertools.pairwise(bounds):
        if b > a:
            v = vals[a:b]
            v /= np.sqrt((v * v).sum())
    return idx, vals, bounds


@dataclass(frozen=True)
class HashingFeaturizer:
    n_bits: int = 20
    char_ngrams: tuple[int, ...] = (3, 4, 5)
    word_ngrams: tuple[int, ...] = (1, 2)
    seed: int = 0x5EED
    # Cue features (0 = off): each match of a :data:`CUES` regex adds ``CUE_REPEAT``
    # occurrences of one bucket per cue, so that paraphrases share one weight.
    cues: int = 0

    @property
    def n_features(self) -> int:
        return 1 << self.n_bits

    def to_dict(self) -> dict:
        return {
            "n_bits": self.n_bits,
            "char_ngrams": list(self.char_ngrams),
            "word_ngrams": list(self.word_ngrams),
            "seed": self.seed,
            "cues": self.cues,
        }

    @classmethod
    def from_dict(cls, d: dict) -> HashingFeaturizer:
        return cls(
            n_bits=int(d["n_bits"]),
            char_ngrams=tuple(int(n) for n in d["char_ngrams"]),
            word_ngrams=tuple(int(n) for n in d["word_ngrams"]),
            seed=int(d["seed"]),
            cues=int(d.get("cues", 0)),
        )

    def _salt(self, kind: int, n: int) -> np.uint64:
        return _salt(self.seed, kind, n)

    def positions(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(buckets, starts)``: one entry per n-gram occurrence.

        ``buckets`` are int64 feature indices in ``[0, 2**n_bits)``; ``starts`` are the
        n-grams' start offsets in :func:`prepare` ``(text)``. Order: character n-grams by
        ``n``, word n-grams by ``n``, then cues.
        """
        buckets, starts = self._positions(prepare(text), True)
        assert starts is not None
        return buckets, starts

    def buckets(self, t: str) -> np.ndarray:
        """The ``buckets`` of :meth:`positions` for an already prepared text ``t``
        (:func:`prepare`), without building the start offsets."""
        return self._positions(t, False)[0]

    def _positions(self, t: str, with_starts: bool) -> tuple[np.ndarray, np.ndarray | None]:
        codes8, prefix = _code_prefix(t)
        length = prefix.shape[0] - 1
        pw, _pinv, ar = _TABLES.get(length + 1)

        # All n-gram hashes go into one buffer, salted per kind and length, and are then
        # mixed and masked by one vectorised pass (numpy's per-call cost dominates for
        # texts of a few hundred characters, so fewer and larger calls are faster).
        sizes = [length - n + 1 for n in self.char_ngrams if length >= n]
        n_words = 0
        ws = last = None
        if self.word_ngrams:
            # ws: start of each \w+ token; last: offset of its last character.
            ws, last = self._word_bounds(t, codes8)
            n_words = ws.shape[0]
            for n in self.word_ngrams:
                if n_words >= n:
                    sizes.append(n_words - n + 1)
        total = sum(sizes)
        out = np.empty(total, dtype=_U64)
        tmp = np.empty(total, dtype=_U64)
        pos = 0
        for n in self.char_ngrams:
            if length < n:
                continue
            m = length - n + 1
            seg = out[pos : pos + m]
            # h(s) = P^(s+n-1) * (prefix[s+n] - prefix[s]) for s = 0 .. m-1: plain slices.
            np.subtract(prefix[n:], prefix[:m], out=seg)
            seg *= pw[n - 1 : length]
            seg ^= self._salt(1, n)
            pos += m
        if n_words and ws is not None and last is not None:
            # Token [s, e): P^(e-1) * (prefix[e] - prefix[s]), with e - 1 = last.
            wh = pw[last]
            wh *= prefix[1:][last] - prefix[ws]
            _mix_inplace(wh, tmp[:n_words])
            for n in self.word_ngrams:
                if n_words < n:
                    continue
                m = n_words - n + 1
                h = out[pos : pos + m]
                if n == 1:
                    h[:] = wh
                else:
                    h[:] = wh[:m]
                    for k in range(1, n):
                        h *= _U64(_PAIR)
                        h += wh[k : m + k]
                        _mix_inplace(h, tmp[:m])
                h ^= self._salt(2, n)
                pos += m
        _mix_inplace(out, tmp)
        out &= _U64(self.n_features - 1)
        # Every bucket is below 2**n_bits, so the int64 view has the same values.
        buckets = out.view(np.int64)
        cb = cs = None
        if self.cues:
            cb, cs = self._cue_positions(t)
            if cb.size:
                buckets = np.concatenate([buckets, cb])
            else:
                cb = None
        if not with_starts:
            return buckets, None
        starts: list[np.ndarray] = [ar[: length - n + 1] for n in self.char_ngrams if length >= n]
        if ws is not None:
            for n in self.word_ngrams:
                if n_words >= n:
                    starts.append(ws[: n_words - n + 1])
        if cb is not None and cs is not None:
            return buckets, np.concatenate([*starts, cs])
        if not total:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return buckets, np.concatenate(starts) if len(starts) > 1 else starts[0].copy()

    def buckets_many(self, ts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The :meth:`buckets` of several prepared texts, in one pass over them joined.

        Returns ``(buckets, owner)``: every text's buckets (in another order within a text,
        which the sorted sparse vector does not see) and the index in ``ts`` of the text
        each belongs to. The hashes do not depend on where a text starts (see
        :meth:`_positions`), so only the n-grams that would straddle two texts are dropped;
        no word straddles two, as every prepared text starts and ends with a space.
        """
        joined = "".join(ts)
        lens = np.fromiter(map(len, ts), dtype=np.int64, count=len(ts))
        # (An ASCII text's code points are its bytes, so the hashes do not depend on
        # whether the other texts of the batch are ASCII.)
        codes8, prefix = _code_prefix(joined)
        length = prefix.shape[0] - 1
        pw, _pinv, _ar = _TABLES.get(length + 1)
        owner_at = np.repeat(np.arange(len(ts), dtype=np.int64), lens)
        hashes: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        for n in self.char_ngrams:
            if length < n:
                continue
            m = length - n + 1
            h = prefix[n:] - prefix[:m]
            h *= pw[n - 1 : length]
            h ^= self._salt(1, n)
            first, last = owner_at[:m], owner_at[n - 1 :]
            keep = first == last
            hashes.append(h[keep])
            owners.append(first[keep])
        if self.word_ngrams:
            ws, last_char = self._word_bounds(joined, codes8)
            n_words = ws.shape[0]
            if n_words:
                wh = pw[last_char]
                wh *= prefix[1:][last_char] - prefix[ws]
                _mix_inplace(wh, np.empty(n_words, dtype=_U64))
                w_owner = owner_at[ws]
                for n in self.word_ngrams:
                    if n_words < n:
                        continue
                    m = n_words - n + 1
                    h = wh[:m].copy()
                    tmp = np.empty(m, dtype=_U64)
                    for k in range(1, n):
                        h *= _U64(_PAIR)
                        h += wh[k : m + k]
                        _mix_inplace(h, tmp)
                    h ^= self._salt(2, n)
                    keep = w_owner[:m] == w_owner[n - 1 :]
                    hashes.append(h[keep])
                    owners.append(w_owner[:m][keep])
        out = np.concatenate(hashes) if hashes else np.zeros(0, dtype=_U64)
        _mix_inplace(out, np.empty_like(out))
        out &= _U64(self.n_features - 1)
        buckets = out.view(np.int64)
        owner = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64)
        if self.cues:
            cue_b: list[np.ndarray] = [buckets]
            cue_o: list[np.ndarray] = [owner]
            for i, t in enumerate(ts):
                cb, _cs = self._cue_positions(t)
                if cb.size:
                    cue_b.append(cb)
                    cue_o.append(np.full(cb.shape[0], i, dtype=np.int64))
            if len(cue_b) > 1:
                buckets, owner = np.concatenate(cue_b), np.concatenate(cue_o)
        return buckets, owner

    @staticmethod
    def _word_bounds(t: str, codes8: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Start offset and offset of the last character of the ``\\w+`` tokens of
        ``t`` (int64 arrays; the second one may be a strided view)."""
        if codes8 is None:
            spans = [m.span() for m in _TOKEN_RE.finditer(t)]
            if not spans:
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
            sp = np.asarray(spans, dtype=np.int64)
            return sp[:, 0].copy(), sp[:, 1] - 1
        # ASCII: a lookup table marks word characters; the mark changes (0 -> 1 at a
        # token's first character, 1 -> 0 after its last) in alternation, because ``t``
        # starts and ends with a space. Index i of a change: w[i + 1] != w[i].
        w = _ASCII_WORD[codes8]
        nz = np.flatnonzero(w[1:] != w[:-1])
        return nz[0::2] + 1, nz[1::2]

    def _cue_positions(self, t: str) -> tuple[np.ndarray, np.ndarray]:
        """Cue matches, per cue in increasing position (CUES first, then CUE_EXTRA). A
        CUES regex is tried only at its candidate positions; a CUE_EXTRA regex runs only
        when its gate says it can match (see "fast cue scanning" above)."""
        ids = _cue_buckets(self.seed, self.n_features)
        found = _LITERALS.found(t)
        bk: list[int] = []
        st: list[int] = []
        cand: dict[int, set[int]] = {}
        for j in found:
            cues = _CUES_OF_LITERAL.get(j)
            if cues is None:
                continue
            lit = _LITERALS.strings[j]
            i = t.find(lit)
            while i >= 0:
                start = _word_start(t, i)
                for k, word in cues:
                    if start or not word:
                        cand.setdefault(k, set()).add(i)
                i = t.find(lit, i + 1)
        for k in sorted(cand):
            rx = CUES[k][1]
            for i in sorted(cand[k]):
                if rx.match(t, i):
                    bk.append(ids[k])
                    st.append(i)
        if self.cues >= 2:
            for k, rx, gate, version in _CUE_EXTRA_GATED:
                if version > self.cues:
                    continue
                for group in gate:
                    if found.isdisjoint(group):
                        break
                else:
                    for m in rx.finditer(t):
                        bk.append(ids[k])
                        st.append(m.start())
        if not bk:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return (
            np.repeat(np.asarray(bk, dtype=np.int64), CUE_REPEAT),
            np.repeat(np.asarray(st, dtype=np.int64), CUE_REPEAT),
        )

    @staticmethod
    def vectorize(buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sparse L2-normalised ``(indices, values)`` from n-gram bucket occurrences."""
        if buckets.size == 0:
            return buckets, np.zeros(0, dtype=np.float64)
        idx, vals = _sparse(buckets)
        return idx.astype(np.int64), vals

    def transform_one(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        return self.vectorize(self.positions(text)[0])
