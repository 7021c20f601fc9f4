"""Does a text look like source code? Both injection layers treat pasted code with care.

Code is a blind spot of the training data: its benign rows are prompts and documents, so a
window of code (a licence header, a docstring about "root" and "restrictions") can look
like a rule-laden prompt. The shipped model lowers its window logits on code
(``CODE_WINDOW_MARGIN`` in the package); the deep layer does not read code at all.
"""

from __future__ import annotations

import re

__all__ = ["CODE_SCAN_CHARS", "looks_like_code"]

# A line of code: indented, a comment or keyword at its start, or a bracket, colon, comma,
# semicolon or "=" at its end.
_CODE_START = re.compile(
    r"^\s*(?:#|//|/\*|\*|@|<|\}|\{|(?:import|from|def|class|return|if|elif|else|for|while|"
    r"try|except|public|private|function|const|let|var|SELECT|select)\b)"
)
_CODE_END = re.compile(r"[:{};,()\[\]=]\s*$")
CODE_MIN_LINES = 4
CODE_LINE_SHARE = 0.5


def looks_like_code(text: str) -> bool:
    """At least half of 4+ non-blank lines look like code. Measured on the project's data:
    96 % of 80 standard-library files, 1.8 % of benign and 2.3 % of injection rows."""
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) < CODE_MIN_LINES:
        return False
    hits = sum(
        1
        for line in lines
        if line.startswith(("  ", "\t")) or _CODE_START.match(line) or _CODE_END.search(line)
    )
    return hits >= CODE_LINE_SHARE * len(lines)


# How much of a text the check reads (the first ~1,000 tokens' worth).
CODE_SCAN_CHARS = 24_600
