"""CLI commands of the connector concern (registered by joinedup.cli)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from connectors.keys import SecretError
from connectors.mapping import MappingError, load_mapping
from connectors.sources import KINDS, SourceError


@click.command("extract")
@click.option("--home", "home", type=click.Path(path_type=Path), default=None,
              help="Deployment home (default: $JOINEDUP_HOME, else ./joinedup-home).")
@click.option("--kind", type=click.Choice(KINDS), required=True, help="Source kind.")
@click.option("--source-name", required=True, help="Name of this source, e.g. dwp-thanet.")
@click.option("--input", "input_", required=True, help="Input file, directory or DSN.")
@click.option("--mapping", "mapping_file", type=click.Path(path_type=Path), default=None,
              help="TOML column mapping (overrides the kind's default mapping).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Output directory of the split extract (replaced atomically).")
@click.option("--hardening", type=click.Choice(["none", "blip"]), default=None,
              help="Bloom-filter hardening (default: the home's [encoding] setting, else none).")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Processes (Python engine, default 1) or threads (native engine, default one per "
                   "core) that encode batches.")
@click.option("--engine", type=click.Choice(["auto", "python", "native"]), default="auto", show_default=True,
              help="native: the Go program (scripts/native.sh builds it), several times faster, same "
                   "extract; auto: native when it is built and reads this kind, else python.")
def extract_command(
    home: Path | None,
    kind: str,
    source_name: str,
    input_: str,
    mapping_file: Path | None,
    out_dir: Path,
    hardening: str | None,
    workers: int | None,
    engine: str,
) -> None:
    """Pseudonymise a source into a split extract (linkage, content, keymap, rejects, manifest)."""
    from connectors.extract import (
        ExtractError,
        pseudonymise_extract,
        skip_pyarrow_pandas_probe,
        summary_line,
    )
    from connectors.pseudonymise import EncodingSettings
    from joinedup.home import HomeError, load_home

    try:
        h = load_home(home)
        keyring = h.keyring()
        encoding = dict(h.settings.get("encoding", {}))
        if hardening:
            encoding["hardening"] = hardening
        settings = EncodingSettings.from_dict(encoding)
        override = load_mapping(mapping_file) if mapping_file else None
    except (HomeError, SecretError, MappingError) as exc:
        raise click.ClickException(str(exc)) from exc
    except (TypeError, ValueError) as exc:
        raise click.ClickException(f"encoding settings in the home: {exc}") from exc

    skip_pyarrow_pandas_probe()  # this process needs no pandas: ~0.4 s saved per extract
    started = time.perf_counter()
    with _progress_bar() as advance:
        try:
            manifest = pseudonymise_extract(
                keyring, kind, source_name, input_, override, out_dir, settings, progress=advance,
                workers=workers, engine=engine,
            )
        except (SourceError, MappingError, ExtractError) as exc:
            raise click.ClickException(str(exc)) from exc
    elapsed = time.perf_counter() - started
    click.echo(f"{summary_line(manifest, out_dir)} in {elapsed:.2f} s")


class _progress_bar:
    """A rich progress display on an interactive terminal; silent otherwise."""

    def __enter__(self):
        if not sys.stderr.isatty():
            return lambda n: None
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("pseudonymising: {task.completed:,} rows"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._progress.__enter__()
        task = self._progress.add_task("extract", total=None)
        return lambda n: self._progress.update(task, completed=n)

    def __exit__(self, *exc_info) -> None:
        if hasattr(self, "_progress"):
            self._progress.__exit__(*exc_info)


def register(cli: click.Group) -> None:
    """Add this concern's commands to the root group."""
    cli.add_command(extract_command)
