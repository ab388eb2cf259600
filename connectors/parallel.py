"""Encoding batches in worker processes (optional; `workers=1` encodes in the calling process).

The per-batch work (`ColumnarEncoder.encode_columns`) is independent between batches, so
it can run in worker processes while the calling process reads the source and writes the
extract. Workers are forked: they inherit the key ring in memory (keys are never pickled
or sent anywhere) and each builds its own encoder, so each keeps its own caches and its
own OS-seeded BLIP random source. Results come back in batch order; at most
`2 * workers` batches are in flight, which bounds memory.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

from connectors.columnar import ColumnarEncoder, EncodedBatch

T = TypeVar("T")
_worker_encoder: ColumnarEncoder | None = None


def _init_worker(make_encoder: Callable[[], ColumnarEncoder]) -> None:
    global _worker_encoder
    _worker_encoder = make_encoder()


def _encode(columns: dict[str, list[str | None]]) -> EncodedBatch:
    assert _worker_encoder is not None
    return _worker_encoder.encode_columns(columns)


def encode_in_order(
    batches: Iterator[tuple[T, dict[str, list[str | None]]]],
    make_encoder: Callable[[], ColumnarEncoder],
    workers: int = 1,
) -> Iterator[tuple[T, EncodedBatch]]:
    """(meta, encoded batch) for each (meta, columns) of `batches`, in order.

    `make_encoder` is called once per worker process (or once here when workers == 1).
    """
    if workers <= 1:
        encoder = make_encoder()
        for meta, columns in batches:
            yield meta, encoder.encode_columns(columns)
        return
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(make_encoder,)) as pool:
        pending: deque[tuple[Any, Future[EncodedBatch]]] = deque()
        try:
            for meta, columns in batches:
                pending.append((meta, pool.submit(_encode, columns)))
                if len(pending) >= 2 * workers:
                    meta0, fut = pending.popleft()
                    yield meta0, fut.result()
            while pending:
                meta0, fut = pending.popleft()
                yield meta0, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()
