"""Every attack on a world's extracts (and, for cross-project linkage, a second world of
the same sources under another project key)."""

from __future__ import annotations

from collections.abc import Callable

from attacks.bloom import pattern_mining
from attacks.frequency import frequency_attacks
from attacks.known_plaintext import known_plaintext
from attacks.layout import ciphertext_length, cross_project, row_order
from attacks.result import AttackResult
from attacks.salt_graph import within_salt_graph
from attacks.views import (
    cross_project_views,
    fingerprint_frequency,
    fingerprint_known_plaintext,
    frame_alignment_bound,
)
from attacks.world import World


def run_all(world: World, other_project: World | None = None, known_fraction: float = 0.01,
            seed: int = 1, progress: Callable[[str], None] = lambda _s: None,
            limit: int | None = None) -> list[AttackResult]:
    """`limit`: the Bloom-filter decoding attacks score a seeded sample of that many rows
    per extract (decoding every row of a large extract costs minutes per round)."""
    known = world.known_people(known_fraction, seed)
    results: list[AttackResult] = []
    others = {e.name: e for e in other_project.extracts} if other_project else {}
    for extract in world.extracts:
        progress(f"{extract.name}: frequency alignment")
        results += frequency_attacks(extract, world.register)
        progress(f"{extract.name}: pattern mining")
        results += pattern_mining(extract, world.register, limit=limit)
        progress(f"{extract.name}: noise removal by grouping")
        results += pattern_mining(extract, world.register, grouping="token", limit=limit)
        progress(f"{extract.name}: known plaintext")
        results.append(known_plaintext(extract, world.register, known, limit=limit))
        progress(f"{extract.name}: salted views (fingerprints, equal values)")
        results.append(fingerprint_known_plaintext(extract, world.register, known, project=world.extracts))
        results.append(fingerprint_frequency(extract, world.register, world.extracts))
        progress(f"{extract.name}: graph matching inside postcode salt groups")
        results.append(within_salt_graph(extract, world.register))
        progress(f"{extract.name}: layout")
        results.append(ciphertext_length(extract, known))
        results.append(row_order(extract))
        if extract.name in others:
            results += cross_project(extract, others[extract.name])
            results += cross_project_views(extract, others[extract.name])
    progress("all extracts: frame alignment bound")
    results.append(frame_alignment_bound(world.extracts))
    return results
