"""The `crmsync` command: `conformance` (the CRM vendor's kit), and the operator's
`tenant` (register a tenant), `onboarding-link` (a user's link to connect) and
`admin-consent-link` (a directory admin's approval for a whole organisation), which
act on a deployment through the same environment the functions read (see
`crmsync.entrypoints`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


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
    tenant = verbs.add_parser(
        "tenant",
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
        "--providers", help="the providers users may connect, comma-separated (default: all)"
    )
    tenant.add_argument(
        "--services", help="what users may connect: sync, mail or sync,mail (default: both)"
    )
    link = verbs.add_parser(
        "onboarding-link",
        help="a user's link to connect an account",
        description="Prints the link a user opens to connect their Google or Microsoft 365 "
        "account; it is theirs alone and valid 7 days.",
    )
    link.add_argument("--tenant", required=True, help="the tenant id")
    link.add_argument("--user", required=True, help="the user id in crmsync")
    link.add_argument("--crm-user", help="the CRM user id, when it differs (AUTH-5)")
    consent = verbs.add_parser(
        "admin-consent-link",
        help="a directory admin's link to approve crmsync for their whole organisation",
        description="Where the provider has one (Microsoft 365), the admin's approval "
        "spares each user the permission question; users still connect their own "
        "accounts with their onboarding links. The link is valid 7 days.",
    )
    consent.add_argument("--tenant", required=True, help="the tenant id")
    consent.add_argument("--provider", default="microsoft", help="default: microsoft")
    args = parser.parse_args(argv)
    if args.verb == "tenant":
        return register_tenant(args)
    if args.verb == "onboarding-link":
        return onboarding_link(args)
    if args.verb == "admin-consent-link":
        return admin_consent_link(args)
    return conformance(args)


def register_tenant(args: argparse.Namespace) -> int:
    import getpass
    import os

    from crmsync import service

    deployment = _deployment()
    if deployment is None:
        return 2
    crm_token = os.environ.get("CRMSYNC_NEW_CRM_TOKEN") or getpass.getpass("CRM API token: ")
    secret = os.environ.get("CRMSYNC_NEW_EVENT_SECRET") or getpass.getpass("event secret: ")
    try:
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
        )
    except service.Refused as refused:
        print(f"refused: {refused.reason}", file=sys.stderr)
        return 2
    print(f"tenant {args.id} registered; its admin token (shown once): {admin}")
    return 0


def _deployment() -> Any:
    """The deployment the environment names, as the functions see it; None, with one
    line saying what is missing, when the environment is not set (no traceback)."""
    import os

    from crmsync import entrypoints

    try:
        return entrypoints.from_environment(os.environ)
    except Exception as exc:  # credentials, a variable, a key: all are the same advice
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, KeyError):
            reason = f"{exc.args[0]} is not set"
        print(
            f"cannot reach the deployment ({reason}); set its environment first, as "
            "docs/deploy.md section 3 shows",
            file=sys.stderr,
        )
        return None


def _listed(value: str | None) -> list[str] | None:
    return [item.strip() for item in value.split(",") if item.strip()] if value else None


def onboarding_link(args: argparse.Namespace) -> int:
    from crmsync import service

    deployment = _deployment()
    if deployment is None:
        return 2
    try:
        url = service.onboarding_link(
            deployment,
            args.tenant,
            args.user,
            crm_user=args.crm_user,
        )
    except service.Refused as refused:
        print(f"refused: {refused.reason}", file=sys.stderr)
        return 2
    print(url)
    return 0


def admin_consent_link(args: argparse.Namespace) -> int:
    from crmsync import service

    deployment = _deployment()
    if deployment is None:
        return 2
    try:
        url = service.admin_consent_link(deployment, args.tenant, args.provider)
    except service.Refused as refused:
        print(f"refused: {refused.reason}", file=sys.stderr)
        return 2
    print(url)
    return 0


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
