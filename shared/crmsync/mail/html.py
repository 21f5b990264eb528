"""HTML-only mail as plain text (EML-2), through inscriptis, a maintained converter that
lays out paragraphs, line breaks, lists and tables as a reader would expect.

Imported only by a cycle that reads such a message: inscriptis and lxml cost about
40 ms to import, which no other function pays at its cold start.
"""

from __future__ import annotations

import re

_BLANK_RUNS = re.compile(r"\n{3,}")


def to_text(html: str) -> str:
    """The text a reader sees in `html`: scripts, styles and markup gone, blocks on lines
    of their own, no run of more than one blank line."""
    if not html.strip():
        return ""
    from inscriptis import get_text  # imported when a message needs it

    try:
        text = get_text(html)
    except ValueError:  # lxml refuses some documents (e.g. only a declaration)
        return ""
    lines = [line.rstrip() for line in text.splitlines()]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n")
