"""CLI commands of the synthetic sources (registered by joinedup.cli)."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Add this concern's commands to the root group."""
