"""`python -m sandbox.crm [--port 8765] [--db crm.sqlite] [--seed]`: the reference CRM,
standalone. Prints its base URL and, with --seed, the demo tenant's token."""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Sequence

from sandbox.crm.app import ReferenceCrm
from sandbox.crm.database import CrmDatabase
from sandbox.crm.seed import DEMO_TENANT, seed_demo
from sandbox.crm.server import serve


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.crm", description="Run the reference CRM over HTTP."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (0: any)")
    parser.add_argument("--db", default=":memory:", help="SQLite file (default: in memory)")
    parser.add_argument("--seed", action="store_true", help="add the demo tenant")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    crm = ReferenceCrm(CrmDatabase(args.db))
    token = seed_demo(crm) if args.seed else None
    base_url, stop = serve(crm, args.host, args.port)
    print(f"reference CRM at {base_url}", flush=True)
    if token is not None:
        print(f"demo tenant {DEMO_TENANT!r}: token {token}, users u1, u2 and u3", flush=True)
    else:
        print("no demo tenant: start with --seed to add one", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
