"""The pure reconciliation core: records and links in, a plan of decisions out.

The package holds the shapes records and plans are passed in; the planner itself
(`crmsync.engine.reconcile`: `reconcile`, `Links`, `LinkIndex`) is imported by what
plans, so a function that only passes records around (a webhook, the fan-out) does not
load it at cold start.
"""

from crmsync.engine.plan import AccountSpec, Decision, Hold, Plan, Write
from crmsync.engine.records import Context, CrmSchema, Link, SideRecord

__all__ = [
    "AccountSpec",
    "Context",
    "CrmSchema",
    "Decision",
    "Hold",
    "Link",
    "Plan",
    "SideRecord",
    "Write",
]
