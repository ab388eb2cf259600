"""CLI commands of the audit concern (registered by joinedup.cli).

    joinedup audit verify       recompute the ledger; name the first bad entry; exit 1 if bad
    joinedup audit checkpoint   sign a checkpoint of the ledger as it is now
    joinedup audit prove ID     inclusion proof of one event in the latest checkpoint
    joinedup audit consistency OLD NEW   consistency proof between two tree sizes
    joinedup audit report       governance report (--json FILE, --html FILE)
    joinedup audit subject      every disclosure about one person (identifiers from a file)
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from joinedup.commands.common import home_option, read_json_object
from joinedup.commands.common import open_home as _home


def _ledger(home: Path | None):
    from audit import LedgerError

    h = _home(home)
    try:
        return _Closing(h.open_ledger())
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from exc


class _Closing:
    """A ledger whose close (which signs the final checkpoint) fails as a ClickException."""

    def __init__(self, ledger) -> None:
        self.ledger = ledger

    def __enter__(self):
        return self.ledger

    def __exit__(self, *exc: object) -> None:
        from audit import LedgerError

        try:
            self.ledger.close()
        except LedgerError as error:
            raise click.ClickException(f"audit checkpoint failed: {error}") from error


def _write_json(path: Path | None, doc: dict) -> None:
    text = json.dumps(doc, indent=2, sort_keys=True)
    if path is None:
        click.echo(text)
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)
    click.echo(f"wrote {path}")




def register(cli: click.Group) -> None:
    """Add this concern's commands to the root group."""

    @cli.group("audit")
    def audit_group() -> None:
        """The tamper-evident audit ledger: verify, prove, checkpoint, report."""

    @audit_group.command("verify")
    @home_option
    @click.option("--public-key", type=click.Path(exists=True, path_type=Path), default=None,
                  help="Audit public key (PEM) to trust; default: derived from the home's key.")
    @click.option("--checkpoint", "trusted", type=click.Path(exists=True, path_type=Path),
                  multiple=True, help="A checkpoint kept outside the ledger (repeatable).")
    @click.option("--witness", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help="The governance board's witness directory (default: [audit] witness).")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    def verify_command(home, public_key, trusted, witness, as_json) -> None:  # fmt: skip
        """Recompute every leaf, root and checkpoint, against the witness when there is one;
        exit 1 naming the first bad entry."""
        from cryptography.hazmat.primitives import serialization

        from audit import verify_ledger
        from audit.ledger import load_private_key

        h = _home(home)
        if public_key is not None:
            pem = public_key.read_bytes()
        else:
            private = load_private_key(h.signing_key_path("audit"))
            pem = private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        settings = h.ledger_settings
        result = verify_ledger(h.ledger_dir, pem, [read_json_object(p, "checkpoint") for p in trusted],
                               checkpoint_every=settings.checkpoint_every,
                               witness=witness or settings.witness)
        if as_json:
            click.echo(json.dumps(result.to_dict(), indent=2))
        else:
            for notice in result.notices:
                click.echo(f"note: {notice}")
            for problem in result.problems:
                click.echo(f"BAD: {problem}", err=True)
            if result.ok:
                against = ("no witness" if result.witness_checkpoints is None
                           else f"{result.witness_checkpoints} at the witness")
                click.echo(
                    f"ledger OK: {result.entries} entries, {result.checkpoints_checked} "
                    f"checkpoints verified ({against}), root {result.root_hash}"
                )
            else:
                first = result.to_dict()["first_bad_entry"]
                click.echo(f"ledger FAILED verification; first bad entry: {first or 'n/a'}", err=True)
        if not result.ok:
            raise SystemExit(1)

    @audit_group.command("checkpoint")
    @home_option
    @click.option("--out", type=click.Path(path_type=Path), default=None, help="Write it here.")
    def checkpoint_command(home, out) -> None:
        """Sign a checkpoint (tree size, root hash, time, key id) of the ledger as it is now."""
        with _ledger(home) as ledger:
            checkpoint = ledger.checkpoint()
            click.echo(f"public key: {ledger.public_key_path}", err=True)
        _write_json(out, checkpoint)

    @audit_group.command("prove")
    @home_option
    @click.argument("event_id")
    @click.option("--out", type=click.Path(path_type=Path), default=None, help="Write it here.")
    def prove_command(home, event_id, out) -> None:
        """Inclusion proof of EVENT_ID in a fresh signed checkpoint (proof, event, checkpoint)."""
        from audit import LedgerError
        from audit.verifier import load_public_key, verify_inclusion_proof

        with _ledger(home) as ledger:
            try:
                checkpoint = ledger.checkpoint()
                proof = ledger.inclusion_proof(event_id, checkpoint["tree_size"])
                proof["event"] = ledger.get(event_id)
            except LedgerError as exc:
                raise click.ClickException(str(exc)) from exc
            # Check our own output with the standalone verifier before handing it out.
            verify_inclusion_proof(proof, checkpoint, load_public_key(ledger.public_key_path.read_bytes()))
        _write_json(out, {"proof": proof, "checkpoint": checkpoint})

    @audit_group.command("consistency")
    @home_option
    @click.argument("old")
    @click.argument("new")
    @click.option("--out", type=click.Path(path_type=Path), default=None, help="Write it here.")
    def consistency_command(home, old, new, out) -> None:
        """Consistency proof from tree size (or checkpoint file) OLD to NEW."""
        from audit import LedgerError
        from audit.verifier import VerificationError, load_public_key, verify_consistency_proof

        with _ledger(home) as ledger:
            key = load_public_key(ledger.public_key_path.read_bytes())
            checkpoints = []
            for arg in (old, new):
                if arg.isdigit():
                    cp = ledger.checkpoint_for(int(arg))
                    if cp is None and int(arg) == len(ledger):
                        cp = ledger.checkpoint()
                    if cp is None:
                        raise click.ClickException(f"no signed checkpoint of size {arg}")
                else:
                    cp = read_json_object(Path(arg), "checkpoint")
                checkpoints.append(cp)
            try:
                proof = ledger.consistency_proof(checkpoints[0]["tree_size"], checkpoints[1]["tree_size"])
                verify_consistency_proof(proof, checkpoints[0], checkpoints[1], key)
            except (LedgerError, VerificationError, KeyError) as exc:
                raise click.ClickException(f"not consistent: {exc}") from exc
        _write_json(out, {"proof": proof, "old_checkpoint": checkpoints[0], "new_checkpoint": checkpoints[1]})

    @audit_group.command("report")
    @home_option
    @click.option("--from", "from_", required=True, help="Start (ISO date or time, inclusive).")
    @click.option("--to", "to", required=True, help="End (ISO date inclusive, or time exclusive).")
    @click.option("--html", "html_path", type=click.Path(path_type=Path), default=None)
    @click.option("--json", "json_path", type=click.Path(path_type=Path), default=None)
    def report_command(home, from_, to, html_path, json_path) -> None:
        """Governance report: accesses, denials, consent withdrawals, link runs, people seen."""
        from audit import ReportError, build_report, render_report_html

        with _ledger(home) as ledger:
            try:
                report = build_report(ledger, from_, to)
            except ReportError as exc:
                raise click.ClickException(str(exc)) from exc
        if json_path:
            _write_json(json_path, report)
        if html_path:
            tmp = html_path.with_name(html_path.name + ".tmp")
            tmp.write_text(render_report_html(report), encoding="utf-8")
            tmp.replace(html_path)
            click.echo(f"wrote {html_path}")
        if not json_path and not html_path:
            _write_json(None, report)

    @audit_group.command("subject")
    @home_option
    @click.option("--identifiers", type=click.Path(exists=True, path_type=Path), required=True,
                  help="JSON file of the person's identifiers (name, date of birth, ...).")
    @click.option("--out", type=click.Path(path_type=Path), default=None)
    def subject_command(home, identifiers, out) -> None:  # fmt: skip
        """Every disclosure about one person, for a subject access request."""
        from audit import subject_access

        raw = read_json_object(identifiers, "identifiers")
        h = _home(home)
        from connectors.pseudonymise import person_key

        try:
            key = person_key(h.keyring(), raw)
        except (ValueError, KeyError) as exc:  # StandardisationError names fields, not values
            raise click.ClickException(
                f"{identifiers}: cannot make a person key: {type(exc).__name__}: {exc}"
            ) from exc
        # The raw identifiers stop here: only the pseudonymous key goes further.
        with _ledger(home) as ledger:
            result = subject_access(ledger, key)
        _write_json(out, result)
