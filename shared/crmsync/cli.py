"""The `crmsync` command. Today it has one verb: `conformance`, the CRM vendor's kit."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


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
    args = parser.parse_args(argv)
    return conformance(args)


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
