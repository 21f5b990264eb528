"""The page a local server answers at its root (`GET /`): what the server is and the
addresses to try, for a newcomer who opened it from the `make dev` banner. Only the
root becomes a page: every other path answers as the real service does."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.5;color:#1f2328}code{background:#f6f8fa;padding:0 .2rem}"
    "li{margin:.2rem 0}"
)
_CODE = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class Address:
    """One address the page names: its method, its URL and what it is for."""

    method: str
    url: str
    what: str = ""


@dataclass(frozen=True)
class Section:
    """A heading, the addresses under it, and notes (`code` in backticks)."""

    title: str
    addresses: tuple[Address, ...] = ()
    notes: tuple[str, ...] = ()


def page(title: str, intro: str, sections: Sequence[Section]) -> str:
    """The root page: `title`, an `intro` paragraph, then each section."""
    body = [f"<h1>{html.escape(title)}</h1>", f'<p id="intro">{_text(intro)}</p>']
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.addresses:
            body.append("<ul>" + "".join(_item(a) for a in section.addresses) + "</ul>")
        body.extend(f"<p>{_text(note)}</p>" for note in section.notes)
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        "<body>\n<main>\n" + "\n".join(body) + "\n</main>\n</body>\n</html>\n"
    )


def addresses(sections: Iterable[Section]) -> list[Address]:
    """Every address the sections name (the tests request each one)."""
    return [address for section in sections for address in section.addresses]


def _item(address: Address) -> str:
    what = f": {_text(address.what)}" if address.what else ""
    shown = html.escape(f"{address.method} {address.url}".strip())
    return f"<li><code>{shown}</code>{what}</li>"


def _text(text: str) -> str:
    """Escaped text, `backticked` spans as code."""
    return _CODE.sub(r"<code>\1</code>", html.escape(text, quote=False))
