"""policies: Rego policies, their data documents and the engines that evaluate them.

Public surface (docs/CONTRACTS.md, "Policy decisions"):
`PolicyEngine.embedded()` (regopy), `PolicyEngine.compiled()` (OPA-built WebAssembly),
`PolicyEngine.opa(url)`, `engine_from_settings(settings)`,
`PolicyEngine.decide(input) -> Decision`, `Decision.to_audit_event(hash_key)`,
`run_rego_tests()`.
"""

from policies.bundle import PolicyBundle, PolicyDataError, load_bundle
from policies.engine import (
    ENGINE_NAMES,
    Decision,
    EmbeddedEngine,
    PolicyEngine,
    PolicyError,
    engine_from_settings,
    keyed_input_hash,
)
from policies.opa_server import OpaServerEngine

__all__ = [
    "ENGINE_NAMES",
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
