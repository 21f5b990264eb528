"""One sync cycle for one connection: lease, read, plan, apply with a journal, record.

The rooms, in the order a change passes through them:
- `reading`: both change feeds of a kind and every record the plan must also see,
  as one `Changes` value;
- the planner (`crmsync.engine.reconcile`) turns it into decisions;
- `applying`: journal, write, then store the link, decision by decision (SYN-4);
- `journal`: settles what a killed run journaled, at the start of the next one;
- `history`: what the run did, per kind and record (HIS-1);
- `run`: the run itself, its lease, time budget and status; and the dry run that
  plans without applying (BEY-3).
"""

from crmsync.cycle.applying import BATCH
from crmsync.cycle.run import (
    LEASE_SECONDS,
    RENEW_EVERY,
    BudgetSpent,
    Cycle,
    LeaseLost,
    Planned,
    run_cycle,
)

__all__ = [
    "BATCH",
    "LEASE_SECONDS",
    "RENEW_EVERY",
    "BudgetSpent",
    "Cycle",
    "LeaseLost",
    "Planned",
    "run_cycle",
]
