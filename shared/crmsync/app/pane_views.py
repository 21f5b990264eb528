"""Signing a mail client's pane in through the web app (CTX-1): where the mail client's
own sign-in (Office SSO) is not available, the pane opens `/me/pane/<provider>` in the
client's sign-in window; the user signs in to the web app as anywhere else, and the
page hands the pane a key for their connection of that provider (`pane.pane_key`),
through the provider's own page for it (`/addon/<provider>/signed-in`), which passes it
to the pane the way its mail client passes a window's answer."""

from __future__ import annotations

from crmsync import service
from crmsync.app import Context, View, route
from crmsync.usecases import pane


@route("/me/pane/<provider>")
def pane_sign_in(context: Context) -> View:
    services, who = context.services, context.who
    provider = context.params["provider"]
    if not service.pane_has_pages(services, provider):
        raise service.Refused(404, "crmsync has no pane to sign in to here", "Close this window.")
    store = services.backend.store(who.tenant)
    record = service.connection_of(store, service.connection_id(who.user, provider))
    label = services.kit(provider).label
    if record is None or not record.live:
        raise service.Refused(
            404,
            f"you have not connected a {label} account to crmsync",
            "Connect it from your crmsync page, then open the pane again.",
        )
    key = pane.pane_key(services, who.tenant, record.id)
    signed_in = f"{services.public_url.rstrip('/')}/addon/{provider}/signed-in#key={key}"
    if context.api:
        return View({"address": signed_in}, headers={"Cache-Control": "no-store"})
    return View({}, status=303, headers={"Location": signed_in, "Cache-Control": "no-store"})
