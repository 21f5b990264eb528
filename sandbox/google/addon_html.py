"""A Gmail add-on's Card v1 JSON drawn as an HTML page, for a look at what Gmail would
show beside the open message (`make dev`'s console; never what Gmail itself draws).

The whole card is one form, as Gmail treats a card: a button whose action calls the
add-on posts every input of the card with it (`do`: the action's function and
parameters, as JSON). Links open in a new tab."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:24rem;margin:1rem auto;color:#1f2328}"
    ".card{border:1px solid #d0d7de;border-radius:8px;padding:.5rem 1rem}"
    "header h1{font-size:1.1rem;margin:.3rem 0}header p{margin:0;color:#57606a}"
    "section{border-top:1px solid #d0d7de;padding:.4rem 0}section h2{font-size:.95rem}"
    ".line small{color:#57606a;display:block}.line{margin:.3rem 0}"
    ".note{background:#ddf4ff;padding:.4rem;border-radius:6px}"
    "button,.button{margin:.2rem .2rem .2rem 0}"
)


def page(
    card: Mapping[str, Any],
    notification: str = "",
    title: str = "Gmail add-on",
    after: str = "",
) -> str:
    """The card as a page; `notification` is the toast Gmail would show above it, and
    `after` (HTML) follows the card."""
    body = []
    if notification:
        body.append(f'<p class="note" role="status">{_t(notification)}</p>')
    body.append('<form method="post" class="card">')
    header = card.get("header") or {}
    body.append(
        f"<header><h1>{_t(header.get('title', ''))}</h1>"
        f"<p>{_t(header.get('subtitle', ''))}</p></header>"
    )
    for section in card.get("sections") or []:
        body.append("<section>")
        if section.get("header"):
            body.append(f"<h2>{section['header']}</h2>")  # Gmail's HTML subset, as given
        body.extend(_widget(w) for w in section.get("widgets") or [])
        body.append("</section>")
    body.append("</form>")
    body.append(after)
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_t(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _t(text: Any) -> str:
    return html.escape(str(text))


def _widget(widget: Mapping[str, Any]) -> str:
    if "textParagraph" in widget:
        return f"<p>{widget['textParagraph'].get('text', '')}</p>"
    if "decoratedText" in widget:
        shown = widget["decoratedText"]
        parts = ['<div class="line">']
        if shown.get("topLabel"):
            parts.append(f"<small>{shown['topLabel']}</small>")
        parts.append(f"<span>{shown.get('text', '')}</span>")
        if shown.get("bottomLabel"):
            parts.append(f"<small>{shown['bottomLabel']}</small>")
        if shown.get("button"):
            parts.append(_button(shown["button"]))
        parts.append("</div>")
        return "".join(parts)
    if "buttonList" in widget:
        buttons = widget["buttonList"].get("buttons", [])
        return "<div>" + "".join(_button(b) for b in buttons) + "</div>"
    if "textInput" in widget:
        given = widget["textInput"]
        name = _t(given.get("name", ""))
        return (
            f"<p><label>{_t(given.get('label', ''))} "
            f'<input name="{name}" value="{_t(given.get("value", ""))}"></label></p>'
        )
    if "selectionInput" in widget:
        given = widget["selectionInput"]
        name = _t(given.get("name", ""))
        items = "".join(
            f'<label><input type="checkbox" name="{name}" value="{_t(item.get("value", ""))}"'
            f"{' checked' if item.get('selected') else ''}> {_t(item.get('text', ''))}</label><br>"
            for item in given.get("items", [])
        )
        return f"<fieldset><legend>{_t(given.get('label', ''))}</legend>{items}</fieldset>"
    if "divider" in widget:
        return "<hr>"
    return f"<p>(a {', '.join(_t(k) for k in widget)} widget)</p>"


def _button(button: Mapping[str, Any]) -> str:
    click = button.get("onClick") or {}
    label = _t(button.get("text", ""))
    if "openLink" in click:
        url = _t(click["openLink"].get("url", ""))
        return f'<a class="button" href="{url}" target="_blank" rel="noopener">{label}</a>'
    if "action" in click:
        value = _t(json.dumps(click["action"]))
        return f'<button type="submit" name="do" value="{value}">{label}</button>'
    return f"<button disabled>{label}</button>"
