"""Filing chosen e-mails to chosen CRM records (EML-5), and its JSON twin:

- `/me/mail/<connection>`: the messages waiting for a record ("Missing Contact") and
  those recorded lately, each with a box to tick, and with `q=` the CRM's contacts and
  leads whose name or address holds it;
- POST `.../file`: the ticked messages (`messages`) filed to each ticked record
  (`records`, "contact/<id>" or "lead/<id>"); a mail pass files them at once, and Sync
  History shows each.

A user reaches only their own connections (the same 404 for any other).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crmsync import service
from crmsync.app import Context, View, route
from crmsync.app.views import _own_connection as own_connection
from crmsync.usecases import mail

NAMED = "name:"  # a found record's name, sent with the form: "name:contact/<id>"


@route("/me/mail/<connection>")
def filing_page(context: Context) -> View:
    record = own_connection(context)
    text = str(context.request.args.get("q") or "")
    data = mail.choices(context.services, context.who.tenant, record.id, text)
    return View(data, "app/mail_file.html")


@route("/me/mail/<connection>/file", methods=("POST",))
def file_messages(context: Context) -> View:
    record = own_connection(context)
    messages, records = _listed(context.form, "messages"), _listed(context.form, "records")
    names = {k.removeprefix(NAMED): str(v) for k, v in context.form.items() if k.startswith(NAMED)}
    done = mail.file(context.services, context.who.tenant, record.id, messages, records, names)
    filed = f"{done['messages']} {'message' if done['messages'] == 1 else 'messages'}"
    to = f"{done['records']} {'record' if done['records'] == 1 else 'records'}"
    notice = f"Filing {filed} to {to}: each shows in your Sync History once it is in the CRM."
    return View(done, redirect=f"/me/mail/{record.id}", notice=notice)


def _listed(form: Mapping[str, Any], name: str) -> list[str]:
    """A form's ticked values of `name` (one ticked comes as a string)."""
    given = form.get(name) or []
    listed = [given] if isinstance(given, str) else given
    if not isinstance(listed, list) or not all(isinstance(v, str) for v in listed):
        raise service.Refused(400, f"{name} is a list of strings")
    return listed
