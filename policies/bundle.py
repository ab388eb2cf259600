"""Loading the Rego policies and their data documents, validated, with a content revision.

The shipped policies live beside this file and their data in `policies/data/`; a deployment
may pass its own data directory (e.g. HOME/config/policy-data) to override documents.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

POLICY_DIR = Path(__file__).parent
DATA_DIR = POLICY_DIR / "data"
DECISION_PATH = "joinedup/authz/decision"

# The data documents the policies read, and the keys each entry must carry.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "actions": ("description", "person_level", "needs_consent", "needs_agreement"),
    "roles": ("title", "organisation_kinds", "actions"),
    "organisations": ("name", "kind"),
    "purposes": ("title", "needs_consent", "actions"),
    "categories": ("title", "special_category"),
    "sources": ("title",),
    "agreements": ("title", "parties", "purposes", "sources", "categories", "lawful_basis",
                   "valid_from", "valid_to"),
}
LAWFUL_BASIS_KEYS = ("uk_gdpr_article_6", "uk_gdpr_article_9", "digital_economy_act_2017")
# Derived from the documents above at load time (see derive_indexes); no data file may use it.
INDEX_DOCUMENT = "indexes"


class PolicyDataError(Exception):
    """A policy or data document is missing or invalid."""


@dataclass(frozen=True)
class PolicyBundle:
    """Policy sources and merged data, before compilation."""

    modules: dict[str, str]          # file name -> Rego source (no tests)
    test_modules: dict[str, str]     # file name -> Rego source of *_test.rego
    data: dict[str, Any]             # merged data document (top-level key per document)
    revision: str                    # sha256 over policies + data

    def compile(self, entrypoints: list[str], include_tests: bool = False):
        """A regopy bundle for the entrypoints (compiled once; query it many times)."""
        import regopy

        interpreter = regopy.Interpreter()
        # One add_data call: regopy 1.5.2 fails to merge more than two separate documents.
        interpreter.add_data(self.data)
        modules = dict(self.modules)
        if include_tests:
            modules.update(self.test_modules)
        for name, source in sorted(modules.items()):
            try:
                interpreter.add_module(name, source)
            except regopy.RegoError as exc:
                raise PolicyDataError(f"{name}: does not compile: {exc}") from exc
        compiled = interpreter.build(None, entrypoints)
        if not compiled.ok():
            raise PolicyDataError(f"policies do not compile: {compiled.node()}")
        return compiled


def load_bundle(policy_dir: Path | None = None, data_dir: Path | None = None) -> PolicyBundle:
    """Read every `*.rego` in policy_dir and every `*.json` in data_dir, validated."""
    policy_dir = Path(policy_dir) if policy_dir else POLICY_DIR
    data_dir = Path(data_dir) if data_dir else policy_dir / "data"
    modules: dict[str, str] = {}
    tests: dict[str, str] = {}
    for path in sorted(policy_dir.glob("*.rego")):
        target = tests if path.name.endswith("_test.rego") else modules
        target[path.name] = path.read_text(encoding="utf-8")
    if not modules:
        raise PolicyDataError(f"{policy_dir}: no .rego policies found")
    data = load_data(data_dir)
    data[INDEX_DOCUMENT] = derive_indexes(data)
    return PolicyBundle(modules, tests, data, revision_of(modules, data))


def load_data(data_dir: Path) -> dict[str, Any]:
    """Merge the data documents; each file holds one or more top-level documents."""
    data: dict[str, Any] = {}
    origin: dict[str, str] = {}
    files = sorted(Path(data_dir).glob("*.json"))
    if not files:
        raise PolicyDataError(f"{data_dir}: no policy data documents (*.json) found")
    for path in files:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise PolicyDataError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
        if not isinstance(document, dict):
            raise PolicyDataError(f"{path}: must be a JSON object of named documents")
        for key, value in document.items():
            if key == INDEX_DOCUMENT:
                raise PolicyDataError(f"{path}: '{key}' is reserved for the indexes derived at load time")
            if key in data:
                raise PolicyDataError(f"{path}: document '{key}' is also defined in {origin[key]}")
            data[key] = value
            origin[key] = path.name
    validate_data(data, origin)
    return data


def validate_data(data: dict[str, Any], origin: dict[str, str] | None = None) -> None:
    """Check every document the policies need is there and well formed."""
    origin = origin or {}

    def where(key: str) -> str:
        return origin.get(key, key)

    for key, fields in REQUIRED_FIELDS.items():
        if not isinstance(data.get(key), dict) or not data[key]:
            raise PolicyDataError(f"policy data: document '{key}' is missing or empty")
        for name, entry in data[key].items():
            if not isinstance(entry, dict):
                raise PolicyDataError(f"{where(key)}: {key}.{name} must be an object")
            for f in fields:
                if f not in entry:
                    raise PolicyDataError(f"{where(key)}: {key}.{name} has no field '{f}'")
    actions = data["actions"]
    for name, role in data["roles"].items():
        for f in ("organisation_kinds", "actions"):
            if not isinstance(role[f], list) or not all(isinstance(v, str) for v in role[f]):
                raise PolicyDataError(f"{where('roles')}: roles.{name}.{f} must be a list of names")
        for action in role["actions"]:
            if action not in actions:
                raise PolicyDataError(f"{where('roles')}: roles.{name}.actions names unknown action '{action}'")
    for name, purpose in data["purposes"].items():
        if not isinstance(purpose["actions"], list):
            raise PolicyDataError(f"{where('purposes')}: purposes.{name}.actions must be a list of names")
        for action in purpose["actions"]:
            if action not in actions:
                raise PolicyDataError(f"{where('purposes')}: purposes.{name}.actions names unknown action '{action}'")
    for name, action in actions.items():
        default = action.get("default_purpose")
        if default is not None and default not in data["purposes"]:
            raise PolicyDataError(f"{where('actions')}: actions.{name}.default_purpose '{default}' is unknown")
    for name, agreement in data["agreements"].items():
        _validate_agreement(name, agreement, data, where("agreements"))
    disclosure = data.get("disclosure")
    if not isinstance(disclosure, dict):
        raise PolicyDataError("policy data: document 'disclosure' is missing")
    for f in ("suppression_threshold", "rounding_base"):
        if not isinstance(disclosure.get(f), int) or disclosure[f] < 1:
            raise PolicyDataError(f"{where('disclosure')}: disclosure.{f} must be a positive integer")


def derive_indexes(data: dict[str, Any]) -> dict[str, Any]:
    """Lookup tables built from the validated documents so the policies find what applies to a
    request by key instead of scanning (regopy's evaluator costs microseconds per element
    visited). They restate the documents, nothing more:

    - grants[role][action][organisation][purpose]: the role lists the action, the
      organisation is of a kind the role may act for, and the purpose allows the action;
    - agreements_for[party][purpose]: the agreements naming that party and purpose, by id,
      each with its [valid_from, valid_to];
    - agreements[id]: the categories and sources an agreement covers.
    Sets are objects whose keys are the members (JSON has no sets). The entries are kept
    small on purpose: regopy copies every value a rule or lookup produces."""
    purposes_for = {
        action: {p: True for p, purpose in data["purposes"].items() if action in purpose["actions"]}
        for action in data["actions"]
    }
    grants: dict[str, Any] = {}
    for role_name, role in data["roles"].items():
        organisations = [o for o, org in data["organisations"].items()
                         if org["kind"] in role["organisation_kinds"]]
        grants[role_name] = {
            action: {o: purposes_for[action] for o in organisations}
            for action in role["actions"]
        }
    # Per agreement: what it covers, as objects.
    agreements = {
        agreement_id: {
            "categories": dict.fromkeys(agreement["categories"], True),
            "sources": dict.fromkeys(agreement["sources"], True),
        }
        for agreement_id, agreement in data["agreements"].items()
    }
    agreements_for: dict[str, dict[str, dict[str, list[str]]]] = {}
    for agreement_id, agreement in data["agreements"].items():
        for party in agreement["parties"]:
            for purpose in agreement["purposes"]:
                agreements_for.setdefault(party, {}).setdefault(purpose, {})[agreement_id] = [
                    agreement["valid_from"], agreement["valid_to"]]
    return {"grants": grants, "agreements_for": agreements_for, "agreements": agreements}


def _validate_agreement(name: str, agreement: dict[str, Any], data: dict[str, Any], file: str) -> None:
    prefix = f"{file}: agreements.{name}"
    for f in ("parties", "purposes", "sources", "categories"):
        if not isinstance(agreement[f], list):
            raise PolicyDataError(f"{prefix}.{f} must be a list")
    for party in agreement["parties"]:
        if party not in data["organisations"]:
            raise PolicyDataError(f"{prefix}.parties names unknown organisation '{party}'")
    for purpose in agreement["purposes"]:
        if purpose not in data["purposes"]:
            raise PolicyDataError(f"{prefix}.purposes names unknown purpose '{purpose}'")
    for source in agreement["sources"]:
        if source not in data["sources"]:
            raise PolicyDataError(f"{prefix}.sources names unknown source kind '{source}'")
    for category in agreement["categories"]:
        if category not in data["categories"]:
            raise PolicyDataError(f"{prefix}.categories names unknown category '{category}'")
    for key in LAWFUL_BASIS_KEYS:
        if not str(agreement["lawful_basis"].get(key, "")).strip():
            raise PolicyDataError(f"{prefix}.lawful_basis.{key} must say which provision applies")
    bounds = []
    for f in ("valid_from", "valid_to"):
        try:
            bounds.append(date.fromisoformat(agreement[f]))
        except (TypeError, ValueError) as exc:
            raise PolicyDataError(f"{prefix}.{f} must be a date YYYY-MM-DD") from exc
        if len(agreement[f]) != 10:
            raise PolicyDataError(f"{prefix}.{f} must be a date YYYY-MM-DD")
    if bounds[0] > bounds[1]:
        raise PolicyDataError(f"{prefix}: valid_from is after valid_to")


def revision_of(modules: dict[str, str], data: dict[str, Any]) -> str:
    """A content hash of the policies and data (not of identifiers: safe to publish)."""
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(f"module {name}\n".encode())
        digest.update(modules[name].encode())
    digest.update(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()
