"""policies: see docs/CONTRACTS.md for the public surface."""
