"""The reader surface for rows it refuses: a sink, or an error when nobody keeps rejects."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.records import RowReject
from connectors.sources import DuplicateIds, SourceError, read_records
from tests.connectors.extract_fixtures import person_rows, write_csv

MAPPING = {"identity": {"local_id": "rec_id", "given_name": "first", "family_name": "surname"}}


def _mapping():
    from connectors.mapping import mapping_from_dict

    return mapping_from_dict(MAPPING)


def _file(tmp_path: Path) -> Path:
    path = write_csv(tmp_path / "p.csv", person_rows(12))
    lines = path.read_text().splitlines(keepends=True)
    lines[4] = lines[4].rstrip("\n") + ",surplus\n"  # row 4: one value too many
    lines[7] = lines[2]  # row 7: the same person (and local id) as row 2
    path.write_text("".join(lines))
    return path


def test_refused_rows_go_to_the_sink_and_the_rest_are_read(tmp_path):
    rejects: list[RowReject] = []
    records = list(read_records("csv", str(_file(tmp_path)), _mapping(), rejects.append))
    assert [r.row_number for r in records] == [1, 2, 3, 5, 6, 8, 9, 10, 11, 12]
    assert rejects == [
        RowReject(4, "(row)", "14 values, the header has 13 columns"),
        RowReject(7, "local_id", "duplicate local id (first at row 2)"),
    ]
    assert len(records) + len(rejects) == 12


def test_without_a_sink_the_first_refused_row_is_an_error(tmp_path):
    path = _file(tmp_path)
    with pytest.raises(SourceError, match=r"p\.csv: row 4, \(row\): 14 values"):
        list(read_records("csv", str(path), _mapping()))


def test_duplicate_ids_batch_and_row_paths_agree():
    seen: list[RowReject] = []
    ids = DuplicateIds(seen.append)
    assert ids.fresh_batch([1, 2, 3], ["a", "b", "c"])
    assert not ids.fresh_batch([4, 5], ["d", "b"])  # "b" seen: nothing recorded, rows one by one
    assert [ids.fresh(4, "d"), ids.fresh(5, "b")] == [True, False]
    assert not ids.fresh_batch([6, 7], ["e", "e"])  # a duplicate inside the batch
    assert [ids.fresh(6, "e"), ids.fresh(7, "e")] == [True, False]
    assert ids.fresh(8, None) and ids.fresh(9, None)  # no id: standardisation rejects those
    assert [(r.row_number, r.reason) for r in seen] == [
        (5, "duplicate local id (first at row 2)"), (7, "duplicate local id (first at row 6)")]
