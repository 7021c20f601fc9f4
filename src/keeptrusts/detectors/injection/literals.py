"""Which of many fixed strings occur in a text, in one linear pass.

Several layers gate their regexes on plain substrings ("run this pattern only if
'ignor' occurs"). Testing a few hundred substrings one by one costs tens of
microseconds per prompt; one RE2 set match over all of them costs one or two.
"""

from __future__ import annotations

from collections.abc import Iterable

import re2


class LiteralSet:
    """A fixed collection of strings; :meth:`found` tells which occur in a text."""

    def __init__(self, strings: Iterable[str]) -> None:
        self.strings: tuple[str, ...] = tuple(sorted(set(strings)))
        if not all(self.strings):
            raise ValueError("the empty string occurs everywhere; leave it out")
        self.index: dict[str, int] = {s: i for i, s in enumerate(self.strings)}
        self._set = re2.Set.SearchSet(re2.Options())
        for s in self.strings:
            self._set.Add(re2.escape(s))
        self._set.Compile()

    def found(self, text: str) -> set[int]:
        """Indices (into :attr:`strings`) of the strings that occur in ``text``."""
        try:
            hits = self._set.Match(text)
        except UnicodeEncodeError:
            # A lone surrogate (e.g. from a decoded "\ud800" escape) has no UTF-8 form.
            # No string here contains one, and UTF-8 is self-synchronising, so presence
            # is the same in the surrogate-passing bytes.
            hits = self._set.Match(text.encode("utf-8", "surrogatepass"))
        return set(hits) if hits else set()  # RE2 gives None when nothing matched
