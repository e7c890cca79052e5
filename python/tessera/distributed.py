"""tessera.distributed: semantic IDs on Dask, with exactly the single-process result.

``build_semantic_ids(x, client=None, levels=3, codebook_size=256, ...)`` does what
:func:`tessera.build_semantic_ids` does with ``balance=True, train_sample=S``, on rows spread over Dask
workers:

1. **Train on a sample.** The same ``S`` rows single-process training uses (``tessera.sid_training_rows``)
   are gathered to the client and the codebooks are trained there with the same C++ code, so the
   codebooks are identical. The model (a few MB) then travels in the task graph.
2. **Assign every row, level by level, exactly balanced** (sizes in [size_min, size_max], by default
   ``default_size_bounds(n, K)``), never gathering the rows or their candidate lists (unless a level's boundary
   grows past a quarter of the rows: then the client solves every row's lists, see step 5 in the docs). Per
   level, one pass of GEMMs on the workers makes every row's *candidate lists* (the residual of the earlier
   levels recomputed from the row and its earlier codes): its c cheapest clusters under the sample's prices,
   every cluster within that cluster's join limit of its cheapest (the limits come from the sample, so that
   every cluster is listed by its ~4·lo cheapest joiners), and theta, a bound on every unlisted cluster
   (``tessera._tessera.candidate_lists``). The lists stay on the workers; every later pass reads only them
   (``scan_candidate_lists``, O(rows · c)):
   - *a stratified sample*: each chunk draws rows in proportion to its count of each cluster under the sample's
     prices; the client solves the draw exactly balanced, and its prices start the rounds (a plain sample
     mis-counts whole isolated modes, which the rounds cannot mend);
   - *price rounds*: the client keeps K cluster prices; workers return per-cluster counts and the smallest
     leaving gaps and joining costs; the client takes a Jacobi dual-ascent step (the bounded engine's
     pre-pass) and keeps the best prices;
   - *the boundary solve*: rows near a price boundary (small gap; the cheapest leavers of every cluster and
     joiners of every cluster, more where a cluster is off its size) come back with their arcs, all other
     rows are fixed at their cheapest listed cluster (f_k per cluster), and the client solves the exact
     restricted problem with per-cluster windows ``[lo - f_k, hi - f_k]``
     (``tessera.balanced_assign_sparse``, a min-cost flow), which gives new prices;
   - *the certificate*: workers check condition 1 on every row, on the lists for listed clusters and, for
     the few rows whose bound does not clear them, on recomputed distances for the others; violators join
     the boundary set (per chunk, each cluster's most violating rows); repeat until it holds.
   The result is an optimum of the same problem the single-process build solves.
3. **Resolve collisions** by a hash shuffle of the code tuples (``append``, ``append-all``, ``none`` group
   locally; ``reassign`` gathers only the rows of prefix groups that collide, with their residuals).

The command line: ``python -m tessera.distributed build INPUT --out DIR (--scheduler ADDR | --local-workers N)``.
Dask (``dask[array]``, ``distributed``) is an optional dependency: ``pip install 'tessera[distributed]'``;
``import tessera`` never imports it.
"""
import json
import math
import operator
import os
import shutil
import sys
import time
import uuid

import numpy as np

from . import InvalidArgument, _input_files
from . import _tessera as _t

__all__ = ["build_semantic_ids", "DistributedSemanticIds", "main"]

_KEEP_VIOLATORS = 64  # per chunk and cluster, the most violating rows a certificate round adds
_EXACT_CLUSTERS = 16  # clusters the certificate checks exactly for every row (those whose prices fell most)
_BLOCK_ROWS = 8192  # rows per GEMM block inside a task (block × K float32 distances held at a time)


def _require_dask():
    try:
        import dask  # noqa: F401
        import dask.array  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("tessera.distributed needs Dask: pip install 'tessera[distributed]' "
                          "(dask[array] and distributed)") from e


# ---------------------------------------------------------------------------------------------------------
# Tasks (module-level, pure: the same inputs give the same outputs, so Dask may rerun them on another worker).

def _finite_f32(x, where):
    """x as C-contiguous float32; a row with NaN or Inf is an InvalidArgument naming where(row within x)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        r = int(np.flatnonzero(~finite)[0])
        raise InvalidArgument(f"{where(r)}: a non-finite value (NaN or Inf): every value must be a finite number")
    return x


def _load_rows(path, a, b, first_row):
    """Rows [a, b) of the .npy shard `path`, as C-contiguous float32, checked finite."""
    return _finite_f32(np.load(path, mmap_mode="r")[a:b], lambda r: f"{path} row {a + r}")


def _check_block(x, first_row):
    return _finite_f32(x, lambda r: f"input row {first_row + r}")


def _identity(v):
    return v


def _take_rows(x, local):
    return np.ascontiguousarray(x[local])


def _residual(x, codes, books, m):
    """x minus the codewords of levels 0..m-1 (float32, in the order the single-process build subtracts)."""
    r = x.copy()
    for level in range(m):
        r -= books[level][codes[:, level]]
    return r


def _chunk_lists(x, codes, books, m, prices, c, join_limit):
    """Level m's candidate lists of a chunk, in compressed rows (offsets, clusters, costs, theta): each row's
    c cheapest clusters under prices, every cluster within its join limit of the row's cheapest, and theta,
    the bound on the unlisted ones (tessera._tessera.candidate_lists). The level's one pass of GEMMs; every
    later pass reads only these."""
    return _t.candidate_lists(_residual(x, codes, books, m), books[m], prices, c, join_limit)


def _stratified_residuals(x, codes, books, m, lists, prices, rate, seed):
    """Level m's residuals of about rate·rows rows of a chunk, drawn systematically from its rows ordered by
    their cheapest listed cluster under prices (random within a cluster): every cluster's share of the draw
    is its share of the chunk's rows to within one row."""
    labels = _list_labels(*lists[:3], prices, books[m].shape[0])
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]
    step = 1.0 / rate
    at = np.arange(rng.random() * step, len(order), step).astype(np.int64)
    take = np.sort(order[at[at < len(order)]])
    return _residual(x[take], codes[take], books, m)


def _nearest_chunk(x, codes, books, m):
    """Level m's greedy labels of a chunk (nearest codeword, ties to the lower index)."""
    _, ids, _, _ = _t.candidate_lists(_residual(x, codes, books, m), books[m], np.zeros(books[m].shape[0]), 1)
    return ids


def _arcs_of(off, rows):
    """(row of each arc, arc positions) of the given rows of compressed lists."""
    start = off[rows]
    cnt = off[rows + 1] - start
    total = int(cnt.sum())
    idx = np.repeat(start - (np.cumsum(cnt) - cnt), cnt) + np.arange(total)
    return np.repeat(rows, cnt), idx


def _scan_lists(lists, K, prices, T, margin, own_margin=None, join_margin=None):
    """One pass over a chunk's lists under `prices`: per-cluster counts, the T smallest leaving gaps of each
    cluster's members and joining costs of its non-members (for the price steps and the margins), and the
    boundary rows with their listed arcs; counts of the other rows (fixed at their cheapest listed cluster).
    A row is a boundary row when its gap is at most `margin` or `own_margin[its cluster]` (over-full clusters:
    enough members must be free to leave), or its joining cost to a listed cluster k is at most
    `join_margin[k]` (under-full clusters: enough rows must be free to join)."""
    off, ids, costs, _ = lists
    out = _t.scan_candidate_lists(off, ids, costs, K, prices, T, margin, own_margin, join_margin)
    rows, idx = _arcs_of(off, out.pop("boundary"))
    out["arc_rows"], out["arc_ids"], out["arc_costs"] = rows, ids[idx], costs[idx]
    return out


def _round_tables(lists, K, prices, T):
    """What a price round reads of a chunk: counts and the per-cluster smallest gaps and joining costs (not the
    joiners' rows and costs, which only the boundary scan needs: a third of the bytes)."""
    out = _scan_lists(lists, K, prices, T, -np.inf)
    return {key: out[key] for key in ("counts", "fixed", "gaps", "joins")}


def _merge_tables(T, *scans):
    """The sums of several chunks' scans that a price round reads (counts, fixed, per-cluster smallest gaps and
    joining costs): merged on a worker, so that the client receives one K × T pair per group of chunks."""
    counts, fixed, gaps, joins = _merge_scans(scans, T)
    return {"counts": counts, "fixed": fixed, "gaps": gaps, "joins": joins}


def _list_labels(off, ids, costs, prices, K):
    """Every row's cheapest listed cluster under prices (ties to the lower cluster, as scan_candidate_lists)."""
    P = costs.astype(np.float64) + prices[ids]
    low = np.minimum.reduceat(P, off[:-1])
    r_of = np.repeat(np.arange(len(off) - 1), np.diff(off))
    return np.minimum.reduceat(np.where(P == low[r_of], ids, K), off[:-1]).astype(np.int32)


def _certify_lists(x, codes, books, m, fixed_lists, lists, p_lists, join_limit, p_fixed, p_new, b_rows, b_labels, tol,
                   c, abs_tol, keep=None, exact=False):
    """Level m's labels of a chunk (rows outside the boundary set at their cheapest cluster of `fixed_lists`
    under p_fixed, boundary rows as the restricted solve put them) and the rows violating condition 1 of the
    certificate under p_new (their label, whether they were in the boundary set, and arcs: their listed ones,
    or their c cheapest and their own), checked on `lists` (made under p_lists): listed clusters on the lists;
    unlisted ones only for rows whose priced cost exceeds the lists' bound on them, on distances recomputed
    for those rows. An unlisted cluster j of row i had, under p_lists, a priced cost of at least theta_i, and
    at least the row's cheapest plus join_limit[j] (else it would be listed); under p_new each moves by
    p_new_j − p_lists_j. keep: return only each cluster's `keep` most violating rows (by how much cheaper it is
    than their own), counting all in "found". exact: check the clusters whose prices fell most on exact
    distances for every row (else only when the bound fails for many rows)."""
    book = books[m]
    K = book.shape[0]
    labels = _list_labels(*fixed_lists[:3], p_fixed, K)
    labels[b_rows] = b_labels
    off, ids, costs, theta = lists
    n = len(theta)
    r_of = np.repeat(np.arange(n), np.diff(off))
    in_b = np.zeros(n, bool)
    in_b[b_rows] = True
    pos = ids == labels[r_of]
    listed = np.zeros(n, bool)
    listed[r_of[pos]] = True
    own_c = np.zeros(n)
    own_c[r_of[pos]] = costs[pos]
    pl = p_new[labels]
    limit = own_c + pl - tol * (np.abs(own_c) + np.abs(pl)) - abs_tol
    priced = costs.astype(np.float64) + p_new[ids]
    low = np.minimum.reduceat(priced, off[:-1])
    th = theta.astype(np.float64)
    delta = p_new - p_lists
    first = off[:-1]
    v1 = costs[first].astype(np.float64) + p_lists[ids[first]] if join_limit is not None else None

    def suspects(near):
        """Rows the lists cannot clear: their own cluster unlisted, or the bound on their unlisted clusters
        (those outside `near`) below their own priced cost."""
        bound = np.full(n, np.inf)
        if len(near) < K:
            bound = th + np.delete(delta, near).min()
            if join_limit is not None:
                bound = np.maximum(bound, v1 + _loosest_join(join_limit, delta, near))
            bound -= 1e-6 * (np.abs(th) + np.abs(p_new).max() + np.abs(p_lists).max())
        return ~listed | (np.isfinite(th) & ~(bound >= limit))

    # the clusters whose prices fell most are checked exactly for every row (one thin GEMM) when a few far
    # cheaper clusters would otherwise loosen every row's bound and send all rows to the recompute
    near = _fallen(delta) if exact else np.zeros(0, np.int64)
    suspect = suspects(near)
    if not exact and suspect.sum() > n // 16:
        near = _fallen(delta)
        suspect = suspects(near)
    dn = _t.squared_distances(_residual(x, codes, books, m), book[near]) if len(near) else np.zeros((n, 0))
    pn = dn + p_new[near]
    slot = np.full(K, -1)
    slot[near] = np.arange(len(near))
    on_list = slot[ids] >= 0
    pn[r_of[on_list], slot[ids[on_list]]] = np.inf  # listed: checked on the lists' costs (no rounding gap)
    j_near = np.argmin(pn, axis=1) if len(near) else np.zeros(n, np.int64)
    low_near = pn[np.arange(n), j_near] if len(near) else np.full(n, np.inf)
    # each violator's cheapest cluster (ties to the lower index) and by how much it beats its own
    at_low = priced == low[r_of]
    dest = np.minimum.reduceat(np.where(at_low, ids, K), off[:-1])
    to_near = low_near < low
    dest[to_near] = near[j_near[to_near]]
    low = np.minimum(low, low_near)
    bad1 = np.flatnonzero(listed & (low < limit) & ~suspect)
    dest1 = dest[bad1]
    gain1 = limit[bad1] - low[bad1]
    sus = np.flatnonzero(suspect)
    bad2, dest2, gain2 = np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0)
    kk = cc = np.zeros((0, c + 1))
    if sus.size:
        # their lists under p_new (C++, one GEMM): a row is fine when its own cluster is within the tolerance
        # of the cheapest; its own distance comes from the new list, or from one more product when not there
        r = _residual(x[sus], codes[sus], books, m)
        off2, ids2, costs2, _ = _t.candidate_lists(r, book, p_new, c)
        w = off2[1] - off2[0]
        ids2, costs2 = ids2.reshape(-1, w), costs2.reshape(-1, w)
        lab = labels[sus]
        hit = ids2 == lab[:, None]
        od = np.where(hit, costs2, 0).sum(axis=1).astype(np.float64)
        miss = np.flatnonzero(~hit.any(axis=1))
        if miss.size:
            od[miss] = _t.squared_distances(r[miss], book)[np.arange(miss.size), lab[miss]]
        low2 = costs2[:, 0].astype(np.float64) + p_new[ids2[:, 0]]
        lim2 = od + p_new[lab] - tol * (np.abs(od) + np.abs(p_new[lab])) - abs_tol
        bad = low2 < lim2
        bad2, dest2, gain2 = sus[bad], ids2[bad, 0], (lim2 - low2)[bad]
        kk = np.concatenate([ids2[bad], lab[bad][:, None]], axis=1)
        cc = np.concatenate([costs2[bad], od[bad][:, None].astype(np.float32)], axis=1)
    found = len(bad1) + len(bad2)
    if keep is not None and found > keep:
        dest, gain = np.concatenate([dest1, dest2]), np.concatenate([gain1, gain2])
        order = np.lexsort((-gain, dest))
        first_of = np.searchsorted(dest[order], dest[order])
        chosen = np.zeros(found, bool)
        chosen[order[np.arange(found) - first_of < keep]] = True
        bad1 = bad1[chosen[:len(bad1)]]
        bad2, kk, cc = bad2[chosen[len(dest1):]], kk[chosen[len(dest1):]], cc[chosen[len(dest1):]]
    r_arcs, i_arcs = _arcs_of(off, bad1)
    b3 = bad1[to_near[bad1]]  # their arc to the cheaper cluster, which their lists may lack
    vr = np.concatenate([bad1, bad2])
    return labels, {"rows": vr, "labels": labels[vr], "in_b": in_b[vr],
                    "arc_rows": np.concatenate([r_arcs, np.repeat(bad2, kk.shape[1]), b3]),
                    "arc_ids": np.concatenate([ids[i_arcs], kk.ravel(), near[j_near[b3]]]).astype(np.int32),
                    "arc_costs": np.concatenate([costs[i_arcs], cc.ravel(), dn[b3, j_near[b3]]]).astype(np.float32),
                    "checked": int(sus.size), "found": int(found)}


def _fallen(delta):
    """The clusters whose prices fell most (delta: new less old prices), which the certificate checks exactly."""
    return np.argsort(delta, kind="stable")[:min(_EXACT_CLUSTERS, len(delta))]


def _loosest_join(join_limit, delta, near):
    """The smallest join limit after the price changes delta, over the clusters not checked exactly (outside
    near): an unlisted cluster of a row costs at least the row's cheapest (under the lists' prices) plus this."""
    rest = np.delete(join_limit + delta, near)
    return rest.min() if len(rest) else np.inf


def _append_level(codes, labels):
    return np.ascontiguousarray(np.concatenate([codes, labels[:, None]], axis=1))


def _empty_codes(x):
    return np.zeros((x.shape[0], 0), np.int32)


def _bucket_split(codes, first_row, depth, P):
    """Split a chunk's rows by a hash of their first `depth` codes into P buckets: [(global ids, codes)]."""
    n = codes.shape[0]
    h = np.zeros(n, np.uint64)
    with np.errstate(over="ignore"):
        for j in range(depth):
            h = (h * np.uint64(0x9E3779B97F4A7C15)) ^ codes[:, j].astype(np.uint64)
            h ^= h >> np.uint64(29)
    bucket = (h % np.uint64(P)).astype(np.int64)
    ids = np.arange(first_row, first_row + n, dtype=np.int64)
    return [(ids[bucket == p], codes[bucket == p]) for p in range(P)]


def _groups(codes, ids, depth):
    """Sort rows by (first `depth` codes, id); return (order, group start flags)."""
    keys = [ids] + [codes[:, j] for j in reversed(range(depth))]
    order = np.lexsort(keys)
    cs = codes[order, :depth]
    new = np.ones(len(order), bool)
    if len(order) > 1 and depth:
        new[1:] = (cs[1:] != cs[:-1]).any(axis=1)
    elif depth == 0:
        new[1:] = False
    return order, new


def _suffixes(codes, ids, all_groups):
    """The collision suffix of append (1.. in groups of 2+, -1 alone) or append-all (0.. everywhere), as
    tessera's append_suffix: ranks by item id within each group of equal code tuples."""
    L = codes.shape[1]
    order, new = _groups(codes, ids, L)
    gid = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    rank = np.arange(len(order)) - starts[gid]
    size = np.diff(np.append(starts, len(order)))[gid]
    suf = np.full(len(order), -1, np.int32)
    if all_groups:
        suf[:] = rank
    else:
        multi = size > 1
        suf[multi] = rank[multi] + 1
    out = np.empty(len(order), np.int32)
    out[order] = suf
    return out


def _group_stats(codes, ids):
    L = codes.shape[1]
    order, new = _groups(codes, ids, L)
    starts = np.flatnonzero(new)
    sizes = np.diff(np.append(starts, len(order)))
    return {"unique": int(len(starts)), "largest": int(sizes.max()) if len(sizes) else 0,
            "colliding": int(sizes[sizes > 1].sum())}


def _resolve_bucket(dedup, L, *pieces):
    ids = np.concatenate([p[0] for p in pieces])
    codes = np.concatenate([p[1] for p in pieces]) if ids.size else np.zeros((0, L), np.int32)
    stats = _group_stats(codes, ids) if ids.size else {"unique": 0, "largest": 0, "colliding": 0}
    out = {"stats": stats, "ids": ids}
    if dedup == "reassign":
        # the rows of prefix groups holding a collision: gathered, with their residuals, by the client
        order, new = _groups(codes, ids, L - 1)
        gid = np.cumsum(new) - 1
        full_order, full_new = _groups(codes, ids, L)
        coll = np.zeros(len(ids), bool)
        fstarts = np.flatnonzero(full_new)
        fsizes = np.diff(np.append(fstarts, len(ids)))
        fg = np.cumsum(full_new) - 1
        coll[full_order] = fsizes[fg] > 1
        bad_groups = np.unique(gid[coll[order]]) if ids.size else np.zeros(0, np.int64)
        members = np.isin(gid, bad_groups)
        sel = np.zeros(len(ids), bool)
        sel[order[members]] = True
        out["colliding_ids"] = ids[sel]
        out["colliding_codes"] = codes[sel]
        out["suffix"] = np.full(len(ids), -1, np.int32)
    elif dedup == "none":
        out["suffix"] = np.full(len(ids), -1, np.int32)
    else:
        out["suffix"] = _suffixes(codes, ids, dedup == "append-all") if ids.size else np.zeros(0, np.int32)
    return out


def _bucket_part(res, key):
    return res[key]


def _chunk_ids(first_row, n, codes, width, L, *buckets):
    """The resolved ids of a chunk: its codes, and the suffix column (-1 = none) when width > L."""
    ids = np.full((n, width), -1, np.int32)
    ids[:, :L] = codes
    for b in buckets:
        ids_b, suf_b, moved_b = b
        sel = (ids_b >= first_row) & (ids_b < first_row + n)
        if width > L:
            ids[ids_b[sel] - first_row, L] = suf_b[sel]
        if moved_b is not None:
            mi, mc = moved_b
            s2 = (mi >= first_row) & (mi < first_row + n)
            ids[mi[s2] - first_row, :L] = mc[s2]
    return ids


def _square_sum(a):
    """Σ a² of a float32 matrix: float32 per row (d terms), float64 over rows — without a float64 copy of a."""
    return float(np.einsum("ij,ij->i", a, a).sum(dtype=np.float64))


def _chunk_metrics(x, codes, ids_chunk, books, L):
    """Sums behind metrics.json: Σx², Σ reconstruction error (codes; and the resolved ids' level codes),
    per level Σ residual² before and after, code counts."""
    r = x.astype(np.float32, copy=True)
    before, after, counts = [], [], []
    for level in range(L):
        before.append(after[-1] if after else _square_sum(r))
        r -= books[level][codes[:, level]]
        after.append(_square_sum(r))
        counts.append(np.bincount(codes[:, level], minlength=books[level].shape[0]))
    moved = ids_chunk[:, :L]
    err_moved = after[-1]
    if not np.array_equal(moved, codes):
        rec = np.zeros_like(x)
        for level in range(L):
            rec += books[level][moved[:, level]]
        err_moved = _square_sum(x - rec)
    return {"sq": before[0], "err": after[-1], "err_resolved": err_moved,
            "before": before, "after": after, "counts": counts}


def _write_part(directory, part, first_row, codes, ids, L, zero_based, index_json, parquet):
    """Write a chunk's outputs into the staging directory (atomically: temporary name, then rename)."""
    name = f"part-{part:05d}"
    out = {}
    if parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        n = codes.shape[0]
        letters = "abcdefghijklmnopqrstuvwxyz"
        tokens = []
        for i in range(n):
            row = ids[i]
            tokens.append([f"<{letters[j]}_{int(v) + (1 if j < L and not zero_based else 0)}>"
                           for j, v in enumerate(row) if v >= 0])
        table = pa.table({
            "item": pa.array(np.arange(first_row, first_row + n, dtype=np.int64)),
            "tokens": pa.array(tokens, type=pa.list_(pa.string())),
            "codes": pa.FixedSizeListArray.from_arrays(pa.array(codes.reshape(-1)), L),
        })
        tmp = os.path.join(directory, "codes", f".{name}.parquet.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, os.path.join(directory, "codes", f"{name}.parquet"))
    else:
        for what, arr in (("codes", codes), ("ids", ids)):
            tmp = os.path.join(directory, "codes", f".{what}-{part:05d}.npy.tmp")
            with open(tmp, "wb") as f:
                np.save(f, arr)
            os.replace(tmp, os.path.join(directory, "codes", f"{what}-{part:05d}.npy"))
    if index_json:
        text = _t.index_json_fragment(ids, L, zero_based, first_row)
        tmp = os.path.join(directory, f".index.{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(text)
        os.replace(tmp, os.path.join(directory, f"index.{name}"))
    return out


def _peak_rss():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---------------------------------------------------------------------------------------------------------
# Input

class _Input:
    """Row chunks of the input as futures on the workers: chunk c holds global rows [starts[c], starts[c+1])."""

    def __init__(self, client, x, chunk_rows):
        import dask
        import dask.array as da

        self.starts = [0]
        futs = []
        if isinstance(x, da.Array):
            if x.ndim != 2:
                raise InvalidArgument(f"x must be 2-D (n × d), got {x.ndim} dimensions")
            if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
                raise InvalidArgument(f"x must hold real numbers, got {x.dtype}")
            if any(math.isnan(s) for s in x.shape):
                raise InvalidArgument("x has unknown chunk sizes: call x.compute_chunk_sizes() first")
            x = x.rechunk({1: -1})
            self.d = int(x.shape[1])
            blocks = x.to_delayed().ravel()
            a = 0
            for blk, rows in zip(blocks, x.chunks[0]):
                if rows == 0:
                    continue
                futs.append(client.compute(dask.delayed(_check_block)(blk, a)))
                a += rows
                self.starts.append(a)
            self.sources = ["the input array"]
        else:
            files = _input_files(x, ".npy")
            d = None
            for f in files:
                try:
                    arr = np.load(f, mmap_mode="r")
                except Exception as e:  # noqa: BLE001 - the reader's message, with the shard named
                    raise InvalidArgument(f"{f}: not a readable .npy file ({e})") from e
                if arr.ndim != 2:
                    raise InvalidArgument(f"{f}: expected a 2-D array (n × d), got shape {arr.shape}")
                if arr.shape[0] == 0:
                    raise InvalidArgument(f"{f} holds no rows: every shard must hold at least one")
                if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
                    raise InvalidArgument(f"{f}: dtype {arr.dtype}, expected floats")
                if d is None:
                    d, first = int(arr.shape[1]), f
                elif arr.shape[1] != d:
                    raise InvalidArgument(f"{f} has {arr.shape[1]} columns but {first} has {d}: every shard must "
                                          "have the same width")
                rows = int(arr.shape[0])
                for a in range(0, rows, chunk_rows):
                    b = min(rows, a + chunk_rows)
                    name = f"{os.path.abspath(f)}:{a}:{b}:{os.path.getmtime(f)}"  # a task key per file version
                    futs.append(client.submit(_load_rows, f, a, b, self.starts[-1], pure=True,
                                              key=f"tessera-load-{uuid.uuid5(uuid.NAMESPACE_URL, name)}"))
                    self.starts.append(self.starts[-1] + b - a)
            self.d = d
            self.sources = files
        self.chunks = futs
        self.n = self.starts[-1]
        if self.n == 0:
            raise InvalidArgument("no items: the input has no rows")
        if self.d == 0:
            raise InvalidArgument("the embeddings are empty (0 values per row)")

    def gather_rows(self, client, rows):
        """The given global rows (ascending) as one float32 array, in that order."""
        rows = np.asarray(rows, np.int64)
        parts = []
        for c, fut in enumerate(self.chunks):
            a, b = self.starts[c], self.starts[c + 1]
            lo, hi = np.searchsorted(rows, [a, b])
            if hi > lo:
                parts.append(client.submit(_take_rows, fut, rows[lo:hi] - a, pure=True))
        got = client.gather(parts)
        return np.concatenate(got) if got else np.zeros((0, self.d), np.float32)


# ---------------------------------------------------------------------------------------------------------
# The result

class DistributedSemanticIds:
    """Semantic IDs built on Dask: ``codes`` (dask array n × L int32, before collision resolution), ``ids``
    (dask array n × W int32, resolved; -1 = no token), ``model`` (the trained ResidualQuantizer), ``metrics``
    (dict, the keys of ``tessera sid build``'s metrics.json plus ``distributed``) and ``save(dir)``."""

    def __init__(self, client, model, codes_futs, ids_futs, starts, L, width, metrics, dedup, zero_based, owned):
        import dask
        import dask.array as da

        self.client = client
        self.model = model
        self.metrics = metrics
        self.dedup = dedup
        self.zero_based = zero_based
        self._codes_futs, self._ids_futs, self._starts = codes_futs, ids_futs, starts
        self._L, self._width = L, width
        self._owned = owned
        sizes = np.diff(starts)
        self.codes = da.concatenate([da.from_delayed(dask.delayed(f), shape=(int(s), L), dtype=np.int32)
                                     for f, s in zip(codes_futs, sizes)])
        self.ids = da.concatenate([da.from_delayed(dask.delayed(f), shape=(int(s), width), dtype=np.int32)
                                   for f, s in zip(ids_futs, sizes)])

    def __len__(self):
        return int(self._starts[-1])

    def __repr__(self):
        return (f"DistributedSemanticIds(n={len(self)}, levels={self._L}, width={self._width}, "
                f"dedup='{self.dedup}')")

    def save(self, out_dir, index_json=False, overwrite=False, parquet=None):
        """Write the outputs into out_dir, atomically (a staging directory next to it, renamed at the end):
        codes as Parquet partitions ``codes/part-NNNNN.parquet`` (columns item, tokens, codes) when pyarrow
        is installed (parquet=None: when available), else ``codes/codes-NNNNN.npy`` and ``codes/ids-NNNNN.npy``
        shards; ``model.tsq``, ``codebooks.npz``, ``metrics.json``, and ``index.json`` with index_json=True
        (MiniOneRec's format; about 5 GB at 10^8 items). Workers write their partitions themselves: out_dir
        must be on a file system they share with the client. An existing out_dir is an error unless
        overwrite=True."""
        out_dir = os.path.abspath(os.fspath(out_dir))
        _check_out_dir(out_dir, overwrite)
        if parquet is None:
            try:
                import pyarrow  # noqa: F401
                import pyarrow.parquet  # noqa: F401

                parquet = True
            except ImportError:
                parquet = False
        staging = f"{out_dir}.tmp-{uuid.uuid4().hex[:12]}"
        os.makedirs(os.path.join(staging, "codes"))
        try:
            t0 = time.perf_counter()
            parts = [self.client.submit(_write_part, staging, c, int(self._starts[c]), cf, idf, self._L,
                                        self.zero_based, index_json, parquet, pure=False)
                     for c, (cf, idf) in enumerate(zip(self._codes_futs, self._ids_futs))]
            self.client.gather(parts)
            if index_json:
                with open(os.path.join(staging, ".index.json.tmp"), "wb") as out:
                    out.write(b"{\n")
                    for c in range(len(parts)):
                        piece = os.path.join(staging, f"index.part-{c:05d}")
                        if c:
                            out.write(b",\n")
                        with open(piece, "rb") as f:
                            shutil.copyfileobj(f, out, 1 << 24)
                        os.remove(piece)
                    out.write(b"\n}")
                os.replace(os.path.join(staging, ".index.json.tmp"), os.path.join(staging, "index.json"))
            self.model.export_npz(os.path.join(staging, "codebooks.npz"))
            self.model.save(os.path.join(staging, "model.tsq"),
                            metadata={"sid": {"dedup": self.dedup, "zero_based": self.zero_based,
                                              "balance": self.metrics.get("balance", "exact")}})
            metrics = dict(self.metrics)
            metrics["distributed"] = dict(metrics.get("distributed", {}))
            metrics["distributed"]["seconds_write"] = time.perf_counter() - t0
            metrics["distributed"]["codes_format"] = "parquet" if parquet else "npy"
            with open(os.path.join(staging, "metrics.json"), "w") as f:
                f.write(json.dumps(metrics, indent=2) + "\n")
            _publish(staging, out_dir, overwrite)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return out_dir

    def close(self):
        """Release the futures (and the local cluster this object started, if any)."""
        self._codes_futs = self._ids_futs = []
        if self._owned is not None:
            client, cluster = self._owned
            self._owned = None
            client.close()
            cluster.close()


def _check_out_dir(out_dir, overwrite):
    if os.path.lexists(out_dir) and not overwrite:
        raise FileExistsError(f"output directory {out_dir} already exists: choose another, or pass overwrite=True "
                              "(--overwrite) to replace it")
    parent = os.path.dirname(out_dir) or "."
    if not os.path.isdir(parent):
        os.makedirs(parent, exist_ok=True)


def _publish(staging, out_dir, overwrite):
    if os.path.lexists(out_dir):
        if not overwrite:
            raise FileExistsError(f"output directory {out_dir} already exists")
        old = f"{out_dir}.old-{uuid.uuid4().hex[:12]}"
        os.rename(out_dir, old)
        os.rename(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, out_dir)


# ---------------------------------------------------------------------------------------------------------
# The build

def _worker_env(threads_per_worker):
    """Worker processes' environment: as many OpenMP/BLAS threads as Dask threads, so that N workers on N cores
    do not each start one thread per core (tessera's kernels are parallel inside a task)."""
    t = str(max(1, int(threads_per_worker)))
    return {"OMP_NUM_THREADS": t, "OPENBLAS_NUM_THREADS": t, "OMP_WAIT_POLICY": "PASSIVE"}


def _connect(client, scheduler=None, local_workers=None, threads_per_worker=1, connect_timeout=8):
    """(client, owned) where owned = (client, cluster) when this call started a LocalCluster."""
    from distributed import Client, LocalCluster

    if client is not None:
        return client, None
    if scheduler:
        try:
            c = Client(scheduler, timeout=connect_timeout)
        except (OSError, TimeoutError) as e:
            raise ConnectionError(f"cannot reach the Dask scheduler at {scheduler} within {connect_timeout} s: {e}") \
                from e
        return c, None
    if local_workers is None:
        try:
            from distributed import get_client

            return get_client(), None
        except ValueError:
            local_workers = min(os.cpu_count() or 1, 4)
    cluster = LocalCluster(n_workers=local_workers, threads_per_worker=threads_per_worker, processes=True,
                           dashboard_address=":0", env=_worker_env(threads_per_worker))
    c = Client(cluster)
    return c, (c, cluster)


def build_semantic_ids(x, client=None, levels=3, codebook_size=256, balance=True, dedup="append", seed=42,
                       train_sample=None, *, codebook_sizes=None, zero_based=False, n_init=3, init="auto",
                       max_iter=100, tol=1e-4, size_min=None, size_max=None, chunk_rows=262144, candidates=8,
                       boundary_fraction=0.02, price_rounds=40, certificate_tol=1e-6, progress=None):
    """Semantic IDs of x on Dask: the same codes as ``tessera.build_semantic_ids(x, balance=..., seed=...,
    train_sample=S)`` on one machine (codebooks trained on the same S sample rows; every row then assigned
    level by level, exactly balanced with sizes in [size_min, size_max] (default ``default_size_bounds(n, K)``),
    or greedily with balance=False).

    x: a ``dask.array`` (float, n × d; rows in chunks) or the path of ``.npy`` shards (a directory, a glob or a
    list; rows in path order). client: a ``distributed.Client``; None: the current client, else a new
    LocalCluster (closed by ``result.close()``). train_sample: rows the codebooks train on (gathered to the
    client); None: min(n, max(65536, 64·K)). When it covers all n rows the whole input is gathered and the
    single-process build runs (exact by construction). dedup: 'append', 'append-all', 'reassign' or 'none'.
    size_min, size_max: every balanced level's cluster sizes over all n rows (as ``tessera.build_semantic_ids``:
    the sample trains with its own default bounds).
    chunk_rows: rows per task for shard input (262,144 × d float32 each: 128 MiB at d = 128; fewer, larger tasks
    halve the price rounds' scheduling cost against 65,536, measured at 4M rows on 2 workers). candidates,
    boundary_fraction, price_rounds, certificate_tol tune the distributed assignment (they change its running
    time, never its result).

    Returns a :class:`DistributedSemanticIds`."""
    _require_dask()
    if dedup == "append_all":
        dedup = "append-all"
    if dedup not in ("append", "append-all", "reassign", "none"):
        raise InvalidArgument(f"unknown collision strategy '{dedup}': expected append, append-all, reassign or none")
    sizes = list(codebook_sizes) if codebook_sizes is not None else [int(codebook_size)] * int(levels)
    if not sizes or len(sizes) > 25 or any(k < 1 for k in sizes):
        raise InvalidArgument(f"between 1 and 25 levels of at least 1 code each are supported, got {sizes}")
    if not balance and (size_min is not None or size_max is not None):
        raise InvalidArgument("size_min/size_max bound balanced levels: they need balance=True")
    say = progress or (lambda *a: None)
    t_start = time.perf_counter()
    client, owned = _connect(client)
    try:
        return _build(x, client, owned, sizes, balance, dedup, seed, train_sample, zero_based, n_init, init,
                      max_iter, tol, (size_min, size_max), chunk_rows, candidates, boundary_fraction, price_rounds,
                      certificate_tol, say, t_start)
    except BaseException:
        if owned is not None:
            owned[0].close()
            owned[1].close()
        raise


def _build(x, client, owned, sizes, balance, dedup, seed, train_sample, zero_based, n_init, init, max_iter, tol,
           size_bounds, chunk_rows, candidates, boundary_fraction, price_rounds, certificate_tol, say, t_start):
    import tessera

    phases = {}
    t = time.perf_counter()
    inp = _Input(client, x, int(chunk_rows))
    n, d, L = inp.n, inp.d, len(sizes)
    for k in sizes:
        if k > n:
            raise InvalidArgument(f"K = {k} codes but there are only {n} rows (N < K)")
    S = train_sample if train_sample else min(n, max(65536, 64 * max(sizes)))
    S = min(int(S), n)
    for k in sizes:
        if k > S:
            raise InvalidArgument(f"a training sample of {S} rows is smaller than K = {k}")
    bounds = [_size_bounds(n, k, *size_bounds) for k in sizes] if balance else None
    # 1. the sample, gathered; the model trained on it exactly as the single-process build trains it
    rows = np.arange(n, dtype=np.int64) if S >= n else _t.sid_training_rows(n, S, seed)
    sample = inp.gather_rows(client, rows)
    phases["seconds_load_and_sample"] = time.perf_counter() - t
    say("sample", 1, 1, float(S))
    t = time.perf_counter()
    # (explicit bounds are for all n rows: a sample smaller than n trains with its own defaults, as on one machine)
    whole = {"size_min": size_bounds[0], "size_max": size_bounds[1]} if balance and S >= n else {}
    trained = tessera.build_semantic_ids(sample, codebook_sizes=sizes, balance=balance, dedup="none", seed=seed,
                                         n_init=n_init, init=init, max_iter=max_iter, tol=tol, train_sample=0,
                                         zero_based=zero_based, **whole)
    model = trained.model
    offs = model.codebook_offsets
    cb = np.asarray(model.codebooks, np.float32)
    books = [np.ascontiguousarray(cb[offs[m]:offs[m + 1]]) for m in range(L)]
    phases["seconds_train"] = time.perf_counter() - t
    say("train", 1, 1, 0.0)
    books_f = client.submit(_identity, books, pure=True)  # rebuilt from the graph if a worker holding it dies
    nchunks = len(inp.chunks)
    codes = [client.submit(_empty_codes, xf, pure=True) for xf in inp.chunks]
    level_stats = []
    t = time.perf_counter()
    if S >= n:
        # the sample is everything: the trained codes are the single-process codes
        all_codes = np.asarray(trained.codes, np.int32)
        codes = [client.submit(_identity, np.ascontiguousarray(all_codes[inp.starts[c]:inp.starts[c + 1]]),
                               pure=True) for c in range(nchunks)]
    else:
        sample_codes = np.asarray(trained.codes, np.int32)
        for m in range(L):
            K = sizes[m]
            if balance:
                lo, hi = bounds[m]
                res = _residual(sample, sample_codes, books, m)
                p0, gaps = _sample_prices(res, books[m], lo, hi, n)
                limits = _join_limits(res, books[m], p0, lo, n) if K > candidates else None
                codes, st = _assign_level(client, inp, codes, books_f, m, K, lo, hi, p0, gaps, limits, candidates,
                                          boundary_fraction, price_rounds, certificate_tol, say, books[m],
                                          (min(4 * S, n // 4), seed))
            else:
                labels = [client.submit(_nearest_chunk, xf, cf, books_f, m, pure=True)
                          for xf, cf in zip(inp.chunks, codes)]
                codes = [client.submit(_append_level, cf, lf, pure=True) for cf, lf in zip(codes, labels)]
                st = {"level": m}
            level_stats.append(st)
            say("assign", m + 1, L, 0.0)
    client.gather(codes[:1])
    phases["seconds_assign"] = time.perf_counter() - t
    # 3. collisions
    t = time.perf_counter()
    ids, width, coll, moved_info = _resolve(client, inp, codes, books_f, books, L, dedup)
    phases["seconds_collisions"] = time.perf_counter() - t
    t = time.perf_counter()
    mets = client.gather([client.submit(_chunk_metrics, xf, cf, idf, books_f, L, pure=True)
                          for xf, cf, idf in zip(inp.chunks, codes, ids)])
    phases["seconds_metrics"] = time.perf_counter() - t
    nd = float(n) * float(d)
    levels_out = []
    for m in range(L):
        cnt = np.sum([mt["counts"][m] for mt in mets], axis=0)
        p = cnt[cnt > 0] / n
        h = float(-(p * np.log2(p)).sum())
        e = {"level": m, "codebook_size": sizes[m], "unique_codes": int((cnt > 0).sum()),
             "utilisation": float((cnt > 0).sum()) / sizes[m], "min_cluster_size": int(cnt.min()),
             "max_cluster_size": int(cnt.max()), "entropy_bits": h, "perplexity": float(2.0 ** h),
             "mse_before": sum(mt["before"][m] for mt in mets) / nd,
             "mse_after": sum(mt["after"][m] for mt in mets) / nd,
             "seconds": level_stats[m].get("seconds", 0.0) if m < len(level_stats) else 0.0}
        if balance:
            e["size_min"], e["size_max"] = bounds[m]
        levels_out.append(e)
    mse = sum(mt["err"] for mt in mets) / nd
    metrics = {
        "n_items": n, "dim": d, "levels_count": L, "codebook_sizes": sizes,
        "balance": "exact" if balance else "none", "dedup": dedup,
        "seconds_total": time.perf_counter() - t_start,
        "mse_before": sum(mt["sq"] for mt in mets) / nd, "mse": mse,
        "collision_rate": 1.0 - coll["unique"] / n, "unique_ids_before": coll["unique"],
        "largest_collision_group": coll["largest"], "colliding_items": coll["colliding"],
        "final_collisions": coll["colliding"] if dedup == "none" else 0,
        "max_id_length": L + (1 if width > L else 0),
    }
    if dedup == "reassign":
        after = sum(mt["err_resolved"] for mt in mets) / nd
        metrics["reassigned_items"] = moved_info["moved"]
        metrics["mse_after_resolution"] = after
        metrics["mse_increase_from_resolution"] = after - mse
        metrics["final_collisions"] = moved_info["final_collisions"]
    metrics["levels"] = levels_out
    metrics["distributed"] = dict(phases, train_sample=S, chunks=nchunks, assignment=level_stats,
                                  workers=len(client.scheduler_info().get("workers", {})))
    return DistributedSemanticIds(client, model, codes, ids, np.asarray(inp.starts), L, width, metrics, dedup,
                                  zero_based, owned)


def _size_bounds(n, K, size_min, size_max):
    """A level's cluster-size window over all n rows: the given bounds, the missing ones as
    ``default_size_bounds``; an error when no assignment can meet them."""
    import tessera

    lo, hi = tessera.default_size_bounds(n, K)
    lo = int(size_min) if size_min is not None else int(lo)
    hi = int(size_max) if size_max is not None else int(hi)
    if lo < 0 or hi < 1 or K * lo > n or K * hi < n:
        raise InvalidArgument(f"infeasible size bounds: n = {n} items in K = {K} clusters with sizes in "
                              f"[{lo}, {hi}]; need K·size_min ≤ n ≤ K·size_max, i.e. size_min ≤ {n // K} and "
                              f"size_max ≥ {-(-n // K)}")
    return lo, hi


def _sample_bounds(lo, hi, n, S, K):
    """The window [lo, hi] of n rows scaled to the S sample rows that price it (prices are intensive: the same
    for a sample as for the whole), kept feasible for S."""
    return min(lo * S // n, S // K), max(-(-hi * S // n), -(-S // K))


def _sample_prices(res, book, lo, hi, n):
    """A sample's exact balanced prices (the window [lo, hi] of n rows scaled to the sample) and its rows' gaps
    under them: the start of the price rounds and the boundary margin over all n rows."""
    slo, shi = _sample_bounds(lo, hi, n, res.shape[0], book.shape[0])
    _, p = _t.balanced_assign_with_prices(res, book, slo, shi)
    p = np.asarray(p, np.float64)
    return p, _sample_gaps(res, book, p)


def _sample_gaps(res, book, prices):
    """Every sample row's gap between its cheapest and second-cheapest priced cluster."""
    if book.shape[0] < 2:
        return np.zeros(0)
    _, ids, costs, theta = _t.candidate_lists(res, book, prices, 1)
    return theta.astype(np.float64) - (costs + prices[ids])


def _join_limits(res, book, prices, lo, n):
    """Per cluster, the joining cost (priced cost less the row's cheapest) below which the sample holds its
    share of 4·lo rows: the lists keep every such joiner, so that a cluster the sample's prices undervalue
    is still listed by enough rows for the price rounds and the boundary solve to fill it."""
    S = res.shape[0]
    want = min(S, max(1, -(-4 * int(lo) * S // int(n))))
    P = _t.squared_distances(res, book) + prices.astype(np.float32)
    P -= P.min(axis=1, keepdims=True)
    return np.partition(P, want - 1, axis=0)[want - 1].astype(np.float64)


def _margin(gaps, fraction):
    if fraction >= 1 or gaps.size == 0:
        return np.inf
    return float(np.quantile(gaps, fraction))


def _off_target(counts, p, lo, hi):
    """(over, short): how far each cluster's size is from where its price puts it (hi if the price is
    positive, lo if negative, anywhere in [lo, hi] at 0: complementary slackness)."""
    over = np.maximum(counts - np.where(p < 0, lo, hi), 0)
    short = np.maximum(np.where(p > 0, hi, lo) - counts, 0)
    return over, short


def _merge_scans(scans, T):
    counts = np.sum([s["counts"] for s in scans], axis=0)
    fixed = np.sum([s["fixed"] for s in scans], axis=0)
    gaps = np.sort(np.concatenate([s["gaps"] for s in scans], axis=1), axis=1)[:, :T]
    joins = np.sort(np.concatenate([s["joins"] for s in scans], axis=1), axis=1)[:, :T]
    return counts, fixed, gaps, joins


def _merge_joiners(scans, starts, T):
    """Per cluster, the T cheapest joiners over all chunks: (global rows, raw costs, own clusters), K × T."""
    v = np.concatenate([s["joins"] for s in scans], axis=1)
    r = np.concatenate([np.where(s["join_rows"] >= 0, s["join_rows"] + starts[ci], -1)
                        for ci, s in enumerate(scans)], axis=1)
    c = np.concatenate([s["join_cost"] for s in scans], axis=1)
    o = np.concatenate([s["join_own"] for s in scans], axis=1)
    od = np.concatenate([s["join_ownd"] for s in scans], axis=1)
    order = np.lexsort((r, v), axis=1)[:, :T]
    return tuple(np.take_along_axis(a, order, axis=1) for a in (r, c, o, od))


def _rows_in(arc_rows):
    """How many rows a scan's arcs (grouped by row) belong to."""
    return int(len(arc_rows) and 1 + np.count_nonzero(arc_rows[1:] != arc_rows[:-1]))


def _grouped_arcs(R, Kc, C):
    """Arcs in coordinate form (row, cluster, cost) grouped by row, rows ascending, the first of any duplicate
    (row, cluster) kept. The scans deliver them so already (boundary rows ascending, chunks in order, no
    duplicate within a list): then nothing is sorted."""
    if len(R) < 2 or (R[1:] >= R[:-1]).all():
        return R, Kc, C
    return _sorted_unique_arcs(R, Kc, C)


def _sorted_unique_arcs(R, Kc, C):
    """The arcs sorted by (row, cluster), the first of any duplicate kept (lexsort is stable)."""
    order = np.lexsort((Kc, R))
    R, Kc, C = R[order], Kc[order], C[order]
    first = np.r_[True, (R[1:] != R[:-1]) | (Kc[1:] != Kc[:-1])]
    return R[first], Kc[first], C[first]


def _with_arcs(R, Kc, C, add_r, add_k, add_c):
    """The grouped arcs (R, Kc, C) with the arcs in the lists of pieces add_r, add_k, add_c added, still grouped
    by row; an arc already there keeps its cost. Only the rows that gain arcs are sorted: the added arcs are few,
    the arcs many (all rows of a level at worst)."""
    if not add_r:
        return R, Kc, C
    r = np.concatenate(add_r).astype(np.int64)
    k = np.concatenate(add_k).astype(np.int32)
    c = np.concatenate(add_c).astype(np.float32)
    rows = np.unique(r)
    a, b = np.searchsorted(R, rows, "left"), np.searchsorted(R, rows, "right")
    cnt = b - a
    old = np.repeat(a - (np.cumsum(cnt) - cnt), cnt) + np.arange(int(cnt.sum()))
    # existing arcs first, so that they win over an added duplicate
    r2, k2, c2 = _sorted_unique_arcs(np.concatenate([R[old], r]), np.concatenate([Kc[old], k]),
                                     np.concatenate([C[old], c]))
    keep = np.ones(len(R), bool)
    keep[old] = False
    R, Kc, C = R[keep], Kc[keep], C[keep]
    at = np.searchsorted(R, r2)
    return np.insert(R, at, r2), np.insert(Kc, at, k2), np.insert(C, at, c2)


def _kth_smallest(table, e):
    """Per cluster the e-th smallest value of its row of `table` (K × T, ascending, +inf padded); past the
    T-th, extrapolated linearly from it (the values near 0 of a gap or joining-cost distribution grow about
    linearly with their rank); +inf where e is 0 or a row has fewer than min(e, T) values."""
    T = table.shape[1]
    e = np.asarray(e, np.int64)
    at = np.clip(np.minimum(e, T) - 1, 0, T - 1)
    v = table[np.arange(table.shape[0]), at]
    with np.errstate(invalid="ignore"):  # inf · 0 in the branch np.where discards
        return np.where(e <= 0, np.inf, np.where(e > T, v * (e / T), v))


def _price_steps(p, over, short, gaps, joins):
    """One Jacobi round of dual ascent (docs/balanced-assignment.md, section 4.1): a cluster `over` items
    above its target moves its price up just past the over-th smallest gap of its members, one `short` below
    it down just past the short-th smallest joining cost (the largest known when fewer rows have one), never
    across 0. Past the T-th value the step is extrapolated (a dense cluster would otherwise move T rows a
    round), at most to 4·T: further out the extrapolation overshoots (measured at level 0 of the 1M bench)."""
    step = np.zeros_like(p)
    for table, need, sign in ((gaps, over, 1.0), (joins, short, -1.0)):
        known = np.isfinite(table).sum(axis=1)
        T = table.shape[1]
        e = np.where(known < T, np.minimum(need, known), np.minimum(need, 4 * T))
        g = _kth_smallest(table, e)
        ok = (need > 0) & np.isfinite(g)
        step[ok] = sign * (g[ok] + 1e-6 * (np.abs(g[ok]) + np.abs(p[ok])) + 1e-30)
    up = step > 0
    step[up & (p < 0)] = np.minimum(step, -p)[up & (p < 0)]
    down = step < 0
    step[down & (p > 0)] = np.maximum(step, -p)[down & (p > 0)]
    return step


def _assign_level(client, inp, codes, books_f, m, K, lo, hi, p0, sample_gaps, join_limit, c, fraction, max_rounds,
                  tol, say, book, strata):
    """Level m's exact balanced assignment of all rows (see the module docstring); returns the codes futures
    with the new column and what it did."""
    T = 128
    st = {"level": m, "price_rounds": 0, "scans": 0, "certificate_rounds": 0, "boundary_fraction": fraction,
          "connects": 0, "candidates": c}
    t0 = time.perf_counter()
    starts = inp.starts
    cand = [c]
    made = {}

    def make_lists(p):
        """Every chunk's candidate lists under p: the level's one pass of GEMMs (again only if widened)."""
        from distributed import wait

        ts = time.perf_counter()
        made["lists"] = [client.submit(_chunk_lists, xf, cf, books_f, m, p, cand[0], join_limit, pure=True)
                         for xf, cf in zip(inp.chunks, codes)]
        made["p"] = p
        made["check"], made["p_check"] = made["lists"], p
        wait(made["lists"])
        st["list_passes"] = st.get("list_passes", 0) + 1
        st["seconds_lists"] = st.get("seconds_lists", 0.0) + time.perf_counter() - ts

    own_m = join_m = None

    def scan(p, margin, rows=True):
        """One pass over every chunk's lists under p; rows=False (a price round): only the merged tables,
        reduced on the workers in groups of 8 chunks."""
        st["scans"] += 1
        ts = time.perf_counter()
        if rows:
            futs = [client.submit(_scan_lists, lf, K, p, T, margin, own_m, join_m, pure=True)
                    for lf in made["lists"]]
        else:
            futs = [client.submit(_round_tables, lf, K, p, T, pure=True) for lf in made["lists"]]
            futs = [client.submit(_merge_tables, T, *futs[g:g + 8], pure=True) for g in range(0, len(futs), 8)]
        out = client.gather(futs)
        st["seconds_scans"] = st.get("seconds_scans", 0.0) + time.perf_counter() - ts
        return out

    make_lists(p0)
    if strata[0] >= 16 * K:
        # prices again from a larger sample drawn in proportion to every cluster's count over all rows under
        # the sample's prices: a plain sample mis-counts whole isolated modes, which the rounds cannot mend
        ts = time.perf_counter()
        rows_s, seed_s = strata
        rate = min(1.0, rows_s / inp.n)
        res = np.concatenate(client.gather([
            client.submit(_stratified_residuals, xf, cf, books_f, m, lf, p0, rate, [seed_s, m, ch], pure=True)
            for ch, (xf, cf, lf) in enumerate(zip(inp.chunks, codes, made["lists"]))]))
        p0, sample_gaps = _sample_prices(res, book, lo, hi, inp.n)
        st["strata_rows"] = len(res)
        st["seconds_strata"] = time.perf_counter() - ts
    # Price rounds on the lists (the bounded engine's pre-pass, each round one pass of the workers): a round
    # that does not reduce the imbalance is taken back and retried at half the step.
    p = p0
    scans = scan(p, -np.inf, rows=False)
    counts, fixed, gaps, joins = _merge_scans(scans, T)
    over, short = _off_target(counts, p, lo, hi)
    imb = int(over.sum() + short.sum())
    st["imbalance_from_sample_prices"] = imb
    best = (p, scans, (counts, fixed, gaps, joins), over, short, imb)
    damping = 1.0
    step = _price_steps(p, over, short, gaps, joins)
    for _ in range(max_rounds):
        if best[5] == 0:
            break
        q = best[0] + damping * step
        scans = scan(q, -np.inf, rows=False)
        st["price_rounds"] += 1
        counts, fixed, gaps, joins = _merge_scans(scans, T)
        over, short = _off_target(counts, q, lo, hi)
        imb = int(over.sum() + short.sum())
        if imb < best[5]:
            gain = best[5] - imb
            best = (q, scans, (counts, fixed, gaps, joins), over, short, imb)
            damping = min(1.0, damping * 1.5)
            step = _price_steps(q, over, short, gaps, joins)
            if gain < max(8, imb // 100):  # the rounds plateau; the boundary solve finishes
                break
        else:  # overshot: back to the best prices, half the step
            damping /= 2
            if damping < 1 / 16:
                break
    p, scans, (counts, fixed, gaps, joins), over, short, imb = best
    st["imbalance_after_prices"] = imb
    # per-cluster margins: a cluster above its target frees (excess + slack) members, one below it attracts
    # (deficit + slack) joiners, so that the restricted problem is feasible at once in the usual case
    # every cluster's cheapest leavers and joiners: chains of moves pass through clusters on target too, and
    # carry about the imbalance per cluster each (32 at least; ×4 per widening)
    base = [max(32, 4 * imb // K)]

    def set_margins():
        nonlocal own_m, join_m
        own_m = _kth_smallest(gaps, over + base[0] + over // 4)
        join_m = _kth_smallest(joins, short + base[0] + short // 4)

    set_margins()
    margin = _margin(sample_gaps, fraction)
    scans = scan(p, margin)
    counts, fixed, gaps, joins = _merge_scans(scans, T)

    def widen():
        """More boundary rows (first each cluster's cheapest leavers and joiners, then a larger margin for
        all), then more candidates per row; a new scan under p."""
        nonlocal fraction, margin, scans, counts, fixed, gaps, joins
        if base[0] < max(T, hi):
            base[0] = min(max(T, hi), base[0] * 4)
            set_margins()
        elif fraction < 1:
            fraction = min(1.0, fraction * 4)
        elif cand[0] < K:
            cand[0] = min(K, cand[0] * 2)
            make_lists(p)
        else:
            raise RuntimeError(f"level {m}: the balanced assignment is infeasible with every row and arc "
                               "(internal error)")
        margin = _margin(sample_gaps, fraction)
        scans = scan(p, margin)
        if fraction < 1 and sum(_rows_in(sc["arc_rows"]) for sc in scans) > inp.n // 4:
            # past a quarter of the rows a boundary costs more than all of them: the restricted solves on it
            # fail and grow again, while with every row (nothing fixed) the problem on the lists is the whole
            # level, solved at once (10M × 128, K = 256, level 0 on 2 workers: 474 → 301 s)
            fraction, margin = 1.0, np.inf
            if made["p"] is not p:  # lists around the rounds' prices: fewer violations after the solve
                make_lists(p)
            scans = scan(p, margin)
        st["boundary_fraction"], st["candidates"], st["per_cluster_margin"] = fraction, cand[0], base[0]
        counts, fixed, gaps, joins = _merge_scans(scans, T)

    p_start = p  # the restricted solves' start prices (the last feasible solve's, once there is one)
    while True:
        # the boundary set as arcs in coordinate form (global row, cluster, raw cost); duplicates are dropped
        # when the compressed rows are built (the first one is kept: the same float32 distance in any case)
        arc_r = [sc["arc_rows"] + starts[ci] for ci, sc in enumerate(scans)]
        arc_k = [sc["arc_ids"] for sc in scans]
        arc_c = [sc["arc_costs"] for sc in scans]
        fixed_now = fixed.astype(np.int64).copy()
        joiners = _merge_joiners(scans, starts, T)
        connected = False
        restart = False
        R, Kc, C = _grouped_arcs(np.concatenate(arc_r).astype(np.int64), np.concatenate(arc_k).astype(np.int32),
                                 np.concatenate(arc_c).astype(np.float32))
        arc_r, arc_k, arc_c = [], [], []
        while True:
            st["certificate_rounds"] += 1
            R, Kc, C = _with_arcs(R, Kc, C, arc_r, arc_k, arc_c)  # the arcs the last certificate added
            arc_r, arc_k, arc_c = [], [], []
            starts_of = np.flatnonzero(np.r_[True, R[1:] != R[:-1]]) if len(R) else np.zeros(0, np.int64)
            keys = R[starts_of]
            offsets = np.append(starts_of, len(R)).astype(np.int64)
            lo_r = np.maximum(lo - fixed_now, 0)
            hi_r = hi - fixed_now
            feasible = bool((hi_r >= 0).all())
            if feasible:
                ts = time.perf_counter()
                feasible, lab, p_new, _ = _t.balanced_assign_sparse(offsets, Kc, C, K, lo_r, hi_r, p_start)
                st.setdefault("restricted_solves", []).append(dict(
                    rows=len(keys), arcs=len(C), feasible=bool(feasible), seconds=round(time.perf_counter() - ts, 2)))
                st["seconds_restricted_solve"] = st.get("seconds_restricted_solve", 0.0) + time.perf_counter() - ts
                if not feasible and not connected:
                    # connect the clusters the boundary rows' arcs cannot fill: each cluster's T cheapest joiners
                    # (priced) get an arc to it; a fixed joiner enters the boundary set with its own cluster too
                    connected = True
                    st["connects"] += 1
                    jr, jc, jo, jod = joiners
                    ok = jr >= 0
                    g = jr[ok]
                    kk = np.broadcast_to(np.arange(K)[:, None], jr.shape)[ok]
                    arc_r.append(g)
                    arc_k.append(kk.astype(np.int32))
                    arc_c.append(jc[ok].astype(np.float32))
                    new = ~np.isin(g, keys)
                    gn, first_at = np.unique(g[new], return_index=True)
                    own = jo[ok][new][first_at]
                    fixed_now -= np.bincount(own, minlength=K)
                    arc_r.append(gn)
                    arc_k.append(own.astype(np.int32))
                    arc_c.append(jod[ok][new][first_at].astype(np.float32))
                    had = len(R)
                    R, Kc, C = _with_arcs(R, Kc, C, arc_r, arc_k, arc_c)
                    arc_r, arc_k, arc_c = [], [], []
                    if len(R) > had:  # else the same problem again: widen at once
                        continue
            if not feasible:
                widen()
                restart = True
                break
            p_new = np.asarray(p_new, np.float64).copy()
            p_start = p_new.copy()  # the next solve (more rows and arcs) starts from these: most rows stay put
            # the restricted solve's float rounding of the costs: a few units of it are not a violation
            abs_tol = 1e-7 * (float(np.abs(C).max()) if len(C) else 1.0)
            sizes_r = np.bincount(lab, minlength=K)
            # a cluster whose fixed rows already exceed lo (window clamped at 0, so it took no boundary row) may
            # not keep a negative price (condition 3 on the whole problem); 0 keeps condition 1 for the boundary
            clamp = (p_new < 0) & (fixed_now + sizes_r != lo)
            p_new[clamp] = 0.0
            if fraction < 1 and st.get("stretches", 0) < 3:
                # prices that moved past the boundary's margins (a cluster far cheaper than its listed joiners'
                # costs, or far dearer than its leavers' gaps) fail the certificate on very many rows: widen
                # those clusters' margins toward the move (capped) and solve again before checking
                dp = p_new - p
                dp -= np.median(dp)
                cap = np.full(K, 16 * base[0])
                want_j = np.minimum(-dp, _kth_smallest(joins, cap))
                want_o = np.minimum(dp, _kth_smallest(gaps, cap))
                if (want_j > 2 * join_m).any() or (want_o > 2 * own_m).any():
                    st["stretches"] = st.get("stretches", 0) + 1
                    join_m, own_m = np.maximum(join_m, want_j), np.maximum(own_m, want_o)
                    p_start = p_new.copy()
                    scans = scan(p, margin)
                    counts, fixed, gaps, joins = _merge_scans(scans, T)
                    restart = True
                    break
            cut = np.searchsorted(keys, starts)
            # check on lists made near p_new when the prices moved too far for the lists' bound to clear rows
            # (every row would be recomputed): one more pass of GEMMs, then cheap checks in later rounds
            # (without join limits the lists hold every cluster: nothing to recompute)
            delta = p_new - made["p_check"]
            exact = join_limit is not None and (join_limit + delta).min() < 0  # else the lists' bound suffices
            if exact and _loosest_join(join_limit, delta, _fallen(delta)) < 0:
                made["check"] = [client.submit(_chunk_lists, xf, cf, books_f, m, p_new, cand[0], join_limit, pure=True)
                                 for xf, cf in zip(inp.chunks, codes)]
                made["p_check"], exact = p_new, False
                st["check_list_passes"] = st.get("check_list_passes", 0) + 1
            certs = [client.submit(_certify_lists, xf, cf, books_f, m, lf, ck, made["p_check"], join_limit, p, p_new,
                                   keys[cut[ch]:cut[ch + 1]] - starts[ch], lab[cut[ch]:cut[ch + 1]], tol, cand[0],
                                   abs_tol, _KEEP_VIOLATORS, exact, pure=True)
                     for ch, (xf, cf, lf, ck) in enumerate(zip(inp.chunks, codes, made["lists"], made["check"]))]
            ts = time.perf_counter()
            viols = client.gather([client.submit(operator.getitem, ce, 1, pure=True) for ce in certs])
            st["seconds_certificate"] = st.get("seconds_certificate", 0.0) + time.perf_counter() - ts
            nv = nfound = 0
            for ch, v in enumerate(viols):
                st["rows_checked"] = st.get("rows_checked", 0) + v["checked"]
                nfound += v["found"]
                if not len(v["rows"]):
                    continue
                nv += len(v["rows"])
                arc_r.append(v["arc_rows"].astype(np.int64) + starts[ch])
                arc_k.append(v["arc_ids"])
                arc_c.append(v["arc_costs"])
                fixed_now -= np.bincount(v["labels"][~v["in_b"]], minlength=K)
            st.setdefault("violations", []).append(nfound)
            st.setdefault("violations_added", []).append(nv)
            if nv == 0:
                st["boundary_rows"] = len(keys)
                st["arcs"] = len(C)
                st["seconds"] = time.perf_counter() - t0
                new_codes = [client.submit(_append_level, cf, client.submit(operator.getitem, ce, 0, pure=True),
                                           pure=True) for cf, ce in zip(codes, certs)]
                return new_codes, st
            if st["certificate_rounds"] > 200:
                raise RuntimeError(f"level {m}: the certificate still fails after 200 rounds (internal error)")
        if not restart:  # pragma: no cover
            break


def _resolve(client, inp, codes, books_f, books, L, dedup):
    """Collision resolution by a hash shuffle of the code tuples. Returns (ids futures, width, stats of the
    codes before resolution, reassign info)."""
    nchunks = len(inp.chunks)
    P = max(1, min(nchunks, 64))
    depth = L - 1 if dedup == "reassign" else L
    splits = [client.submit(_bucket_split, cf, inp.starts[c], depth, P, pure=True) for c, cf in enumerate(codes)]
    buckets = []
    for p in range(P):
        pieces = [client.submit(operator.getitem, s, p, pure=True) for s in splits]
        buckets.append(client.submit(_resolve_bucket, dedup, L, *pieces, pure=True))
    stats = client.gather([client.submit(_bucket_part, b, "stats", pure=True) for b in buckets])
    coll = {"unique": sum(s["unique"] for s in stats), "largest": max(s["largest"] for s in stats),
            "colliding": sum(s["colliding"] for s in stats)}
    moved_info = {"moved": 0, "final_collisions": 0}
    moved = None
    if dedup == "reassign":
        cid = client.gather([client.submit(_bucket_part, b, "colliding_ids", pure=True) for b in buckets])
        ccodes = client.gather([client.submit(_bucket_part, b, "colliding_codes", pure=True) for b in buckets])
        gids = np.concatenate(cid) if cid else np.zeros(0, np.int64)
        width = L
        if gids.size:
            order = np.argsort(gids)
            gids = gids[order]
            sub = np.concatenate(ccodes)[order]
            x_rows = inp.gather_rows(client, gids)
            res = _residual(x_rows, sub, books, L - 1)
            new_codes, nmoved, _ = _t.reassign_last_level(sub, res, books[L - 1])
            new_codes = np.asarray(new_codes, np.int32)
            moved_info["moved"] = int(nmoved)
            # what could not move falls back to append, within the gathered groups
            suf = _suffixes(new_codes, gids, False)
            moved_info["final_collisions"] = 0
            if (suf >= 0).any():
                width = L + 1
            moved = (gids, suf, (gids, new_codes))
        ids = []
        for c, cf in enumerate(codes):
            a, b = inp.starts[c], inp.starts[c + 1]
            if moved is not None:
                lo_, hi_ = np.searchsorted(moved[0], [a, b])
                piece = (moved[0][lo_:hi_], moved[1][lo_:hi_], (moved[2][0][lo_:hi_], moved[2][1][lo_:hi_]))
                ids.append(client.submit(_chunk_ids, a, b - a, cf, width, L, piece, pure=True))
            else:
                ids.append(client.submit(_chunk_ids, a, b - a, cf, width, L, pure=True))
        return ids, width, coll, moved_info
    if dedup == "none":
        width = L
    elif dedup == "append-all":
        width = L + 1
    else:
        width = L + 1 if coll["colliding"] > 0 else L
    if width == L:
        ids = [client.submit(_chunk_ids, inp.starts[c], inp.starts[c + 1] - inp.starts[c], cf, width, L, pure=True)
               for c, cf in enumerate(codes)]
        return ids, width, coll, moved_info
    parts = [client.submit(_bucket_suffix_part, b, pure=True) for b in buckets]
    ids = [client.submit(_chunk_ids, inp.starts[c], inp.starts[c + 1] - inp.starts[c], cf, width, L, *parts,
                         pure=True) for c, cf in enumerate(codes)]
    return ids, width, coll, moved_info


def _bucket_suffix_part(res):
    return (res["ids"], res["suffix"], None)


# ---------------------------------------------------------------------------------------------------------
# Command line

def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tessera.distributed",
                                 description="Semantic IDs on Dask (the same result as `tessera sid build`).")
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="train on a sample, assign every row exactly balanced, resolve collisions")
    b.add_argument("input", help="a directory of .npy shards, a glob, or one .npy file (float, n × d)")
    b.add_argument("--out", required=True, help="output directory (must not exist unless --overwrite)")
    where = b.add_mutually_exclusive_group(required=True)
    where.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:8786)")
    where.add_argument("--local-workers", type=int, help="start a LocalCluster of N worker processes")
    b.add_argument("--threads-per-worker", type=int, default=1)
    b.add_argument("--levels", type=int, default=3)
    b.add_argument("--codebook-size", type=int, default=256)
    b.add_argument("--dedup", default="append", choices=["append", "append-all", "reassign", "none"])
    b.add_argument("--seed", type=int, default=42)
    b.add_argument("--train-sample", type=int, default=None,
                   help="rows the codebooks train on (default min(n, max(65536, 64·K)))")
    b.add_argument("--no-balance", action="store_true", help="greedy levels instead of exact balanced ones")
    b.add_argument("--size-min", type=int, default=None, help="smallest cluster size (default max(1, N/K - 1))")
    b.add_argument("--size-max", type=int, default=None, help="largest cluster size (default N/K + 1)")
    b.add_argument("--zero-based", action="store_true", help="0-based level tokens in index.json")
    b.add_argument("--index-json", action="store_true", help="also write index.json (about 5 GB at 10^8 items)")
    b.add_argument("--chunk-rows", type=int, default=262144, help="rows per task")
    b.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    b.add_argument("--connect-timeout", type=float, default=8.0, help="seconds to reach the scheduler")
    args = ap.parse_args(argv)
    _require_dask()
    out = os.path.abspath(args.out)
    try:
        _check_out_dir(out, args.overwrite)
        client, owned = _connect(None, scheduler=args.scheduler, local_workers=args.local_workers,
                                 threads_per_worker=args.threads_per_worker, connect_timeout=args.connect_timeout)
    except (FileExistsError, ConnectionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        res = build_semantic_ids(args.input, client=client, levels=args.levels, codebook_size=args.codebook_size,
                                 balance=not args.no_balance, dedup=args.dedup, seed=args.seed,
                                 train_sample=args.train_sample, zero_based=args.zero_based,
                                 size_min=args.size_min, size_max=args.size_max, chunk_rows=args.chunk_rows)
        res.save(out, index_json=args.index_json, overwrite=args.overwrite)
        m = res.metrics
        print(f"{m['n_items']} items × {m['dim']}: {m['levels_count']} levels, collision rate "
              f"{m['collision_rate']:.4f}, mse {m['mse']:.6g}, {m['seconds_total']:.1f} s; wrote {out}")
        return 0
    except (InvalidArgument, FileExistsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if owned is not None:
            owned[0].close()
            owned[1].close()


if __name__ == "__main__":
    sys.exit(main())
