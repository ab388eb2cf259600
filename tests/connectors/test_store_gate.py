"""StoreGate: processes sharing one store file take turns, and see each other's writes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import duckdb
import pytest

from connectors.files import StoreBusy, StoreGate, store_gate

HOLD_IN_ANOTHER_PROCESS = textwrap.dedent("""
    import sys, time, duckdb
    from connectors.files import store_gate
    gate = store_gate(sys.argv[1])
    with gate.held():
        con = duckdb.connect(sys.argv[1])
        con.execute("INSERT INTO t VALUES (1)")
        gate.bump()
        print("holding", flush=True)
        time.sleep(float(sys.argv[2]))
        con.close()
""")


def test_a_second_process_waits_for_the_gate_and_its_write_is_seen(tmp_path):
    path = tmp_path / "store.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    gate = store_gate(path)
    assert gate.generation() == 0
    other = subprocess.Popen([sys.executable, "-c", HOLD_IN_ANOTHER_PROCESS, str(path), "0.8"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "holding"
        started = time.monotonic()
        with gate.held():  # blocks until the other process leaves...
            waited = time.monotonic() - started
            with duckdb.connect(str(path)) as con:  # ...so this open cannot fail
                assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 1
        assert waited > 0.3
        assert gate.generation() == 1  # the other process's write moved the generation
    finally:
        other.wait(timeout=30)
    assert other.returncode == 0


def test_gate_is_shared_by_threads_of_a_process_and_counts_every_write(tmp_path):
    gate = store_gate(tmp_path / "s.duckdb")
    assert store_gate(tmp_path / "." / "s.duckdb") is gate  # one gate per file per process
    with gate.held():
        with gate.held():  # re-entered (another cursor of the same process)
            gate.bump()
        gate.bump()
    assert gate.generation() == 2
    with pytest.raises(RuntimeError):
        gate.bump()  # a write outside the gate is a bug
    with pytest.raises(RuntimeError):
        StoreGate(tmp_path / "x.duckdb").leave()


def test_waiting_for_a_store_another_process_keeps_ends_in_a_clear_error(tmp_path):
    path = tmp_path / "store.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    other = subprocess.Popen([sys.executable, "-c", HOLD_IN_ANOTHER_PROCESS, str(path), "5"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "holding"
        with pytest.raises(StoreBusy, match="in use by another process"):
            store_gate(path).enter(wait=0.3)
    finally:
        other.kill()
        other.wait(timeout=30)
