"""consent: consent records and signed receipts, their append-only history and lookups.

Public surface (docs/CONTRACTS.md, "Consent"): `ConsentStore(store_path, signing_key_path=None,
catalogue=None)` with `grant`, `withdraw`, `current`, `history`, `records`, `receipt`;
`verify_receipt(signed, public_key=None)`; `load_catalogue(path)`.
"""

from consent.catalogue import Catalogue, CatalogueError, load_catalogue
from consent.receipts import ReceiptError, public_key_bytes, verify_receipt
from consent.store import AlreadyWithdrawn, ConsentError, ConsentRecord, ConsentStore

__all__ = [
    "AlreadyWithdrawn",
    "Catalogue",
    "CatalogueError",
    "ConsentError",
    "ConsentRecord",
    "ConsentStore",
    "ReceiptError",
    "load_catalogue",
    "public_key_bytes",
    "verify_receipt",
]
