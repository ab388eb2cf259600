"""Graph matching inside salt groups (after Vidanage, Christen, Ranbaduge and Schnell 2020).

A salted filter hides *which* bits a name sets, but not how similar two names are: records
that share a salt share one permutation, and the Dice coefficient of two filters under one
permutation is the Dice of the unsalted filters, close to the Dice of the names' bigram
sets. So each salt group is a small similarity graph whose edge weights are public. The
postcode salt is shared by everyone at a postcode (a dozen rows of an extract), so the
graph of a postcode group is a fingerprint of the names of the people who live there, and
a register of names and postcodes holds every such graph in plaintext.

The attack, as a curious linkage unit would run it (no key, no ground truth):
1. Postcode groups: rows whose address filters (salted by the postcode) have Dice >= 0.4
   share a postcode, as unrelated salts give chance-level Dice (~0.14); groups are the
   connected components of that graph. (`grouping="truth"` gives the attacker the true
   groups instead: its best case, an upper bound.)
2. The attacker encodes every register person's names (and address, when the register
   lists it, as the open electoral register does) itself, under a key of its own (the
   scheme is public), and computes, per register postcode, the Dice of every pair of
   people. Dice hardly depends on the key: about 0.03 apart between two keys.
3. Each encoded group of two or more rows is scored against every register postcode by
   naive Bayes over its row pairs: how common each pair's cell of Dice values (given,
   family, address; cells CELL wide) is among that postcode's pairs, smoothed towards the
   population's, against how common it is in the population. The best postcode wins.
4. Within it, a row's candidates are the people who could have its distinctive pairs (a
   name of Dice >= DISTINCTIVE_DICE with another row: a shared family name, a duplicate):
   for each such pair, another person there with every Dice within DICE_TOLERANCE.
A row counts as re-identified with credit 1/k when the right person is among its k
candidates (attacks.world.reidentified's convention); a tie of postcodes divides it too.
The constants were set while building the attack on one 50,000-person world's DWP extract.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from attacks.result import AttackResult
from attacks.views import dice_blocks, packed_filters
from attacks.world import Extract, Register

GROUP_DICE = 0.4  # address filters at least this similar are taken to share a postcode
DICE_TOLERANCE = 0.06  # two Dice values this close are taken to be the same pair of names
CELL = 0.03  # about the difference between one pair's Dice under two keys (collisions)
SMOOTHING_PAIRS = 10.0  # pseudo-pairs, spread as the population's, added to each postcode's
DISTINCTIVE_DICE = 0.5  # a pair of rows this similar in a name (a shared family name, a duplicate)


def _dice_matrix(bits: np.ndarray) -> np.ndarray:
    """All-pairs Dice of a small set of filters given as (n, m) 0/1 float32."""
    pops = bits.sum(axis=1)
    return 2 * (bits @ bits.T) / (pops[:, None] + pops[None, :] + 1e-9)


def address_groups(extract: Extract) -> list[list[int]]:
    """Connected components of rows whose address filters have Dice >= GROUP_DICE."""
    packed, present = packed_filters(extract, "clk_address")
    rows, cols = [], []
    for start, dice in dice_blocks(packed, present):
        r, c = np.nonzero(dice >= GROUP_DICE)
        rows.append(r + start)
        cols.append(c)
    n = len(packed)
    graph = coo_matrix((np.ones(sum(len(r) for r in rows)), (np.concatenate(rows), np.concatenate(cols))),
                       shape=(n, n))
    _count, label = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in np.flatnonzero(present).tolist():
        groups[int(label[i])].append(i)
    return list(groups.values())


def _register_names(register: Register) -> tuple[dict[str, list[int]], np.ndarray, np.ndarray, np.ndarray | None,
                                                 list[str]]:
    """The attacker's own encoding of the register: postcode -> row numbers, and given and
    family name filters (0/1 float32) per register person, under a fresh key."""
    from connectors.keys import KeyRing, new_master_secret
    from connectors.pseudonymise import IdentityEncoder

    modal = register.modal
    people = modal["person"].tolist()
    encoder = IdentityEncoder(KeyRing(new_master_secret(), "attacker"))
    clk = encoder._clk  # the public algorithm under the attacker's key; Dice is what matters
    given, g_ok = clk["given"].gather(clk["given"].value_index(modal["given"].tolist()))
    family, f_ok = clk["family"].gather(clk["family"].value_index(modal["family"].tolist()))
    ok = g_ok & f_ok
    address = None
    if "address" in modal.columns:  # a register with addresses (the open electoral register)
        address, a_ok = clk["address"].encode_words(modal["address"].tolist())
        ok &= a_ok
        address = np.unpackbits(address, axis=1).astype(np.float32)
    by_postcode: dict[str, list[int]] = defaultdict(list)
    for i, (pc, good) in enumerate(zip(modal["postcode"].tolist(), ok, strict=True)):
        if pc is not None and good:
            by_postcode[pc].append(i)
    return (by_postcode, np.unpackbits(given, axis=1).astype(np.float32),
            np.unpackbits(family, axis=1).astype(np.float32), address, people)


def _cell_counts(*matrices: np.ndarray, spread: bool = False) -> dict[tuple[int, ...], float]:
    """How many pairs (upper triangle) fall in each cell (width CELL) of their Dice values,
    one coordinate per matrix (given, family, and address if known). With `spread`, each
    pair also counts in the neighbouring cells: values from two keys differ by about a
    cell (hash collisions), so a lookup of the extract's cell finds the register's pair."""
    iu = np.triu_indices(len(matrices[0]), 1)
    coords = [np.floor(m[iu] / CELL).astype(int).tolist() for m in matrices]
    shifts = list(itertools.product((-1, 0, 1), repeat=len(matrices))) if spread else [(0,) * len(matrices)]
    cells: dict[tuple[int, ...], float] = defaultdict(float)
    for cell in zip(*coords, strict=True):
        for shift in shifts:
            cells[tuple(c + d for c, d in zip(cell, shift, strict=True))] += 1.0
    return cells


def within_salt_graph(extract: Extract, register: Register, grouping: str = "address") -> AttackResult:
    """Re-identify rows by matching each postcode group's name-similarity graph to the
    register's (see the module docstring). `grouping`: "address" (what the attacker can
    do) or "truth" (the true postcode groups: the attacker's best case)."""
    truth = extract.truth
    n = len(truth)
    with_address = "address" in register.modal.columns
    name = (f"within-salt graph matching (postcode groups by {grouping}"
            f"{', register with addresses' if with_address else ''})")
    needed = {"clk_given_pc", "clk_family_pc", "clk_address"}
    if not needed <= set(extract.linkage.column_names):
        return AttackResult(name, extract.name, n, 0.0, {"skipped": "no postcode-salted filters"})
    g_packed, g_ok = packed_filters(extract, "clk_given_pc")
    f_packed, f_ok = packed_filters(extract, "clk_family_pc")
    a_packed, a_ok = packed_filters(extract, "clk_address")
    if grouping == "truth":
        by_pc: dict[str, list[int]] = defaultdict(list)
        for i, pc in enumerate(truth["postcode"].tolist()):
            if pc is not None:
                by_pc[pc].append(i)
        groups = list(by_pc.values())
    else:
        groups = address_groups(extract)
    by_postcode, reg_given, reg_family, reg_address, people = _register_names(register)
    use_address = reg_address is not None
    postcodes = sorted(by_postcode)
    # Every register postcode's pairs as counts per cell of Dice values, and, per
    # cell, the postcodes holding it with their counts.
    reg_pairs: dict[str, tuple[np.ndarray, ...]] = {}
    cell_index: dict[tuple[int, int], dict[int, int]] = defaultdict(dict)
    for p, pc in enumerate(postcodes):
        rows = by_postcode[pc]
        g, f = _dice_matrix(reg_given[rows]), _dice_matrix(reg_family[rows])
        views = (g, f, _dice_matrix(reg_address[rows])) if use_address else (g, f)
        reg_pairs[pc] = views
        for cell, count in _cell_counts(*views, spread=True).items():
            cell_index[cell][p] = count
    cell_total = {cell: sum(holders.values()) for cell, holders in cell_index.items()}
    all_pairs = sum(cell_total.values())
    reg_sizes = np.array([len(by_postcode[pc]) * (len(by_postcode[pc]) - 1) / 2 for pc in postcodes])
    # A pair in a cell the postcode lacks: the smoothed share over the population's share.
    base_log = np.log(SMOOTHING_PAIRS / (reg_sizes + SMOOTHING_PAIRS))
    right = 0.0
    attempted = 0
    sizes: list[int] = []
    ranks: list[int] = []  # the true postcode's rank per group (scoring only; not used by the attack)
    for group in groups:
        rows = [i for i in group if g_ok[i] and f_ok[i] and a_ok[i]]
        if len(rows) < 2:
            continue
        attempted += len(rows)
        sizes.append(len(rows))
        g = _dice_matrix(np.unpackbits(g_packed[rows], axis=1).astype(np.float32))
        f = _dice_matrix(np.unpackbits(f_packed[rows], axis=1).astype(np.float32))
        # Naive Bayes over the group's row pairs: how likely each pair's cell of Dice values
        # is among a postcode's pairs (smoothed towards the population's), over
        # how likely it is in the population. Rare cells (two people sharing a family name)
        # weigh most, and a large postcode gains nothing by its size.
        if use_address:
            a = _dice_matrix(np.unpackbits(a_packed[rows], axis=1).astype(np.float32))
            cells = _cell_counts(g, f, a)
        else:
            cells = _cell_counts(g, f)
        pairs = sum(cells.values())
        score = pairs * base_log
        for cell, count in cells.items():
            holders = cell_index.get(cell)
            if holders:
                at = np.fromiter(holders.keys(), dtype=np.int64)
                have = np.fromiter(holders.values(), dtype=np.float64)
                p_pop = cell_total[cell] / all_pairs
                p_q = (have + SMOOTHING_PAIRS * p_pop) / (reg_sizes[at] + SMOOTHING_PAIRS)
                score[at] += count * (np.log(p_q / p_pop) - base_log[at])
        best = np.flatnonzero(score >= score.max() - 1e-9)
        truth_pc = truth["postcode"].iloc[rows[0]]
        ranks.append(int((score > score[postcodes.index(truth_pc)]).sum()) if truth_pc in by_postcode else -1)
        if len(best) == 0 or len(best) > 5:
            continue
        for p in best:
            pc = postcodes[p]
            members = by_postcode[pc]
            reg_views = [m.copy() for m in reg_pairs[pc]]
            row_views = [g, f, a] if use_address else [g, f]
            for m in reg_views:
                np.fill_diagonal(m, -1.0)
            for r_local, i in enumerate(rows):
                # The row's candidates are the people at the postcode who could have its
                # distinctive pairs (a name of Dice >= DISTINCTIVE_DICE with another row):
                # for each, some other person there has every Dice within the tolerance.
                candidates = np.ones(len(members), dtype=bool)
                for j in range(len(rows)):
                    if j == r_local or max(g[r_local, j], f[r_local, j]) < DISTINCTIVE_DICE:
                        continue
                    close = np.ones_like(reg_views[0], dtype=bool)
                    for reg_m, row_m in zip(reg_views, row_views, strict=True):
                        close &= np.abs(reg_m - row_m[r_local, j]) <= DICE_TOLERANCE
                    candidates &= close.any(axis=1)
                if not candidates.any():
                    continue
                person = truth["person"].iloc[i]
                if any(people[members[q]] == person for q in np.flatnonzero(candidates)):
                    right += 1.0 / (int(candidates.sum()) * len(best))
    return AttackResult(name, extract.name, n, right, {
        "rows_in_groups_of_2_or_more": attempted,
        "groups_of_2_or_more": len(sizes),
        "median_group": float(np.median(sizes)) if sizes else 0.0,
        "groups_whose_postcode_ranks_first": sum(r == 0 for r in ranks),
    })
