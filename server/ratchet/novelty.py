"""Is this edit new? A file's digest after normalising whitespace and comments, so an edit
that only reformats or re-comments an already measured file is not run again."""

from __future__ import annotations

import hashlib
import io
import tokenize

_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
# Block structure matters in Python, so layout tokens stay as markers, whatever their spacing.
_MARKERS = {tokenize.NEWLINE: ";", tokenize.INDENT: "{", tokenize.DEDENT: "}"}


def normalise(text: str) -> str:
    """Python source as its token stream without comments or layout; other text, squeezed."""
    try:
        tokens = tokenize.generate_tokens(io.StringIO(text).readline)
        return " ".join(
            _MARKERS.get(tok.type, tok.string) for tok in tokens if tok.type not in _SKIP
        )
    except (tokenize.TokenError, IndentationError, SyntaxError):
        lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
        return "\n".join(" ".join(line.split()) for line in lines if line)


def digest(text: str) -> str:
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()[:16]
