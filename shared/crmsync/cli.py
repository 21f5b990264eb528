"""The `crmsync` command: `conformance` (the CRM vendor's kit), `addon-deployment` (the
mail client's add-on, CTX-1), and the operator's
`tenant` (register a tenant), `onboarding-link` (a user's link to connect) and
`admin-consent-link` (a directory admin's approval for a whole organisation), which
act on a deployment through the same variables the functions read (see
`crmsync.entrypoints`): from the environment, or from a configuration file of them
(`--config PATH` or CRMSYNC_CONFIG; `crmsync.envfile`), which `make dev` writes for
its stack. A variable set in the environment wins over the file's.

Whatever goes wrong, an operator's command says so in one line and exits with 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# What the variables an operator's command cannot do without are for.
PURPOSES = {
    "CRMSYNC_SECRET": "the secret that signs onboarding links and OAuth states",
    "CRMSYNC_PUBLIC_URL": "where the functions answer, which the links point at",
    "CRMSYNC_LOCAL_KEK": "the token vault's key, where there is no CRMSYNC_KMS_KEY",
    "GOOGLE_CLOUD_PROJECT": "the project whose Firestore holds the tenants",
}
# Without any of these and without a configuration file, no deployment is named at all.
NAMING = ("CRMSYNC_PUBLIC_URL", "CRMSYNC_SECRET", "CRMSYNC_TASKS_QUEUE")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crmsync")
    verbs = parser.add_subparsers(dest="verb", required=True)
    kit = verbs.add_parser(
        "conformance",
        help="check a CRM's implementation of the crmsync CRM contract",
        description="Runs behavioural checks and schema fuzzing against a test tenant; "
        "prints a pass/fail table and exits non-zero on any failure.",
    )
    kit.add_argument("--base-url", required=True, help="the tenant's base URL")
    kit.add_argument("--token", required=True, help="the tenant's integration token")
    kit.add_argument("--user", help="CRM user to act for (default: the first active user)")
    kit.add_argument("--other-token", help="a second tenant's token, for isolation")
    kit.add_argument("--expired-token", help="an expired token of the tenant")
    kit.add_argument("--examples", type=int, default=20, help="fuzzed requests per operation")
    kit.add_argument("--no-fuzz", action="store_true", help="only the behavioural checks")
    kit.add_argument("--contract", type=Path, help="another copy of the contract to fuzz")
    deployment = argparse.ArgumentParser(add_help=False)
    deployment.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="a private file of the deployment's variables, KEY=value a line (default: "
        "CRMSYNC_CONFIG; make dev writes build/dev/current.env); the environment wins",
    )
    tenant = verbs.add_parser(
        "tenant",
        parents=[deployment],
        help="register a tenant (a CRM installation); prints its admin token once",
        description="The CRM's API token and the secret that signs its change events are "
        "read from CRMSYNC_NEW_CRM_TOKEN and CRMSYNC_NEW_EVENT_SECRET, or asked for, so "
        "they never appear in a shell history.",
    )
    tenant.add_argument("--id", required=True, help="the tenant id (letters, digits, - _)")
    tenant.add_argument("--name", required=True, help="the tenant's display name")
    tenant.add_argument("--crm-base-url", required=True, help="the CRM contract's base URL")
    tenant.add_argument("--seats", type=int, default=10, help="connections allowed (AUTH-6)")
    tenant.add_argument(
        "--crm-record-url",
        help="where a record opens in the CRM, e.g. https://crm.example/{kind}/{id} (HIS-4)",
    )
    tenant.add_argument(
        "--providers", help="the providers users may connect, comma-separated (default: all)"
    )
    tenant.add_argument(
        "--services", help="what users may connect: sync, mail or sync,mail (default: both)"
    )
    tenant.add_argument(
        "--admins",
        help="who signs in to the web app as the tenant's admins: user ids or e-mail "
        "addresses, comma-separated",
    )
    link = verbs.add_parser(
        "onboarding-link",
        parents=[deployment],
        help="a user's link to connect an account",
        description="Prints the link a user opens to connect their Google or Microsoft 365 "
        "account; it is theirs alone and valid 7 days.",
    )
    link.add_argument("--tenant", required=True, help="the tenant id")
    link.add_argument("--user", required=True, help="the user id in crmsync")
    link.add_argument("--crm-user", help="the CRM user id, when it differs (AUTH-5)")
    consent = verbs.add_parser(
        "admin-consent-link",
        parents=[deployment],
        help="a directory admin's link to approve crmsync for their whole organisation",
        description="Where the provider has one (Microsoft 365), the admin's approval "
        "spares each user the permission question; users still connect their own "
        "accounts with their onboarding links. The link is valid 7 days.",
    )
    consent.add_argument("--tenant", required=True, help="the tenant id")
    consent.add_argument("--provider", default="microsoft", help="default: microsoft")
    pane = verbs.add_parser(
        "addon-deployment",
        help="the mail client's add-on deployment for a provider (CTX-1)",
        description="Prints the deployment of crmsync's add-on in the provider's mail "
        "client, its triggers calling the addon function at --public-url. For Gmail, a "
        "deployment resource (JSON): gcloud workspace-add-ons deployments create crmsync "
        "--deployment-file=FILE, then put the service account and OAuth client that "
        "`gcloud workspace-add-ons get-authorization` shows into Terraform's "
        "gmail_addon_service_account and gmail_addon_client_id. For Outlook "
        "(--provider microsoft --client-id <crmsync's app registration>), the add-in's "
        "XML manifest, which an admin uploads in the Microsoft 365 admin center "
        "(Integrated apps).",
    )
    pane.add_argument("--public-url", required=True, help="where the functions answer")
    pane.add_argument("--provider", default="google", help="default: google")
    pane.add_argument("--name", default="crmsync", help="the add-on's name in the mail client")
    pane.add_argument(
        "--client-id", default="", help="Outlook: crmsync's Microsoft app registration's id"
    )
    args = parser.parse_args(argv)
    if args.verb == "conformance":
        return conformance(args)
    if args.verb == "addon-deployment":
        return addon_deployment(args)
    deployment = _deployment(args.config)
    if deployment is None:
        return 2
    act = {
        "tenant": register_tenant,
        "onboarding-link": onboarding_link,
        "admin-consent-link": admin_consent_link,
    }[args.verb]
    return _answer(lambda: act(deployment, args))


def addon_deployment(args: argparse.Namespace) -> int:
    import json

    from crmsync import providers

    try:
        kit = providers.kit(args.provider)
    except KeyError:
        print(f"crmsync has no provider {args.provider!r}", file=sys.stderr)
        return 2
    if not hasattr(kit, "addon_deployment"):
        print(f"crmsync has no mail-client add-on for {args.provider}", file=sys.stderr)
        return 2
    if not args.public_url.startswith("https://"):
        print("--public-url must be the functions' https:// address", file=sys.stderr)
        return 2
    try:
        made = kit.addon_deployment(args.public_url, args.name, args.client_id)
    except ValueError as exc:
        print(f"{exc}: give it with --client-id", file=sys.stderr)
        return 2
    print(made if isinstance(made, str) else json.dumps(made, indent=2))
    return 0


def register_tenant(deployment: Any, args: argparse.Namespace) -> str:
    import getpass
    import os

    from crmsync import service

    crm_token = os.environ.get("CRMSYNC_NEW_CRM_TOKEN") or getpass.getpass("CRM API token: ")
    secret = os.environ.get("CRMSYNC_NEW_EVENT_SECRET") or getpass.getpass("event secret: ")
    admin = service.create_tenant(
        deployment,
        args.id,
        name=args.name,
        crm_base_url=args.crm_base_url,
        crm_token=crm_token,
        event_secret=secret,
        seats=args.seats,
        allowed_providers=_listed(args.providers),
        allowed_services=_listed(args.services),
        admins=_listed(args.admins),
        crm_record_url=args.crm_record_url,
    )
    return f"tenant {args.id} registered; its admin token (shown once): {admin}"


def onboarding_link(deployment: Any, args: argparse.Namespace) -> str:
    from crmsync import service

    return service.onboarding_link(deployment, args.tenant, args.user, crm_user=args.crm_user)


def admin_consent_link(deployment: Any, args: argparse.Namespace) -> str:
    from crmsync import service

    return service.admin_consent_link(deployment, args.tenant, args.provider)


def _answer(act: Callable[[], str]) -> int:
    """Print what `act` answers and return 0; or say in one line why not, and return 2."""
    from crmsync import service

    try:
        print(act())
    except service.Refused as refused:
        step = f". {refused.next_step}" if refused.next_step else ""
        return _say(f"refused: {refused.reason}{step}")
    except KeyboardInterrupt:
        return _say("stopped")
    except Exception as exc:  # the store or the KMS key did not answer, or a defect
        return _say(f"could not finish ({type(exc).__name__}: {_first_line(exc)})")
    return 0


def _deployment(config: Path | None) -> Any:
    """The deployment the configuration file (`config`, else CRMSYNC_CONFIG) and the
    environment name, as the functions see it; None, with one line saying what is
    wrong, when that cannot be (no traceback)."""
    import os

    from crmsync import entrypoints, envfile

    if config is None and os.environ.get("CRMSYNC_CONFIG"):
        config = Path(os.environ["CRMSYNC_CONFIG"])
    advice = "set its environment first, as docs/deploy.md section 3 shows"
    if config is None and not any(os.environ.get(name) for name in NAMING):
        _say(
            "no deployment named: give its configuration file with --config PATH or "
            "CRMSYNC_CONFIG (make dev writes build/dev/current.env), or set its environment "
            f"({', '.join(NAMING)}, ...), as docs/deploy.md section 3 shows"
        )
        return None
    if config is not None:
        try:
            values = envfile.read(config)
        except envfile.EnvFileError as exc:
            _say(str(exc))
            return None
        if envfile.exposed(config):
            print(
                f"warning: {config} holds the deployment's secrets and others may read it: "
                f"chmod 600 {config}",
                file=sys.stderr,
            )
        for name, value in values.items():
            os.environ.setdefault(name, value)
        advice = f"add it to {config} or the environment, as docs/deploy.md section 3 shows"
    try:
        _check_store(os.environ)
        return entrypoints.from_environment(os.environ)
    except _Unreachable as exc:
        stack = f"is the stack that wrote {config} still running?" if config else "start it"
        _say(f"cannot reach the deployment ({exc}); {stack}")
        return None
    except Exception as exc:  # credentials, a variable, a key: all are the same advice
        reason = _first_line(exc)
        if isinstance(exc, KeyError):
            name = str(exc.args[0])
            reason = f"{name} is not set: {PURPOSES.get(name, 'the functions read it')}"
        _say(f"cannot reach the deployment ({reason}); {advice}")
        return None


class _Unreachable(Exception):
    """Nothing answers where the deployment's store should be."""


def _check_store(env: Any) -> None:
    """Fail at once where the store is an emulator that is not there (its client would
    retry for a minute) or whose project is not named (it would use another's)."""
    import socket

    host = env.get("FIRESTORE_EMULATOR_HOST", "")
    if not host or env.get("CRMSYNC_STORE", "firestore") == "memory":
        return
    if not env.get("GOOGLE_CLOUD_PROJECT"):
        raise KeyError("GOOGLE_CLOUD_PROJECT")
    name, _, port = host.rpartition(":")
    try:
        with socket.create_connection((name.strip("[]") or "localhost", int(port)), timeout=2):
            return
    except (OSError, ValueError) as exc:
        what = f"nothing answers at FIRESTORE_EMULATOR_HOST {host}, the Firestore emulator"
        raise _Unreachable(what) from exc


def _say(line: str) -> int:
    print(line, file=sys.stderr)
    return 2


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _listed(value: str | None) -> list[str] | None:
    return [item.strip() for item in value.split(",") if item.strip()] if value else None


def conformance(args: argparse.Namespace) -> int:
    from crmsync.conformance import CHECKS, Kit, Outcome, Target, table
    from crmsync.conformance.fuzz import CONTRACT, fuzz

    target = Target(
        base_url=args.base_url,
        token=args.token,
        user=args.user,
        other_token=args.other_token,
        expired_token=args.expired_token,
    )
    try:
        kit = Kit(target)
    except Exception as exc:
        print(f"cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    outcomes: list[Outcome] = list(kit.run(CHECKS))
    if not args.no_fuzz:
        outcomes += fuzz(target, kit.user, args.examples, args.contract or CONTRACT)
    print(table(outcomes))
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
