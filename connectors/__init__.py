"""connectors: see docs/CONTRACTS.md for the public surface.

Agency readers (`connectors.sources`) yield raw `SourceRecord`s; `standardise` cleans and
validates identity fields; `pseudonymise` turns them into keyed tokens, CLKs and blocking
keys; `content` encrypts the coded indicators; `extract` writes the split extract.
"""

from connectors.content import (
    ContentError,
    decrypt_rows,
    decrypted_row_count,
    encrypt_rows,
    reset_decrypted_row_count,
)
from connectors.keys import KeyRing
from connectors.pseudonymise import (
    LINKAGE_COLUMNS,
    EncodingSettings,
    IdentityEncoder,
    dice,
    person_key,
)
from connectors.standardise import (
    Problem,
    StandardIdentity,
    StandardisationError,
    standardise_identity,
)

__all__ = [
    "ContentError",
    "EncodingSettings",
    "IdentityEncoder",
    "KeyRing",
    "LINKAGE_COLUMNS",
    "Problem",
    "StandardIdentity",
    "StandardisationError",
    "decrypt_rows",
    "decrypted_row_count",
    "dice",
    "encrypt_rows",
    "person_key",
    "reset_decrypted_row_count",
    "standardise_identity",
]
