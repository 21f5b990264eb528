"""The quoted replies below a message's own text, trimmed (EML-2): a CRM history item
holds what this message said, not the thread it answers, which is recorded (or not)
message by message.

A reply's quote starts at the first of these, on a line of its own:

- an attribution line: "On Mon, 2 Nov 2026 at 10:00, Ann <ann@example.com> wrote:"
  (what most webmail and desktop clients write; the line may wrap once), and its German, French,
  Spanish, Dutch and Italian forms;
- the separators of Exchange-based clients: "-----Original Message-----" (and its
  translations), a line of underscores, or a header block "From: …" followed by
  "Sent: …" / "Date: …" within the next lines;
- a block of "> " lines that runs to the end of the message.

Quotes inside the text (an answer written between the quoted lines) are kept: there the
quote is part of what the message says. A message that is nothing but a quote (a bare
forward) keeps its text whole.
"""

from __future__ import annotations

import re

_ATTRIBUTION = re.compile(
    r"^\s*(?:"
    r"On\s.{1,200}\swrote:"  # English
    r"|Am\s.{1,200}\sschrieb.{0,80}:"  # German
    r"|Le\s.{1,200}\sa\s+écrit\s*:"  # French
    r"|El\s.{1,200}\sescribió\s*:"  # Spanish
    r"|Op\s.{1,200}\sschreef.{0,80}:"  # Dutch
    r"|Il\s.{1,200}\sha\s+scritto\s*:"  # Italian
    r")\s*$",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(
    r"^\s*(?:-{3,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine|"
    r"Mensaje original|Oorspronkelijk bericht|Messaggio originale)\s*-{3,}|_{20,})\s*$",
    re.IGNORECASE,
)
_HEADER_FROM = re.compile(r"^\s*\*?(?:From|Von|De|Van|Da)\s*:\*?\s+\S", re.IGNORECASE)
_HEADER_NEXT = re.compile(
    r"^\s*\*?(?:Sent|Date|Gesendet|Datum|Envoyé|Enviado|Verzonden|Inviato|To|An|À|Para|Aan|A)"
    r"\s*:\*?\s",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"^\s*>")


def trim(text: str) -> str:
    """`text` without the quoted reply below it (see the module's rules), trailing blank
    lines dropped."""
    lines = text.splitlines()
    cut = _quote_start(lines)
    own = cut is not None and "".join(lines[:cut]).strip()
    kept = lines[:cut] if own else lines  # nothing above the quote: the quote is the message
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept)


def _quote_start(lines: list[str]) -> int | None:
    for n, line in enumerate(lines):
        if _ATTRIBUTION.match(line) or _SEPARATOR.match(line):
            return n
        if n + 1 < len(lines) and _ATTRIBUTION.match(f"{line} {lines[n + 1]}"):
            return n  # an attribution wrapped onto a second line
        if _HEADER_FROM.match(line) and any(_HEADER_NEXT.match(x) for x in lines[n + 1 : n + 4]):
            return n
    return _trailing_quote(lines)


def _trailing_quote(lines: list[str]) -> int | None:
    """Where a block of quoted ("> ") lines that runs to the end begins."""
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    start = end
    while start and (_QUOTED.match(lines[start - 1]) or not lines[start - 1].strip()):
        start -= 1
    if start == end:
        return None
    while start < end and not lines[start].strip():
        start += 1
    return start
