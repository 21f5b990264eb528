"""The pure reconciliation core: records and links in, a plan of decisions out."""

from crmsync.engine.plan import AccountSpec, Decision, Hold, Plan, Write
from crmsync.engine.reconcile import LinkIndex, Links, reconcile
from crmsync.engine.records import Context, CrmSchema, Link, SideRecord

__all__ = [
    "AccountSpec",
    "Context",
    "CrmSchema",
    "Decision",
    "Hold",
    "Link",
    "LinkIndex",
    "Links",
    "Plan",
    "SideRecord",
    "Write",
    "reconcile",
]
