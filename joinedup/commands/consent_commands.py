"""CLI commands of the consent concern: `joinedup consent grant|withdraw|show|history`.

Identifiers (given name, family name, date of birth) come from a JSON file or a prompt, are
turned into the pseudonymous person key at once (connectors.pseudonymise.person_key) and are
never stored, printed or logged. Each command is decided by the policy (action
`consent.record`) and recorded in the ledger, through joinedup.operations (one entry
each, the same as the API's).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from joinedup.commands.common import (
    fail_with,
    home_option,
    read_json_object,
    resolve_caller,
    service,
)

IDENTITY_PROMPTS = (("given_name", "Given name"), ("family_name", "Family name"),
                    ("date_of_birth", "Date of birth (YYYY-MM-DD)"))

actor_options = [
    click.option("--as", "actor_id", required=True, help="Your user id (recorded as 'recorded by')."),
    click.option("--role", "actor_role", default="adviser", show_default=True,
                 help="Your role (adviser, or citizen acting for themselves)."),
    click.option("--org", "actor_org", default="csc-margate", show_default=True, help="Your organisation."),
]
identity_option = click.option(
    "--identity", "identity_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
    help="JSON file with given_name, family_name, date_of_birth (else you are prompted).")


def _with(options):
    def wrap(f):
        for option in reversed(options):
            f = option(f)
        return f
    return wrap




def _identity(identity_file: Path | None) -> dict:
    """The identifiers, from the file or prompts (the caller drops them after use)."""
    if identity_file is not None:
        raw = read_json_object(identity_file, "identity")
    else:
        raw = {field: click.prompt(label) for field, label in IDENTITY_PROMPTS}
    return {k: (str(v) if v is not None else None) for k, v in raw.items()}


def _person_key(h, identity_file: Path | None) -> str:
    """Read identifiers, derive the person key, and drop the identifiers."""
    from connectors.pseudonymise import person_key
    from connectors.standardise import StandardisationError

    if identity_file is not None:
        raw = read_json_object(identity_file, "identity")
    else:
        raw = {field: click.prompt(label) for field, label in IDENTITY_PROMPTS}
    identity = {k: (str(v) if v is not None else None) for k, v in raw.items()}
    try:
        return person_key(h.keyring(), identity)
    except StandardisationError as exc:
        source = identity_file or "prompt"
        raise click.ClickException(f"{source}: identity not usable: {exc}") from exc
    finally:
        raw.clear()
        identity.clear()


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def register(cli: click.Group) -> None:
    """Add this concern's commands to the root group."""

    @cli.group("consent")
    def consent_group() -> None:
        """Record, withdraw and look up citizens' consent (signed receipts)."""

    @consent_group.command("grant")
    @home_option
    @identity_option
    @_with(actor_options)
    @click.option("--purpose", "purposes", multiple=True, required=True, help="Purpose (repeat).")
    @click.option("--category", "categories", multiple=True, required=True,
                  help="Agency kind or barrier category, e.g. dwp, nhs, MH (repeat).")
    @click.option("--method", "method", default="in_person_signed", show_default=True,
                  help="How consent was collected.")
    @click.option("--expires-at", default=None, help="ISO time (default: catalogue duration).")
    @click.option("--receipt-out", type=click.Path(path_type=Path, dir_okay=False), default=None,
                  help="Write the signed receipt JSON here.")
    def grant(home, identity_file, actor_id, actor_role, actor_org, purposes, categories, method,
              expires_at, receipt_out) -> None:
        """Record a person's consent and issue a signed receipt."""
        from joinedup import operations as ops
        from joinedup.errors import OperationError

        identity = _identity(identity_file)
        with service(home) as ctx:
            caller = resolve_caller(ctx.home, actor_id, actor_role, actor_org)
            try:
                granted = ops.grant_consent(ctx, caller, ops.GrantConsent(
                    identifiers=identity, purposes=list(purposes), categories=list(categories),
                    controllers=list(ctx.consent.catalogue.controllers),
                    collection_method=method, expires_at=expires_at))
            except OperationError as exc:
                fail_with(exc)
            finally:
                identity.clear()
        if receipt_out:
            _write_json(receipt_out, granted.receipt)
        click.echo(json.dumps({"receipt_id": granted.receipt_id, "person_key": granted.person_key,
                               "purposes": granted.purposes, "categories": granted.categories,
                               "expires_at": granted.expires_at,
                               "receipt": str(receipt_out) if receipt_out else None}, indent=2))

    @consent_group.command("withdraw")
    @home_option
    @identity_option
    @_with(actor_options)
    @click.option("--receipt", "receipt_id", default=None, help="Withdraw this consent only.")
    def withdraw(home, identity_file, actor_id, actor_role, actor_org, receipt_id) -> None:
        """Withdraw consent (one receipt, or every active consent of the person). Immediate."""
        from joinedup import operations as ops
        from joinedup.errors import OperationError

        with service(home) as ctx:
            caller = resolve_caller(ctx.home, actor_id, actor_role, actor_org)
            if receipt_id:
                targets = [receipt_id]
            else:
                key = _person_key(ctx.home, identity_file)
                targets = [r.receipt_id for r in ctx.consent.records(key) if r.withdrawn_at is None]
            if not targets:
                raise click.ClickException("this person has no consent to withdraw")
            done = []
            for target in targets:
                try:
                    withdrawn = ops.withdraw_consent(ctx, caller, ops.WithdrawConsent(target))
                except OperationError as exc:
                    fail_with(exc)
                done.append({"receipt_id": withdrawn.receipt_id,
                             "withdrawn_at": withdrawn.withdrawn_at})
        click.echo(json.dumps({"withdrawn": done}, indent=2))

    @consent_group.command("show")
    @home_option
    @identity_option
    @_with(actor_options)
    @click.option("--receipt", "receipt_id", default=None, help="Print this signed receipt.")
    @click.option("--purpose", "purposes", multiple=True, help="Purpose(s) (default: all).")
    def show(home, identity_file, actor_id, actor_role, actor_org, receipt_id, purposes) -> None:
        """Show a person's current consent per purpose, or one signed receipt (as your
        organisation holds them)."""
        from joinedup import operations as ops
        from joinedup.errors import OperationError
        from joinedup.operations.consent import ConsentStatusRequest, consent_status

        with service(home) as ctx:
            caller = resolve_caller(ctx.home, actor_id, actor_role, actor_org)
            try:
                if receipt_id:
                    doc = ops.read_receipt(ctx, caller, ops.ReadReceipt(receipt_id))
                    click.echo(json.dumps(doc, indent=2, sort_keys=True))
                    return
                identity = _identity(identity_file)
                doc = consent_status(ctx, caller, ConsentStatusRequest(identity, list(purposes)))
                identity.clear()
            except OperationError as exc:
                fail_with(exc)
        click.echo(json.dumps(doc, indent=2))

    @consent_group.command("history")
    @home_option
    @identity_option
    @_with(actor_options)
    def history(home, identity_file, actor_id, actor_role, actor_org) -> None:
        """The append-only consent history of a person (consents your organisation holds)."""
        from joinedup.errors import OperationError
        from joinedup.operations.consent import consent_history

        with service(home) as ctx:
            caller = resolve_caller(ctx.home, actor_id, actor_role, actor_org)
            identity = _identity(identity_file)
            try:
                events = consent_history(ctx, caller, identity)
            except OperationError as exc:
                fail_with(exc)
            finally:
                identity.clear()
        click.echo(json.dumps(events, indent=2))
