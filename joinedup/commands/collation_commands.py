"""CLI commands of the collation concern (registered by joinedup.cli).

    joinedup summary  --home H --identifiers FILE.json --purpose P --as USER
                      [--provider ORG] [--barriers MH,HOU] [--adjust GBP --reason TEXT] [--json]
    joinedup hotspots --home H --level sector --as USER --out DIR [--purpose P] [--lookup CSV]

`--as` names a user of the home's users store (its id), or "role:organisation:id" while
testing a fresh home. Exit codes: 0 disclosed, 2 no summary (no match / needs review),
3 refused by policy, 1 any other error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from joinedup.commands.common import home_option, read_json_object, resolve_caller, service

EXIT_NO_SUMMARY = 2
EXIT_REFUSED = 3

as_option = click.option(
    "--as", "as_user", required=True,
    help="Who is asking: a user id from the users store, or role:organisation:id.",
)


@click.command("summary")
@home_option
@click.option("--identifiers", "identifiers_file", type=click.Path(path_type=Path, exists=True,
              dir_okay=False), required=True,
              help="JSON object of the person's identifiers (given_name, family_name, "
                   "date_of_birth, nino, nhs_number, postcode, ...).")
@click.option("--purpose", default="employment_support", show_default=True)
@as_option
@click.option("--provider", default=None, help="Referral summary for this provider organisation.")
@click.option("--barriers", default=None, help="Barrier codes to include, e.g. MH,HOU.")
@click.option("--adjust", "adjust_gbp", type=float, default=0.0,
              help="Adviser's payment adjustment in GBP (bounded by the taxonomy).")
@click.option("--reason", default=None, help="Reason for the payment adjustment.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def summary_command(home: Path | None, identifiers_file: Path, purpose: str, as_user: str,
                    provider: str | None, barriers: str | None, adjust_gbp: float,
                    reason: str | None, as_json: bool) -> None:
    """A consented barrier summary of one person (the person in front of the adviser)."""
    identifiers = _read_identifiers(identifiers_file)
    categories = [c.strip().upper() for c in barriers.split(",") if c.strip()] if barriers else None
    from joinedup import operations as ops
    from joinedup.errors import OperationError, Refused, Withheld

    with service(home) as ctx:
        user = resolve_caller(ctx.home, as_user)
        try:
            if user.role == "provider":
                result = _provider_summary(ctx, user, identifiers, categories)
            else:
                result = ops.request_summary(ctx, user, ops.SummaryRequest(
                    identifiers=identifiers, purpose=purpose, categories=categories,
                    provider=provider, adjustment_gbp=adjust_gbp, adjustment_reason=reason))
        except (Refused, Withheld) as exc:
            _refused(exc)
        except OperationError as exc:
            raise click.ClickException(str(exc)) from exc
    if result.summary is None:
        click.echo(f"no summary: {result.outcome}: {result.reason} "
                   f"(decision {result.decision_id})", err=True)
        sys.exit(EXIT_NO_SUMMARY)
    click.echo(json.dumps(result.summary, indent=2) if as_json else result.text)


@click.command("hotspots")
@home_option
@click.option("--level", type=click.Choice(["sector", "district", "ward", "lsoa"]),
              default="sector", show_default=True)
@as_option
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Directory for hotspots-LEVEL.csv, .json (metadata) and .png (chart).")
@click.option("--purpose", default="service_planning", show_default=True)
@click.option("--barriers", default=None, help="Barrier codes to count (default: all allowed).")
@click.option("--lookup", "lookup_path", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              default=None, help="CSV postcode_sector,ward,lsoa (default: the home's areas-lookup.csv).")
def hotspots_command(home: Path | None, level: str, as_user: str, out_dir: Path, purpose: str,
                     barriers: str | None, lookup_path: Path | None) -> None:
    """People with each barrier and with multiple disadvantage by area, suppressed and rounded."""
    categories = [c.strip().upper() for c in barriers.split(",") if c.strip()] if barriers else None
    from joinedup import operations as ops
    from joinedup.errors import OperationError, Refused, Withheld
    from linkage.collation import AreaCountsError

    with service(home) as ctx:
        user = resolve_caller(ctx.home, as_user)
        try:
            result = ops.request_area_counts(ctx, user, ops.AreaCountsRequest(
                level=level, purpose=purpose, categories=categories, out_dir=out_dir,
                lookup_path=lookup_path))
        except (Refused, Withheld) as exc:
            _refused(exc)
        except (OperationError, AreaCountsError) as exc:
            raise click.ClickException(str(exc)) from exc
    meta = result["metadata"]
    click.echo(
        f"{meta['areas']} areas by {level}; {meta['suppressed_primary']} cells suppressed "
        f"(counts 1-{meta['min_count'] - 1}), {meta['suppressed_secondary']} more to protect "
        f"totals; others rounded to {meta['rounding_base']}; taxonomy {meta['taxonomy_version']}"
    )
    for name, path in result["files"].items():
        click.echo(f"  {name}: {path}")


def _provider_summary(ctx, user, identifiers, categories):
    """A provider reads the referral summary of a person referred to it: the referral
    records (not the caller) say who was referred and for which barriers."""
    from joinedup import operations as ops
    from joinedup.operations.referrals import referrals_for

    person_key = ctx.person_key(identifiers)
    referrals = [r for r in referrals_for(ctx, user.organisation) if r.person_key == person_key]
    referral_id = max(referrals, key=lambda r: r.created_at).referral_id if referrals else "none"
    read = ops.read_referral(ctx, user, ops.ReadReferral(referral_id))
    if categories:  # narrow what is shown, never widen what was disclosed
        summary = dict(read.summary.summary or {})
        summary["barriers"] = [b for b in summary.get("barriers", [])
                               if b.get("code") in set(categories)]
        from dataclasses import replace

        return replace(read.summary, summary=summary)
    return read.summary


def _read_identifiers(path: Path) -> dict:
    doc = read_json_object(path, "identifiers")
    if not all(isinstance(v, str | None) for v in doc.values()):
        raise click.ClickException(f"{path}: must be a JSON object of identifier name -> string")
    return doc


def _refused(exc) -> None:
    click.echo(f"refused (decision {exc.decision_id}):", err=True)
    for reason in getattr(exc, "reasons", None) or [str(exc)]:
        click.echo(f"  - {reason}", err=True)
    sys.exit(EXIT_REFUSED)


def register(cli: click.Group) -> None:
    """Add this concern's commands to the root group."""
    cli.add_command(summary_command)
    cli.add_command(hotspots_command)
