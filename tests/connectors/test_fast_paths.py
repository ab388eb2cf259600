"""The column-at-once NHS number and NINO checks agree with the per-value standardisers:
whatever the fast path accepts, it standardises exactly as the per-value function does, and
it accepts the clean shapes (so the fast path is really taken)."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from connectors.standardise import nhs_numbers_fast, ninos_fast, standard_nhs_number, standard_nino


def _fuzzed_values(seed: int = 5) -> list[str]:
    rnd = random.Random(seed)
    alphabet = "0123456789 -\t\nABCDGKNTZabz\u0660\u00a0\x1cOQU"
    values = {"".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 13))) for _ in range(20000)}
    for _ in range(5000):
        values.add(f"{rnd.randrange(10**10):010d}")
        nino = (f"{rnd.choice('ABCEGHJKLMNPRSTWXYZ')}{rnd.choice('ABCEGHJKLMNOPRSTWXYZ')}"
                f"{rnd.randrange(10**6):06d}{rnd.choice(['', 'A', 'D', 'E'])}")
        values.add(rnd.choice([nino, nino.lower(), nino[:2] + " " + nino[2:], " " + nino]))
    return sorted(values)


@pytest.mark.parametrize(
    "fast, per_value", [(nhs_numbers_fast, standard_nhs_number), (ninos_fast, standard_nino)]
)
def test_fast_path_agrees_with_the_per_value_standardiser(fast, per_value):
    values = _fuzzed_values()
    accepted, standard = fast(pa.array(values))
    standard = standard.to_pylist()
    n_accepted = 0
    for value, ok, std in zip(values, accepted, standard, strict=True):
        if ok:
            n_accepted += 1
            assert per_value(value) == std, value
    assert n_accepted > 200  # the clean shapes do take the fast path (1 in 11 random NHS numbers is valid)


def test_fast_paths_refuse_what_the_rules_refuse():
    accepted, _ = nhs_numbers_fast(pa.array(["9434765919", "9434765918", "943476591", "94347659190"]))
    assert accepted.tolist() == [True, False, False, False]  # valid; bad check digit; 9; 11 digits
    accepted, std = ninos_fast(pa.array(["AB 12 34 56 C", "ab123456c", "BG123456A", "AB1234567"]))
    assert accepted.tolist() == [True, True, False, False]  # BG is a never-issued prefix
    assert std.to_pylist()[:2] == ["AB123456", "AB123456"]
