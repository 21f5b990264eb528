"""The pages people land on (users opening their onboarding link, coming back from
consent, or meeting a refusal): Jinja templates under `templates/`, escaped by default.
Every page says what happened and what to do next; none shows JSON or a traceback."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).parent / "templates"


@cache
def _environment() -> Any:
    # Jinja comes with functions-framework (through Flask): imported when a page is
    # first rendered, so functions that render none never pay for it.
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,  # a page missing a value fails its test, not a user
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **values: Any) -> str:
    """The page `template` (a file name under templates/) filled with `values`."""
    return str(_environment().get_template(template).render(**values))


def problem(status: int, happened: str, next_step: str = "", home: str = "") -> str:
    """The page for a request crmsync turned down: what happened, what to do next, and
    (in the web app) the way back to its home page."""
    return render(
        "problem.html",
        status=status,
        happened=happened,
        next_step=next_step or _NEXT.get(status, _NEXT[400]),
        home=home,
    )


_NEXT = {
    400: "Open the onboarding link your admin sent you again. If it keeps happening, "
    "ask your admin for a new link.",
    403: "Ask your admin: they can give you a seat or a new onboarding link.",
    404: "Check that you opened the whole link your admin sent you.",
    405: "Open the onboarding link your admin sent you in your browser.",
    409: "Nothing was changed. Open your onboarding link again, or ask your admin for help.",
    410: "Your admin can send you a new onboarding link.",
    413: "Open the onboarding link your admin sent you again.",
    503: "crmsync could not reach a service it needs. Try again in a few minutes.",
}
