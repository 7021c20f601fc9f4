"""``audit-logger``: settings for the audit trail; it never changes a verdict.

Every request is recorded by the gateway's audit sink whether or not this policy is in the
chain (an unaudited request is the failure users fear most). The policy's block tunes the
trail: which requests are kept, the hash chain, retention and durability.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from keeptrusts.policies.base import Policy, PolicyConfig
from keeptrusts.policies.registry import register


class AuditLoggerConfig(PolicyConfig):
    immutable: bool = True
    retention_days: int = Field(default=365, ge=1, le=36500)
    # False keeps only requests whose verdict is not `allow`.
    log_all_access: bool = True
    hipaa_audit_controls: bool = False
    # batched: written off the hot path in small batches (see README for what a crash can
    # lose); strict: a response completes only after its event is committed.
    durability: Literal["batched", "strict"] = "batched"


@register("audit-logger")
class AuditLogger(Policy):
    Config = AuditLoggerConfig
    # No hooks: the chain does not run it; the audit sink reads its settings.
    phases = frozenset()
