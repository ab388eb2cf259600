"""Council reader: a SQL database (PostgreSQL, or a SQLite file) pulled through a DSN.

The council's native schema (`SCHEMA`): a `residents` table of identities keyed by
`person_ref`, and service tables keyed by the same `person_ref`:

- `ctax_accounts`          council tax arrears, housing benefit overpayment (revenues and benefits)
- `care_leavers`           children's services: people who left local-authority care
- `adult_social_care`      Care Act needs assessments, carers' assessments
- `supporting_families`    Supporting Families cases

One SQL query joins residents to per-person aggregates of each service table, so the
database does the work and the reader streams one row per resident.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from connectors.mapping import Mapping, MappingError, mapping_from_dict
from connectors.records import Indicator, RejectSink, RowReject, SourceRecord
from connectors.sources import SourceError
from connectors.sources._agency_csv import columns_picker, identity_picker

SCHEMA = sa.MetaData()

residents = sa.Table(
    "residents",
    SCHEMA,
    sa.Column("person_ref", sa.String(16), primary_key=True),
    sa.Column("forename", sa.String(64)),
    sa.Column("middle_names", sa.String(64)),
    sa.Column("surname", sa.String(64)),
    # Kept as text, as legacy council systems do: a mistyped date must survive the pull
    # so the connector can reject it with its row number.
    sa.Column("date_of_birth", sa.String(10)),
    sa.Column("sex", sa.String(1)),
    sa.Column("nhs_number", sa.String(12)),
    sa.Column("ni_number", sa.String(13)),
    sa.Column("address_line_1", sa.String(128)),
    sa.Column("address_line_2", sa.String(128)),
    sa.Column("town", sa.String(64)),
    sa.Column("postcode", sa.String(8)),
    sa.Column("updated_on", sa.Date),
)

ctax_accounts = sa.Table(
    "ctax_accounts",
    SCHEMA,
    sa.Column("account_ref", sa.String(16), primary_key=True),
    sa.Column("person_ref", sa.String(16), nullable=False, index=True),
    sa.Column("ctax_arrears_gbp", sa.Numeric(10, 2), nullable=False),
    sa.Column("hb_overpayment_gbp", sa.Numeric(10, 2)),
    sa.Column("as_at", sa.Date, nullable=False),
)

care_leavers = sa.Table(
    "care_leavers",
    SCHEMA,
    sa.Column("person_ref", sa.String(16), nullable=False, index=True),
    sa.Column("left_care_on", sa.Date),
    sa.Column("recorded_on", sa.Date, nullable=False),
)

adult_social_care = sa.Table(
    "adult_social_care",
    SCHEMA,
    sa.Column("case_ref", sa.String(16), primary_key=True),
    sa.Column("person_ref", sa.String(16), nullable=False, index=True),
    sa.Column("care_act_status", sa.String(16)),  # "eligible" / "assessed" / NULL
    sa.Column("carer_assessment", sa.Boolean, nullable=False),
    sa.Column("assessed_on", sa.Date, nullable=False),
)

supporting_families = sa.Table(
    "supporting_families",
    SCHEMA,
    sa.Column("case_ref", sa.String(16), primary_key=True),
    sa.Column("person_ref", sa.String(16), nullable=False, index=True),
    sa.Column("case_status", sa.String(8), nullable=False),  # "open" / "closed"
    sa.Column("opened_on", sa.Date, nullable=False),
)

DEFAULT_MAPPING: Mapping = mapping_from_dict(
    {
        "identity": {
            "local_id": "person_ref",
            "nhs_number": "nhs_number",
            "nino": "ni_number",
            "given_name": "forename",
            "middle_names": "middle_names",
            "family_name": "surname",
            "date_of_birth": {"column": "date_of_birth", "format": "%Y-%m-%d"},
            "sex": "sex",
            "postcode": "postcode",
            "address": ["address_line_1", "address_line_2"],
            "locality": "town",
        }
    },
    "council default mapping",
)

_BATCH = 5000
# A byte that is not UTF-8, as the "surrogateescape" handler leaves it in decoded text.
_UNDECODED = re.compile("[\udc80-\udcff]")
_TEXT_OR_NULL = frozenset({str, type(None)})


def _sqlite_text_leniently(dbapi_connection: Any, _record: Any) -> None:
    """Decode SQLite text so that one row of bad bytes is a reject of that row, not a
    failure of the whole query (sqlite3 raises for the whole cursor otherwise)."""
    dbapi_connection.text_factory = lambda b: b.decode("utf-8", "surrogateescape")


def dsn_for(input: str) -> str:
    """A DSN as given, or `sqlite:///` for a plain path to a SQLite file."""
    return input if "://" in input else f"sqlite:///{Path(input).resolve()}"


def _describe(dsn: str) -> str:
    try:
        return make_url(dsn).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable DSN>"


def _open(input: str) -> tuple[sa.Engine, str]:
    dsn = dsn_for(input)
    where = _describe(dsn)
    try:
        url = make_url(dsn)
    except ArgumentError as exc:
        raise SourceError(f"{where}: not a database URL: {exc}") from exc
    if url.get_backend_name() == "sqlite":
        # SQLAlchemy would silently create an empty database for a mistyped path.
        db = url.database or ""
        if not db or db == ":memory:" or not Path(db).is_file():
            raise SourceError(f"{where}: no such SQLite database file")
    try:
        engine = sa.create_engine(url)
        if url.get_backend_name() == "sqlite":
            event.listen(engine, "connect", _sqlite_text_leniently)
    except (ArgumentError, SQLAlchemyError, ImportError) as exc:
        raise SourceError(f"{where}: cannot open database: {exc}") from exc
    return engine, where


def _check_schema(engine: sa.Engine, where: str, mapping: Mapping) -> None:
    try:
        inspector = sa.inspect(engine)
        tables = set(inspector.get_table_names())
    except SQLAlchemyError as exc:
        raise SourceError(f"{where}: cannot read the database: {exc.__class__.__name__}: {exc}") from exc
    missing_tables = sorted({t.name for t in SCHEMA.sorted_tables} - tables)
    if missing_tables:
        raise SourceError(f"{where}: not a council database: missing table(s) {', '.join(missing_tables)}")
    for table in SCHEMA.sorted_tables:
        have = {c["name"] for c in inspector.get_columns(table.name)}
        needed = {c.name for c in table.columns} if table is not residents else {"person_ref"}
        lacking = sorted(needed - have)
        if lacking:
            raise SourceError(f"{where}: table {table.name} lacks column(s) {', '.join(lacking)}")
        if table is residents:
            try:
                mapping.check_columns(have, f"{where} (table residents)")
            except MappingError as exc:
                raise SourceError(str(exc)) from exc


def _flag(condition: sa.ColumnElement) -> sa.ColumnElement:
    """1 when any row of the person meets the condition (portable: no boolean max)."""
    return sa.func.max(sa.case((condition, 1), else_=0))


def _valid_rows(table: sa.Table, sqlite: bool) -> list[sa.ColumnElement]:
    """On SQLite, only the service rows whose values have their types are aggregated
    (the residents they belong to are rejected, see _sqlite_bad_service_rows)."""
    return [ok for _, ok in _service_checks(table)] if sqlite else []


def _query(mapping: Mapping, sqlite: bool = False) -> sa.Select:
    identity_columns = sorted(mapping.columns() | {"person_ref"})
    ct = (
        sa.select(
            ctax_accounts.c.person_ref,
            sa.func.sum(ctax_accounts.c.ctax_arrears_gbp).label("ctax_arrears_gbp"),
            sa.func.sum(ctax_accounts.c.hb_overpayment_gbp).label("hb_overpayment_gbp"),
            sa.func.max(ctax_accounts.c.as_at).label("ctax_as_at"),
        )
        .where(*_valid_rows(ctax_accounts, sqlite))
        .group_by(ctax_accounts.c.person_ref)
        .subquery("ct")
    )
    cl = (
        sa.select(care_leavers.c.person_ref, sa.func.max(care_leavers.c.recorded_on).label("cl_recorded_on"))
        .where(*_valid_rows(care_leavers, sqlite))
        .group_by(care_leavers.c.person_ref)
        .subquery("cl")
    )
    asc = adult_social_care.c
    sc = (
        sa.select(
            asc.person_ref,
            _flag(asc.care_act_status == "eligible").label("care_eligible"),
            _flag(asc.care_act_status == "assessed").label("care_assessed"),
            _flag(asc.carer_assessment.is_(True)).label("carer"),
            sa.func.max(asc.assessed_on).label("sc_assessed_on"),
        )
        .where(*_valid_rows(adult_social_care, sqlite))
        .group_by(asc.person_ref)
        .subquery("sc")
    )
    sfc = supporting_families.c
    sf = (
        sa.select(
            sfc.person_ref,
            sa.func.max(sa.case((sfc.case_status == "open", sfc.opened_on), else_=None)).label("sf_open_since"),
        )
        .where(*_valid_rows(supporting_families, sqlite))
        .group_by(sfc.person_ref)
        .subquery("sf")
    )
    r = residents
    return (
        sa.select(
            *[r.c[name].label(f"id__{name}") for name in identity_columns],
            ct.c.ctax_arrears_gbp,
            ct.c.hb_overpayment_gbp,
            ct.c.ctax_as_at,
            cl.c.cl_recorded_on,
            sc.c.care_eligible,
            sc.c.care_assessed,
            sc.c.carer,
            sc.c.sc_assessed_on,
            sa.type_coerce(sf.c.sf_open_since, sa.Date).label("sf_open_since"),
        )
        .select_from(
            r.outerjoin(ct, ct.c.person_ref == r.c.person_ref)
            .outerjoin(cl, cl.c.person_ref == r.c.person_ref)
            .outerjoin(sc, sc.c.person_ref == r.c.person_ref)
            .outerjoin(sf, sf.c.person_ref == r.c.person_ref)
        )
        .order_by(r.c.person_ref)
    )


def _money(value: Decimal | float | None) -> float | None:
    return None if value is None else round(float(value), 2)


def _indicators(row: sa.Row) -> list[Indicator]:
    out: list[Indicator] = []
    as_at: date | None = row.ctax_as_at
    if row.ctax_arrears_gbp is not None:
        out.append(Indicator("council.ctax_arrears_gbp", _money(row.ctax_arrears_gbp), as_at))
    if row.hb_overpayment_gbp is not None:
        out.append(Indicator("council.hb_overpayment_gbp", _money(row.hb_overpayment_gbp), as_at))
    if row.cl_recorded_on is not None:
        out.append(Indicator("council.care_leaver", True, row.cl_recorded_on))
    if row.care_eligible:
        out.append(Indicator("council.care_act_need", "eligible", row.sc_assessed_on))
    elif row.care_assessed:
        out.append(Indicator("council.care_act_need", "assessed", row.sc_assessed_on))
    if row.carer:
        out.append(Indicator("council.young_carer_or_carer", True, row.sc_assessed_on))
    if row.sf_open_since is not None:
        out.append(Indicator("council.supporting_families", True, row.sf_open_since))
    return out


def read(input: str, mapping: Mapping, rejects: RejectSink) -> Iterator[SourceRecord]:
    """Stream one record per resident from the council database at `input` (DSN or SQLite path)."""
    engine, where = _open(input)
    _check_schema(engine, where, mapping)  # raises before the generator yields
    return _stream(engine, where, mapping, rejects)


def _identity_value(name: str, value: Any) -> tuple[str | None, str | None]:
    """(text, None) for a usable identity value, (None, reason) for one of the wrong type."""
    if value is None or isinstance(value, str):
        if value is not None and _UNDECODED.search(value):
            return None, "not UTF-8 text"
        return value, None
    if isinstance(value, bool):
        return None, "stored as a boolean, expected text"
    if isinstance(value, int) and name not in ("date_of_birth",):
        return str(value), None  # an id or number column typed as integer
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat(), None
    return None, f"stored as {type(value).__name__}, expected text"


def read_batches(input: str, mapping: Mapping, size: int, rejects: RejectSink) -> Iterator[tuple]:
    """The records of `read` as batches: (row numbers, identity columns, indicators per
    row), the identity columns picked for the whole batch at once (the extract's path)."""
    engine, where = _open(input)
    _check_schema(engine, where, mapping)  # raises before the generator yields
    return _batches(engine, where, mapping, size, rejects)


def _batches(engine: sa.Engine, where: str, mapping: Mapping, size: int, rejects: RejectSink) -> Iterator[tuple]:
    pick = columns_picker(mapping)
    numbers: list[int] = []
    natives: list[dict[str, Any]] = []
    found: list[list[Indicator]] = []
    for row_number, native, indicators in _stream(engine, where, mapping, rejects, picked=False):
        numbers.append(row_number)
        natives.append(native)
        found.append(indicators)
        if len(numbers) >= size:
            yield numbers, pick(natives), found
            numbers, natives, found = [], [], []
    if numbers:
        yield numbers, pick(natives), found


def _stream(engine: sa.Engine, where: str, mapping: Mapping, rejects: RejectSink,
            picked: bool = True) -> Iterator[Any]:
    """SourceRecords, or with `picked=False` (row number, native identity dict, indicators)."""
    pick = identity_picker(mapping)
    row_number = 0
    try:
        with engine.connect() as conn:
            sqlite = engine.dialect.name == "sqlite"
            bad = _sqlite_bad_service_rows(conn) if sqlite else {}
            query = _query(mapping, sqlite)
            result = conn.execution_options(stream_results=True, yield_per=_BATCH).execute(query)
            names = [(k, key[4:]) for k, key in enumerate(result.keys()) if key.startswith("id__")]
            # The query selects the identity columns first: a row's are row[:width].
            width = len(names)
            assert [k for k, _ in names] == list(range(width))
            fields = [name for _, name in names]
            for row_number, row in enumerate(result, start=1):
                values = row[:width]
                problem = None
                # The usual row, text or NULL throughout and all of it UTF-8, is taken as it
                # is (what _identity_value gives it); any other is checked value by value.
                if _TEXT_OR_NULL.issuperset(map(type, values)) and not _UNDECODED.search(
                        "".join(filter(None, values))):
                    native: dict[str, Any] = dict(zip(fields, values, strict=True))
                else:
                    native = {}
                    for k, name in names:
                        native[name], reason = _identity_value(name, row[k])
                        if reason and problem is None:
                            problem = RowReject(row_number, f"residents.{name}", reason)
                person = native.get("person_ref")
                if problem is None and person in bad:
                    problem = RowReject(row_number, *bad[person])
                if problem is not None:
                    rejects(problem)
                    continue
                if picked:
                    yield SourceRecord(row_number, pick(native), _indicators(row))
                else:
                    yield row_number, native, _indicators(row)
    except SQLAlchemyError as exc:
        raise SourceError(f"{where}: query failed: {exc.__class__.__name__}: {exc}") from exc
    except (ValueError, TypeError) as exc:
        # A value the driver cannot convert (e.g. a malformed date in a service table).
        raise SourceError(f"{where}: row {row_number + 1} (residents in person_ref order): unreadable value: {exc}") from exc
    finally:
        engine.dispose()


def _valid_value(column: sa.Column) -> sa.ColumnElement:
    """SQLite keeps any value in any column: the condition that the column holds its type."""
    kind = column.type
    if isinstance(kind, sa.Date):
        # A modifier makes SQLite normalise the date ('2024-02-30' -> '2024-03-01'), so
        # only a real calendar date in YYYY-MM-DD equals its own normal form.
        ok = sa.and_(sa.func.typeof(column) == "text", sa.func.date(column, "+0 days") == column)
    elif isinstance(kind, sa.Numeric):
        ok = sa.func.typeof(column).in_(("integer", "real"))
    elif isinstance(kind, sa.Boolean):
        ok = sa.and_(sa.func.typeof(column) == "integer", column.in_((0, 1)))
    else:
        ok = sa.func.typeof(column) == "text"
    if column.nullable:
        return sa.or_(column.is_(None), ok)
    return ok


_SERVICE_TABLES = (ctax_accounts, care_leavers, adult_social_care, supporting_families)


def _service_checks(table: sa.Table) -> list[tuple[sa.Column, sa.ColumnElement]]:
    """(column, its validity condition) of the typed columns the query aggregates."""
    return [(c, _valid_value(c)) for c in table.columns if not isinstance(c.type, sa.String)]


def _sqlite_bad_service_rows(conn: sa.Connection) -> dict[str, tuple[str, str]]:
    """person_ref -> (table.column, reason) for residents with a malformed service row."""
    bad: dict[str, tuple[str, str]] = {}
    for table in _SERVICE_TABLES:
        for column, ok in _service_checks(table):
            query = sa.select(table.c.person_ref).where(sa.not_(ok)).distinct()
            what = "missing" if not column.nullable else "malformed"
            for (person,) in conn.execute(query):
                bad.setdefault(str(person), (
                    f"{table.name}.{column.name}",
                    f"{what} or wrong type (expected {column.type.__class__.__name__.lower()})",
                ))
    return bad
