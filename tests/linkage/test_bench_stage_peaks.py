"""The Spark benchmark's per-stage memory: samples are attributed to the run's stages laid
back from the moment the run directory appeared (bench/bench_linkage.py, _stage_peaks)."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "bench_linkage", Path(__file__).resolve().parents[2] / "bench" / "bench_linkage.py")
bench_linkage = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_linkage)


def test_samples_fall_in_the_stage_that_was_running() -> None:
    # Started at 0; the run directory appeared at 10; stages of 1+1+2+3+2+1 s end there,
    # so load ran 0..1, blocking 1..2, train 2..4, predict 4..7, cluster 7..9, report 9..10.
    timings = {"load": 1, "blocking": 1, "train": 2, "predict": 3, "cluster": 2, "report": 1,
               "total": 10}
    samples = [(0.5, 100.0), (1.5, 200.0), (3.0, 150.0), (5.0, 900.0), (6.9, 950.0),
               (8.0, 700.0), (9.5, 400.0), (10.5, 300.0)]
    peaks = bench_linkage._stage_peaks(samples, 0.0, 10.0, timings)
    assert peaks == {"startup": None, "load": 100, "blocking": 200, "train": 150, "predict": 950,
                     "cluster": 700, "report": 400, "commit": 300}


def test_time_before_the_first_stage_is_startup() -> None:
    # The JVM starts before the run's first stage: the run took 4 s of a 10 s process.
    timings = {"load": 1, "blocking": 1, "train": 1, "predict": 1, "cluster": 0, "report": 0}
    samples = [(1.0, 500.0), (5.9, 600.0), (6.1, 50.0), (9.9, 70.0)]
    peaks = bench_linkage._stage_peaks(samples, 0.0, 10.0, timings)
    assert peaks["startup"] == 600
    assert peaks["load"] == 50
    assert peaks["predict"] == 70
    assert peaks["cluster"] is None and peaks["report"] is None
