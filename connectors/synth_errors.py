"""Realistic data-entry errors for the synthetic sources.

Each source copy of a person draws at most one *primary* error (which may touch a
name, the date of birth or the address) and possibly one *light* extra (nickname,
moved address, dropped middle name), never two identity-heavy errors at once, so that
every true match stays recoverable from the remaining fields.
"""

from __future__ import annotations

import numpy as np

# Primary error kinds and their rates per record (the rest: no primary error).
PRIMARY_RATES: dict[str, float] = {
    "nickname": 0.06,
    "given_typo": 0.02,
    "family_typo": 0.03,
    "surname_change": 0.02,
    "dob_swap": 0.012,
    "dob_typo": 0.006,
    "moved": 0.05,
    "missing_postcode": 0.01,
}
LIGHT_RATES: dict[str, float] = {"nickname": 0.03, "moved": 0.03, "drop_middle": 0.03}
# Rows that must be refused downstream (impossible date) or lose a field (bad check digit).
MALFORMED_RATE = 0.002

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def draw_kinds(rng: np.random.Generator, n: int, rates: dict[str, float]) -> np.ndarray:
    """One kind per record ("" for none), drawn with the given rates."""
    names = ["", *rates]
    probs = np.array([1.0 - sum(rates.values()), *rates.values()])
    return np.array(names, dtype=object)[rng.choice(len(names), size=n, p=probs)]


def typo(rng: np.random.Generator, word: str) -> str:
    """One keying error away from `word`, never in the first letter (so blocking survives)."""
    if len(word) < 4:
        return word + word[-1]
    i = int(rng.integers(1, len(word) - 1))
    op = int(rng.integers(4))
    letter = _LETTERS[int(rng.integers(26))]
    if op == 0:  # substitution
        letter = letter if letter != word[i].lower() else "e"
        return word[:i] + (letter.upper() if word[i].isupper() else letter) + word[i + 1 :]
    if op == 1:  # deletion
        return word[:i] + word[i + 1 :]
    if op == 2:  # transposition
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + word[i] + word[i:]  # doubled letter


def nhs_check_digit(body: np.ndarray) -> np.ndarray:
    """Modulus-11 check digit of 9-digit bodies (int64 array); 10 means 'no valid number'."""
    total = np.zeros(body.shape, dtype=np.int64)
    rest = body.copy()
    for weight in range(2, 11):  # last digit has weight 2, first weight 10
        total += (rest % 10) * weight
        rest //= 10
    check = 11 - total % 11
    return np.where(check == 11, 0, check)


def nhs_number_is_valid(number: str) -> bool:
    digits = number.replace(" ", "")
    if len(digits) != 10 or not digits.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(digits[9])
