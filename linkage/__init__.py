"""linkage: link pseudonymised extracts into entities (see docs/CONTRACTS.md "Linkage unit").

Public surface:
- `ingest_extracts`, `active_extracts`, `extract_from_dir`, `IngestError`, `IngestedExtract`
- `link_extracts`, `LinkError`
- `default_settings`, `load_settings`, `save_settings`, `SettingsError`
- `score_identity_against_run` (person resolution against a finished run)
"""

from linkage.ingest import (
    IngestedExtract,
    IngestError,
    active_extracts,
    extract_from_dir,
    ingest_extracts,
)
from linkage.run import LinkError, link_extracts
from linkage.score import score_identity_against_run
from linkage.settings import SettingsError, default_settings, load_settings, save_settings

__all__ = [
    "IngestError",
    "IngestedExtract",
    "LinkError",
    "SettingsError",
    "active_extracts",
    "default_settings",
    "extract_from_dir",
    "ingest_extracts",
    "link_extracts",
    "load_settings",
    "save_settings",
    "score_identity_against_run",
]
