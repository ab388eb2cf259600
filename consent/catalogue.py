"""The consent catalogue: purposes and data categories a consent may name (versioned TOML)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.files import read_document

# The shipped catalogue. consent does not import joinedup; it only reads this data file.
DEFAULT_CATALOGUE = Path(__file__).resolve().parents[1] / "joinedup" / "defaults" / "consent-catalogue.toml"
CATALOGUE_SCHEMA_VERSION = 1
CATEGORY_KINDS = ("agency", "barrier")


class CatalogueError(Exception):
    """The catalogue file is missing or invalid."""


@dataclass(frozen=True)
class Catalogue:
    version: str
    privacy_notice_version: str
    default_duration_days: int
    collection_methods: tuple[str, ...]
    controllers: tuple[str, ...]
    purposes: dict[str, dict[str, Any]]
    categories: dict[str, dict[str, Any]]

    def special_categories(self) -> list[str]:
        return sorted(c for c, v in self.categories.items() if v["special_category"])

    def category_title(self, code: str) -> str:
        return self.categories.get(code, {}).get("title", code)


def load_catalogue(path: Path | None = None) -> Catalogue:
    path = Path(path) if path else DEFAULT_CATALOGUE
    doc = read_document(path, "toml", CatalogueError)

    def fail(field: str, reason: str) -> CatalogueError:
        return CatalogueError(f"{path}: {field}: {reason}")

    if doc.get("schema_version") != CATALOGUE_SCHEMA_VERSION:
        raise fail("schema_version", f"must be {CATALOGUE_SCHEMA_VERSION}")
    for key in ("version", "privacy_notice_version"):
        if not isinstance(doc.get(key), str) or not doc[key].strip():
            raise fail(key, "must be a non-empty string")
    days = doc.get("default_duration_days")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650:
        raise fail("default_duration_days", "must be a whole number of days from 1 to 3650")
    for key in ("collection_methods", "controllers"):
        values = doc.get(key)
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            raise fail(key, "must be a non-empty list of strings")
    purposes = doc.get("purposes")
    if not isinstance(purposes, dict) or not purposes:
        raise fail("purposes", "must name at least one purpose")
    for name, purpose in purposes.items():
        if not isinstance(purpose, dict) or not str(purpose.get("title", "")).strip():
            raise fail(f"purposes.{name}.title", "must be a non-empty string")
    categories = doc.get("categories")
    if not isinstance(categories, dict) or not categories:
        raise fail("categories", "must name at least one category")
    for code, category in categories.items():
        if not isinstance(category, dict):
            raise fail(f"categories.{code}", "must be a table")
        if category.get("kind") not in CATEGORY_KINDS:
            raise fail(f"categories.{code}.kind", f"must be one of {', '.join(CATEGORY_KINDS)}")
        if not str(category.get("title", "")).strip():
            raise fail(f"categories.{code}.title", "must be a non-empty string")
        if not isinstance(category.get("special_category"), bool):
            raise fail(f"categories.{code}.special_category", "must be true or false")
    return Catalogue(
        version=doc["version"],
        privacy_notice_version=doc["privacy_notice_version"],
        default_duration_days=days,
        collection_methods=tuple(doc["collection_methods"]),
        controllers=tuple(doc["controllers"]),
        purposes=purposes,
        categories=categories,
    )
