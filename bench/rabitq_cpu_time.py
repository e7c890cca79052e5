#!/usr/bin/env python3
"""CPU time (process time, one thread, the minimum of --reps runs) of tessera's Extended RaBitQ encoding and of
the IVF search's per-query cost, for before/after comparisons of one build against another (run it with each
build's --pymodule). Not a test: nothing fails on time.

    OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/rabitq_cpu_time.py \
        [--pymodule build-rbq/python] [--parts codes,ivf-encode,search] [--reps 3]

codes       RaBitQuantizer(d, bits).compute_codes on random Gaussian directions (seeded), d = 128 (20 000 vectors)
            and 960 (3 000), bits 2, 4, 7, exact search and fast_quantization: µs per vector for the whole codec
            (rotation, code search, factors, packing), and a hash of the codes (the same codes give the same hash).
ivf-encode  gmm-1m's first --n rows (bench_rabitq.py's cache: its data and its partition of 4096 lists; run
            `bench_rabitq.py --sets gmm-1m` once to make them), IVFRaBitQ(128, 4096, bits=4).add(x, lists),
            keep_vectors=False, µs per vector; with --rabitqlib also rabitqlib.IvfIndex.build on the same lists.
search      the index of gmm-1m's first --search-n rows (default all 1M; add(x, lists) from that partition, 4096
            lists), its 1000 queries, k = 10, nprobe 1, 4, 16: µs of CPU per query, recall@10 against the true
            top 10 of the 1M rows (so low for a subset), and a hash of labels and distances (identical results
            give identical hashes). On a shared machine the 1M index's scans vary by ±30% between runs (memory
            traffic); the 200k index (--search-n 200000) shows the per-query fixed cost with less noise.
OPENBLAS_NUM_THREADS=1 keeps numpy's own OpenBLAS threads (which spin in this process) out of the CPU time.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine  # noqa: E402


def cpu_min(fn, reps):
    best = float("inf")
    out = None
    for _ in range(reps):
        t = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t)
    return best, out


def part_codes(tessera, reps):
    print("codes: µs per vector (RaBitQuantizer.compute_codes, one thread)")
    for d, n in ((128, 20_000), (960, 3_000)):
        rng = np.random.default_rng(7)
        x = rng.standard_normal((n, d)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        for bits in (2, 4, 7):
            for fast in (False, True):
                q = tessera.RaBitQuantizer(d, bits=bits, fast_quantization=fast)
                q.train(x[:1000])
                s, codes = cpu_min(lambda: q.compute_codes(x), reps)
                h = hashlib.sha1(np.ascontiguousarray(codes).tobytes()).hexdigest()[:12]
                mode = "fast " if fast else "exact"
                print(f"  d {d:4d} bits {bits} {mode}: {s / n * 1e6:7.2f} us/vector  codes {h}", flush=True)


def load_gmm(cache):
    z = np.load(os.path.join(cache, "rabitq-gmm-1m.npz"))
    p = np.load(os.path.join(cache, "rabitq-part-gmm-1m-4096-74565.npz"))
    return z["base"], z["queries"], z["gt"], p["centroids"], p["assign"]


def part_ivf_encode(tessera, cache, n, reps, with_rabitqlib):
    base, _, _, cent, assign = load_gmm(cache)
    x, lists = np.ascontiguousarray(base[:n]), assign[:n]
    print(f"ivf-encode: gmm-1m first {n} rows, 4096 lists, 4 bits, µs per vector")

    def tess():
        ix = tessera.IVFRaBitQ(128, 4096, bits=4, keep_vectors=False)
        ix.set_centroids(cent)
        t = time.process_time()
        ix.add(x, lists=lists)
        return time.process_time() - t

    best = min(tess() for _ in range(reps))
    print(f"  tessera   add(x, lists): {best / n * 1e6:6.2f} us/vector", flush=True)
    if with_rabitqlib:
        import rabitqlib

        def rbq():
            ix = rabitqlib.IvfIndex(128, n, 4096, 4, "l2")
            t = time.process_time()
            ix.build(x, cent, lists.astype(np.uint32), num_threads=1)
            return time.process_time() - t

        best = min(rbq() for _ in range(reps))
        print(f"  rabitqlib build:         {best / n * 1e6:6.2f} us/vector", flush=True)


def part_search(tessera, cache, reps, n):
    base, queries, gt, cent, assign = load_gmm(cache)
    ix = tessera.IVFRaBitQ(128, 4096, bits=4, keep_vectors=False)
    ix.set_centroids(cent)
    ix.add(np.ascontiguousarray(base[:n]), lists=assign[:n])
    nq = queries.shape[0]
    print(f"search: gmm-1m first {ix.ntotal} rows, 4096 lists, 4 bits, {nq} queries, k = 10, µs of CPU per query")
    for nprobe in (1, 4, 16):
        s, (dist, lab) = cpu_min(lambda: ix.search(queries, 10, nprobe=nprobe), reps)
        recall = np.mean([len(set(lab[i]) & set(gt[i, :10])) / 10 for i in range(nq)])
        h = hashlib.sha1(np.ascontiguousarray(lab).tobytes() + np.ascontiguousarray(dist).tobytes()).hexdigest()[:12]
        print(f"  nprobe {nprobe:3d}: {s / nq * 1e6:7.1f} us/query  recall@10 {recall:.4f}  results {h}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pymodule", default="build-rbq/python")
    ap.add_argument("--parts", default="codes,ivf-encode,search")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n", type=int, default=200_000, help="rows for ivf-encode")
    ap.add_argument("--search-n", type=int, default=1_000_000, help="rows of the index for search")
    ap.add_argument("--rabitqlib", action="store_true", help="ivf-encode: rabitqlib's build too")
    ap.add_argument("--data-cache", default=str(machine.SCRATCH / "rabitq" / "data"))
    a = ap.parse_args()
    sys.path.insert(0, a.pymodule)
    import tessera

    tessera.set_num_threads(1)
    parts = a.parts.split(",")
    if "codes" in parts:
        part_codes(tessera, a.reps)
    if "ivf-encode" in parts:
        part_ivf_encode(tessera, a.data_cache, a.n, a.reps, a.rabitqlib)
    if "search" in parts:
        part_search(tessera, a.data_cache, a.reps, a.search_n)


if __name__ == "__main__":
    main()
