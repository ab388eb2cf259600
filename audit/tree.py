"""The Merkle tree's node cache: one fixed-width binary file per level.

`level-00.bin` holds leaf hashes (32 bytes each, leaf i at offset 32*i); `level-NN.bin`
holds the roots of the aligned perfect subtrees of 2**NN leaves. Any subtree root that
RFC 6962 proofs need is then one read (aligned perfect subtree) or O(log n) reads (the
ragged right edge), so proofs over a million events stay in microseconds.

These files are a cache derived from the log: they are written after the log is fsynced,
never fsynced themselves, and `sync_to(n)` trims or extends them after a crash.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from audit.verifier import EMPTY_ROOT, node_hash

HASH = 32
MAX_LEVELS = 64


def largest_power_of_two_below(n: int) -> int:
    """The k of RFC 6962's split: the largest power of two strictly less than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class TreeCache:
    """Level files of a Merkle tree over leaf hashes, appended to in order."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fds: dict[int, int] = {}

    def _fd(self, level: int) -> int:
        fd = self._fds.get(level)
        if fd is None:
            path = self.directory / f"level-{level:02d}.bin"
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            self._fds[level] = fd
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def count(self, level: int = 0) -> int:
        return os.fstat(self._fd(level)).st_size // HASH

    def node(self, level: int, index: int) -> bytes:
        data = os.pread(self._fd(level), HASH, index * HASH)
        if len(data) != HASH:
            raise IndexError(f"tree cache has no node {index} at level {level}")
        return data

    def leaves(self, start: int, stop: int) -> list[bytes]:
        data = os.pread(self._fd(0), (stop - start) * HASH, start * HASH)
        return [data[i : i + HASH] for i in range(0, len(data), HASH)]

    def append(self, first_index: int, leaves: list[bytes]) -> None:
        """Write leaves first_index.. and every interior node they complete."""
        if not leaves:
            return
        os.pwrite(self._fd(0), b"".join(leaves), first_index * HASH)
        lo, hi = first_index, first_index + len(leaves)
        level = 0
        while (hi >> (level + 1)) > (lo >> (level + 1)):
            start, stop = lo >> (level + 1), hi >> (level + 1)
            children = os.pread(self._fd(level), (stop - start) * 2 * HASH, start * 2 * HASH)
            parents = b"".join(
                node_hash(children[i : i + HASH], children[i + HASH : i + 2 * HASH])
                for i in range(0, len(children), 2 * HASH)
            )
            os.pwrite(self._fd(level + 1), parents, start * HASH)
            level += 1

    def sync_to(self, n: int, leaf_source: Callable[[int, int], Iterable[bytes]]) -> None:
        """Make the cache describe exactly n leaves (after a crash or another process).

        `leaf_source(start, stop)` yields the leaf hashes of log entries start..stop-1.
        """
        have = self.count(0)
        if have > n:
            have = n
        # Trim every level to what n leaves allow (drops anything beyond the log).
        for level in range(MAX_LEVELS):
            limit = n >> level
            if level and limit == 0 and not (self.directory / f"level-{level:02d}.bin").exists():
                break
            fd = self._fd(level)
            if os.fstat(fd).st_size != limit * HASH:
                # Shorter upper levels are rebuilt from the level below by append() below.
                os.ftruncate(fd, min(os.fstat(fd).st_size // HASH, limit) * HASH)
        # Upper levels may lag the leaves: rebuild them from the lowest stale point.
        lowest = have
        for level in range(1, MAX_LEVELS):
            if (have >> level) == 0:
                break
            if self.count(level) < (have >> level):
                lowest = min(lowest, self.count(level) << level)
        if lowest < have:
            self.append(lowest, self.leaves(lowest, have))
        if have < n:
            self.append(have, list(leaf_source(have, n)))

    def root(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for a range the RFC 6962 recursion produces."""
        size = hi - lo
        if size == 0:
            return EMPTY_ROOT
        if size & (size - 1) == 0 and lo % size == 0:
            return self.node(size.bit_length() - 1, lo // size)
        k = largest_power_of_two_below(size)
        return node_hash(self.root(lo, lo + k), self.root(lo + k, hi))

    def inclusion_path(self, index: int, size: int) -> list[bytes]:
        """RFC 6962 PATH(index, D[0:size]), leaf-to-root order."""
        path: list[bytes] = []
        lo, hi, m = 0, size, index
        stack: list[bytes] = []
        while hi - lo > 1:
            k = largest_power_of_two_below(hi - lo)
            if m < k:
                stack.append(self.root(lo + k, hi))
                hi = lo + k
            else:
                stack.append(self.root(lo, lo + k))
                lo, m = lo + k, m - k
        path.extend(reversed(stack))
        return path

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """RFC 6962 PROOF(first, D[0:second])."""
        if first == 0 or first == second:
            return []
        stack: list[bytes] = []
        lo, hi, m, complete = 0, second, first, True
        while m != hi - lo:
            k = largest_power_of_two_below(hi - lo)
            if m <= k:
                stack.append(self.root(lo + k, hi))
                hi = lo + k
            else:
                stack.append(self.root(lo, lo + k))
                lo, m, complete = lo + k, m - k, False
        if not complete:
            stack.append(self.root(lo, hi))
        return list(reversed(stack))
