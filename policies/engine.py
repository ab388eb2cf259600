"""Policy engines: one interface, three back ends, the same Rego files and data documents.

`EmbeddedEngine` evaluates with regopy, compiling the policies and data once into a bundle
(regopy's plain `query` recompiles on every call; the bundle path does not); it needs no
build. `WasmEngine` (policies/wasm_engine.py) runs the policies compiled by OPA to
WebAssembly. `OpaServerEngine` (policies/opa_server.py) asks an OPA server. All normalise the
input the same way first, so a decision does not depend on the engine (tests/policies hold
them to the same answers over a generated corpus).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
import os
import queue
import threading
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from policies.bundle import DECISION_PATH, PolicyBundle, load_bundle

if TYPE_CHECKING:
    from policies.opa_server import OpaServerEngine

log = logging.getLogger(__name__)

# The one decision entry point: data.joinedup.authz.decision.
ENTRYPOINT = DECISION_PATH


class PolicyError(Exception):
    """The policies or their data could not be loaded or evaluated."""


@dataclass(frozen=True)
class Decision:
    """The answer to one request, with what the recipient must respect if it is allowed."""

    allow: bool
    reasons: list[str]
    obligations: dict[str, Any]
    decision_id: str
    bundle_revision: str
    input: dict[str, Any] = field(repr=False)
    decided_at: str = ""
    # Why the engine could not decide (an OPA server that did not answer, say); the request
    # is then refused. For the operator and the ledger, never shown to the caller.
    engine_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "allow": self.allow,
            "reasons": list(self.reasons),
            "obligations": copy.deepcopy(self.obligations),
            "bundle_revision": self.bundle_revision,
            "decided_at": self.decided_at,
            **({"engine_error": self.engine_error} if self.engine_error else {}),
        }

    def to_audit_event(self, hash_key: bytes) -> dict[str, Any]:
        """A `policy.decision` ledger event. The input appears only as a keyed hash; the ids
        it carries are pseudonymous (person key, receipt id), never raw identifiers."""
        subject = self.input.get("subject") if isinstance(self.input.get("subject"), dict) else {}
        resource = self.input.get("resource") if isinstance(self.input.get("resource"), dict) else {}
        consent = self.input.get("consent") if isinstance(self.input.get("consent"), dict) else {}
        event: dict[str, Any] = {
            "type": "policy.decision",
            "time": self.decided_at,
            "actor": {
                "id": subject.get("id"),
                "role": subject.get("role"),
                "organisation": subject.get("organisation"),
            },
            "decision_id": self.decision_id,
            "action": self.input.get("action"),
            "purpose": self.input.get("purpose"),
            "allow": self.allow,
            "reasons": list(self.reasons),
            "obligations": copy.deepcopy(self.obligations),
            "bundle_revision": self.bundle_revision,
            "input_hash": keyed_input_hash(hash_key, self.input),
        }
        if isinstance(resource.get("person_key"), str):
            event["person_key"] = resource["person_key"]
        if isinstance(consent.get("receipt_id"), str):
            event["receipt_id"] = consent["receipt_id"]
        if self.engine_error:
            event["engine_error"] = self.engine_error
        if isinstance(resource.get("categories"), list):
            event["categories_requested"] = sorted(str(c) for c in resource["categories"])
        return event


def keyed_input_hash(hash_key: bytes, policy_input: dict[str, Any]) -> str:
    """HMAC-SHA256 of the canonical JSON of the input (never an unkeyed hash)."""
    canonical = json.dumps(policy_input, sort_keys=True, separators=(",", ":"), default=str)
    return hmac.new(hash_key, canonical.encode(), hashlib.sha256).hexdigest()


def normalise_time(value: Any) -> str | None:
    """An ISO 8601 time as UTC "YYYY-MM-DDTHH:MM:SSZ" (the form the policies compare as
    strings), or None if it is not a time. A time without a zone is taken as UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalise_input(policy_input: dict[str, Any]) -> dict[str, Any]:
    """A copy of the input with its times in canonical UTC form; a missing time becomes now."""
    if not isinstance(policy_input, dict):
        raise PolicyError("the policy input must be a JSON object")
    prepared = dict(policy_input)
    if "time" not in prepared or prepared["time"] in (None, ""):
        prepared["time"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        # An unparseable time stays unparseable-looking so the policy refuses it.
        prepared["time"] = normalise_time(prepared["time"]) or "invalid"
    consent = prepared.get("consent")
    if isinstance(consent, dict) and "expires_at" in consent:
        consent = dict(consent)
        consent["expires_at"] = normalise_time(consent["expires_at"]) or "invalid"
        prepared["consent"] = consent
    return prepared


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class PolicyEngine(ABC):
    """Decides every request. Use `PolicyEngine.embedded()` or `PolicyEngine.opa(url)`."""

    bundle_revision: str

    @abstractmethod
    def _evaluate(self, prepared: dict[str, Any]) -> Any:
        """The raw value of data.joinedup.authz.decision for a normalised input."""

    def decide(self, policy_input: dict[str, Any]) -> Decision:
        prepared = normalise_input(policy_input)
        raw = self._evaluate(prepared)
        return _decision_from(raw, prepared, self.bundle_revision)

    @staticmethod
    def embedded(policy_dir: Path | None = None, data_dir: Path | None = None,
                 workers: int | None = None) -> EmbeddedEngine:
        return EmbeddedEngine(load_bundle(policy_dir, data_dir), workers)

    @staticmethod
    def compiled(policy_dir: Path | None = None, data_dir: Path | None = None,
                 workers: int | None = None) -> PolicyEngine:
        """The OPA-compiled policies (policies/compiled/) in wasmtime; PolicyError if that build
        does not match the policies."""
        from policies.compiled import CompiledPolicyError
        from policies.wasm_engine import WasmEngine

        try:
            return WasmEngine(load_bundle(policy_dir, data_dir), workers=workers)
        except CompiledPolicyError as exc:
            raise PolicyError(str(exc)) from exc

    @staticmethod
    def opa(url: str, policy_dir: Path | None = None, data_dir: Path | None = None,
            **client_options: Any) -> OpaServerEngine:
        from policies.opa_server import OpaServerEngine

        return OpaServerEngine(url, load_bundle(policy_dir, data_dir), **client_options)


def _decision_from(raw: Any, prepared: dict[str, Any], revision: str,
                   decision_id: str | None = None) -> Decision:
    """Turn the policy's answer into a Decision; anything malformed is a denial (default deny).
    The decision id is the engine's own when it has one (OPA's decision logs), else new."""
    decision_id = decision_id or uuid.uuid4().hex
    if not isinstance(raw, dict) or not isinstance(raw.get("allow"), bool):
        return Decision(False, ["The policy gave no decision, so the request is refused."], {},
                        decision_id, revision, prepared, _now())
    allow = raw["allow"] is True
    reasons = [str(r) for r in raw.get("reasons") or []]
    obligations = raw.get("obligations") if isinstance(raw.get("obligations"), dict) else {}
    if not allow and not reasons:
        reasons = ["The request is not permitted."]
    return Decision(allow, reasons, obligations if allow else {}, decision_id, revision,
                    prepared, _now())


class EmbeddedEngine(PolicyEngine):
    """regopy, compiled once per evaluator. An evaluator (interpreter + compiled bundle) serves
    one decision at a time; concurrent callers get their own, made on first need up to
    `workers` (default: one per CPU). regopy calls into C through ctypes, which releases the
    GIL, so decisions in different threads run on different cores."""

    def __init__(self, bundle: PolicyBundle, workers: int | None = None):
        self.policy_bundle = bundle
        self.bundle_revision = bundle.revision
        self._entrypoint = ENTRYPOINT.encode()
        self._max_evaluators = max(1, workers or os.cpu_count() or 1)
        self._idle: queue.LifoQueue[tuple[Any, Any]] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._made = 1
        self._idle.put(self._new_evaluator())

    def _new_evaluator(self) -> tuple[Any, Any]:
        import regopy

        return regopy.Interpreter(), self.policy_bundle.compile([ENTRYPOINT])

    def _take_evaluator(self) -> tuple[Any, Any]:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            grow = self._made < self._max_evaluators
            if grow:
                self._made += 1
        return self._new_evaluator() if grow else self._idle.get()

    def _evaluate(self, prepared: dict[str, Any]) -> Any:
        from regopy.rego_shared import rego, rego_output_string

        rego_input = rego_input_from(prepared)
        evaluator = self._take_evaluator()
        interpreter, compiled = evaluator
        try:
            try:
                if rego.regoSetInput(interpreter._impl, rego_input) != 0:
                    raise PolicyError("regopy refused the policy input")
            finally:
                rego.regoFreeInput(rego_input)
            # The low-level call avoids regopy's Output wrapper, which parses the JSON twice.
            out = rego.regoBundleQueryEntrypoint(interpreter._impl, compiled._impl, self._entrypoint)
            if not out:
                raise PolicyError("policy evaluation failed (regopy returned no output)")
            try:
                text = rego_output_string(out)
            finally:
                rego.regoFreeOutput(out)  # regopy's Output wrapper would free it; we must
        finally:
            self._idle.put(evaluator)
        return _first_expression(text)


def rego_input_from(value: Any) -> Any:
    """A regopy input built straight from a JSON-like value (the caller frees it).

    regopy's `Input` does the same through a Python wrapper, an isinstance chain and a copied
    string buffer per node; calling the C functions directly takes a third of the time. Any
    type other than the JSON ones goes through regopy's own converter (or is refused there)."""
    from regopy.rego_shared import rego, rego_input_from_value

    lib = rego
    put_string, put_int, put_bool = lib.regoInputString, lib.regoInputInt, lib.regoInputBoolean
    put_float, put_null = lib.regoInputFloat, lib.regoInputNull
    put_item, put_object, put_array = lib.regoInputObjectItem, lib.regoInputObject, lib.regoInputArray
    handle = lib.regoNewInput()

    def add(v: Any) -> int:
        kind = type(v)
        if kind is str:
            return put_string(handle, v.encode())
        if kind is dict:
            for key, item in v.items():
                if type(key) is not str or put_string(handle, key.encode()) or add(item) or put_item(handle):
                    return 1
            return put_object(handle, len(v))
        if kind is list:
            for item in v:
                if add(item):
                    return 1
            return put_array(handle, len(v))
        if kind is bool:
            return put_bool(handle, v)
        if kind is int:
            return put_int(handle, v)
        if kind is float:
            return put_float(handle, v)
        if v is None:
            return put_null(handle)
        return 1

    if add(value):
        lib.regoFreeInput(handle)
        try:
            return rego_input_from_value(value)
        except Exception as exc:  # noqa: BLE001 - regopy raises ValueError or RegoError
            raise PolicyError(f"the policy input cannot be passed to the engine: {exc}") from exc
    return handle


def _first_expression(text: str) -> Any:
    if text.strip() == "undefined":
        return None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyError(f"policy evaluation failed: {text[:500]}") from exc
    expressions = parsed.get("expressions") if isinstance(parsed, dict) else None
    if not expressions:
        return None
    return expressions[0]


# The names `[policy] engine` accepts. "embedded" is the default in-process engine: the
# compiled one (OPA-built WebAssembly in wasmtime) when policies/compiled/ was built from the
# policies in use, else regopy. bench/bench_policy.py shows why (bench/RESULTS-policy.md).
ENGINE_NAMES = ("embedded", "wasm", "regopy", "opa")


def engine_from_settings(policy_settings: dict[str, Any], policy_dir: Path | None = None,
                         data_dir: Path | None = None) -> PolicyEngine:
    """The engine a deployment's `[policy]` settings name (`engine`, one of ENGINE_NAMES;
    for "opa": `opa_url`, and `opa_publish` (default true: the service publishes its policies
    and data to the server before its first decision))."""
    kind = policy_settings.get("engine", "embedded")
    if kind == "regopy":
        return PolicyEngine.embedded(policy_dir, data_dir)
    if kind == "wasm":
        return PolicyEngine.compiled(policy_dir, data_dir)
    if kind == "embedded":
        return default_embedded_engine(policy_dir, data_dir)
    if kind == "opa":
        url = policy_settings.get("opa_url") or ""
        if not url:
            raise PolicyError("policy.engine is 'opa' but policy.opa_url is empty")
        return PolicyEngine.opa(url, policy_dir, data_dir,
                                auto_publish=bool(policy_settings.get("opa_publish", True)))
    raise PolicyError(f"policy.engine must be one of {', '.join(map(repr, ENGINE_NAMES))}, got {kind!r}")


def default_embedded_engine(policy_dir: Path | None = None, data_dir: Path | None = None,
                            workers: int | None = None) -> PolicyEngine:
    """The compiled engine if its build matches the policies (and wasmtime is installed),
    else regopy, which needs no build. Which one serves is logged."""
    from policies.compiled import CompiledPolicyError

    bundle = load_bundle(policy_dir, data_dir)
    try:
        from policies.wasm_engine import WasmEngine

        return WasmEngine(bundle, workers=workers)
    except (CompiledPolicyError, ImportError) as exc:
        log.warning("policy engine: regopy (the compiled policy cannot serve: %s)", exc)
        return EmbeddedEngine(bundle, workers)
