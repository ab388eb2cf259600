"""policies: Rego policies, their data documents and the engines that evaluate them.

Public surface (docs/CONTRACTS.md, "Policy decisions"):
`PolicyEngine.embedded()`, `PolicyEngine.opa(url)`, `engine_from_settings(settings)`,
`PolicyEngine.decide(input) -> Decision`, `Decision.to_audit_event(hash_key)`,
`run_rego_tests()`.
"""

from policies.bundle import PolicyBundle, PolicyDataError, load_bundle
from policies.engine import (
    Decision,
    EmbeddedEngine,
    OpaServerEngine,
    PolicyEngine,
    PolicyError,
    engine_from_settings,
    keyed_input_hash,
)

__all__ = [
    "Decision",
    "EmbeddedEngine",
    "OpaServerEngine",
    "PolicyBundle",
    "PolicyDataError",
    "PolicyEngine",
    "PolicyError",
    "engine_from_settings",
    "keyed_input_hash",
    "load_bundle",
]
