"""The OPA-server engine: the same policies and data, decided by an OPA server
(`POST /v1/data/joinedup/authz/decision`) through opa-python-client.

- `publish()` uploads this bundle's modules and data documents, and the decision-log mask
  (policies/server/decision_log_mask.rego), so the server runs exactly the revision named.
- Decision ids: when the server logs decisions (`--set decision_logs.console=true`, or a
  decision-log service), OPA returns a `decision_id` with each answer; the Decision takes it,
  so the id in OPA's log is the id in the project's ledger.
- Default deny: a server that does not answer, answers with an error, or has no decision for
  the input gives a refusal, never an allow; the reason says only that the policy service did
  not answer (the detail goes to `Decision.engine_error` and the ledger, not to the caller).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any
from urllib.parse import urlparse

from policies.bundle import POLICY_DIR, PolicyBundle
from policies.engine import (
    ENTRYPOINT,
    Decision,
    PolicyEngine,
    PolicyError,
    _decision_from,
    _now,
    normalise_input,
)

LOG_MASK = POLICY_DIR / "server" / "decision_log_mask.rego"
UNREACHABLE_REASON = "The policy service did not answer, so the request is refused."
log = logging.getLogger(__name__)


class OpaServerEngine(PolicyEngine):
    """An OPA server's data API. See the module's docstring."""

    def __init__(self, url: str, bundle: PolicyBundle, timeout: float = 1.5,
                 token: str | None = None, auto_publish: bool = False, retries: int = 1):
        from opa_client.opa import OpaClient

        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise PolicyError(f"OPA url must look like http://host:port, got {url!r}")
        port = parsed.port or (443 if parsed.scheme == "https" else 8181)
        self.url = url
        self.policy_bundle = bundle
        self.bundle_revision = bundle.revision
        self._client = OpaClient(host=parsed.hostname, port=port, ssl=parsed.scheme == "https",
                                 timeout=timeout, token=token, retries=retries)
        # With auto_publish the engine publishes before its first decision, and again when the
        # server has no decision (an OPA restarted without its policies): the service's own
        # revision is what decides. Without it, the operator publishes (`publish()`).
        self._auto_publish = auto_publish
        self._published = False

    def publish(self) -> None:
        """Upload every policy module, the decision-log mask and every data document."""
        import requests

        try:
            for name, source in self.policy_bundle.modules.items():
                self._client.update_policy_from_string(source, name.removesuffix(".rego"),
                                                       rego_compat=False)
            self._client.update_policy_from_string(LOG_MASK.read_text(encoding="utf-8"),
                                                   "joinedup_decision_log_mask", rego_compat=False)
            for key, value in self.policy_bundle.data.items():
                self._client.update_or_create_data(value, key)
        except requests.RequestException as exc:
            raise PolicyError(f"could not publish the policies to OPA at {self.url}: {exc}") from exc
        self._published = True

    def _query(self, prepared: dict[str, Any]) -> dict[str, Any]:
        """OPA's whole answer ({"result": ..., "decision_id": ...}); PolicyError if none."""
        import requests

        package, rule = ENTRYPOINT.rsplit("/", 1)
        try:
            answer = self._client.query_rule(prepared, package.replace("/", "."), rule)
        except requests.RequestException as exc:
            raise PolicyError(f"OPA server at {self.url} did not answer: {exc}") from exc
        except ValueError as exc:  # not JSON
            raise PolicyError(f"OPA server at {self.url} gave no JSON answer: {exc}") from exc
        if not isinstance(answer, dict):
            raise PolicyError(f"OPA server at {self.url} gave an answer that is not an object")
        return answer

    def _evaluate(self, prepared: dict[str, Any]) -> Any:
        return self._query(prepared).get("result")

    def decide(self, policy_input: dict[str, Any]) -> Decision:
        prepared = normalise_input(policy_input)
        try:
            if self._auto_publish and not self._published:
                self.publish()
            answer = self._query(prepared)
            if self._auto_publish and "result" not in answer:
                self.publish()
                answer = self._query(prepared)
        except PolicyError as exc:
            log.error("policy decision refused: %s", exc)
            return Decision(False, [UNREACHABLE_REASON], {}, uuid.uuid4().hex,
                            self.bundle_revision, prepared, _now(), engine_error=str(exc))
        decision_id = answer.get("decision_id")
        return _decision_from(answer.get("result"), prepared, self.bundle_revision,
                              decision_id if isinstance(decision_id, str) else None)

    def close(self) -> None:
        self._client.close_connection()
