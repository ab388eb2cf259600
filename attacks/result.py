"""What an attack reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class AttackResult:
    """One attack on one extract.

    `reidentified` is the expected number of records tied to the right person (a guess
    with k candidates, the right one among them, counts 1/k); `rate` divides it by the
    records attacked. `details` holds what else the attack learnt (attribute recovery,
    accuracy against a baseline), reported but not counted as re-identification.
    """

    attack: str
    extract: str
    records: int
    reidentified: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.reidentified / self.records if self.records else 0.0

    def row(self) -> dict[str, Any]:
        return {"attack": self.attack, "extract": self.extract, "records": self.records,
                "reidentified": round(self.reidentified, 1), "rate": self.rate, **self.details}
