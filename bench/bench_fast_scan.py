#!/usr/bin/env python3
"""Fast-scan search (4-bit additive codes), tessera vs the current faiss-cpu, side by side in the same run.

    .venv/bin/python bench/bench_fast_scan.py [--quick] [--sets siftsmall,siftsmall-x10]
        [--configs 16x4,8x4] [--methods rq,lsq] [--threads 1,2] [--clock wall|cpu] [--pymodule build/python]

For every data set, M × 4 configuration, method and thread count, faiss and tessera each train their
quantizer on the same training rows (faiss: IndexResidualQuantizerFastScan / IndexLocalSearchQuantizerFastScan
with search type ST_norm_rq2x4 / ST_norm_lsq2x4 and its defaults; tessera: ResidualQuantizer /
LocalSearchQuantizer with the same search type, then IndexAdditiveQuantizerFastScan, re-ranking on by
default), add the base set and search the query batch, each in a subprocess of its own (importing both
libraries in one process crashes at exit: two OpenMP runtimes). Reported: search milliseconds for the whole
query batch at k = 10 and k = 100 (the fastest of several runs, wall clock; --clock cpu: the process's CPU
time instead, all threads summed, steadier on a shared machine; use it with --threads 1 and
OMP_WAIT_POLICY=PASSIVE, else idle threads spinning count), and recall@1/10/100 (the
fraction of queries whose true nearest neighbour is among the first 1/10/100 results of the k = 100
search; the same numpy code for both). ×10 and ×100 = faiss time / tessera time (> 1: tessera faster).
Training time is printed for information, not compared. Benchmarks are not tests: nothing here fails on
absolute time.

Data (materialised once as .npy files in OUT/data, so both read the same bytes):
  siftsmall      10,000 × 128 base, its 100 queries and ground truth (../shared/data or TESSERA_DATA)
  siftsmall-x10  100,000 × 128: siftsmall and 9 copies with Gaussian noise (σ = 5, seed 0); 1000 queries:
                 10 noised copies (σ = 5) of the 100 siftsmall queries; exact ground truth computed here
  gmm-100k       bench/datasets.py's 100,000 × 128 mixture; 100 queries from the same mixture
Training rows: the first 10,000 of the base (siftsmall's own base for siftsmall-x10).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import datasets  # noqa: E402
import machine  # noqa: E402

METHODS = {"rq": "RQ", "lsq": "LSQ"}
NTRAIN = 10_000


# ------------------------------------------------------------------------------------------------- data


def exact_nn(base: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Index of each query's nearest base row (squared L2, float64, in chunks)."""
    b = base.astype(np.float64)
    bn = (b * b).sum(1)
    out = np.empty(len(q), dtype=np.int64)
    for i in range(0, len(q), 256):
        qq = q[i:i + 256].astype(np.float64)
        out[i:i + 256] = (bn[None, :] - 2 * qq @ b.T).argmin(1)
    return out


def make_set(name: str, cache: Path) -> Path:
    """OUT/data/NAME.npz with base, train, queries and nn (true nearest neighbour per query); made once."""
    cache.mkdir(parents=True, exist_ok=True)
    p = cache / f"fastscan-{name}.npz"
    if p.exists():
        return p
    if name in ("siftsmall", "siftsmall-x10"):
        x = datasets.read_fvecs(datasets.data_file("siftsmall/siftsmall_base.fvecs"))
        q = datasets.read_fvecs(datasets.data_file("siftsmall/siftsmall_query.fvecs"))
        if name == "siftsmall":
            base, queries = x, q
            nn = datasets.read_ivecs(datasets.data_file("siftsmall/siftsmall_groundtruth.ivecs"))[:, 0].astype(np.int64)
        else:
            rng = np.random.default_rng(0)
            base = np.concatenate([x] + [x + rng.normal(0, 5, x.shape).astype(np.float32) for _ in range(9)])
            queries = np.concatenate([q + rng.normal(0, 5, q.shape).astype(np.float32) for _ in range(10)])
            nn = exact_nn(base, queries)
        train = x
    elif name == "gmm-100k":
        allx = datasets.gaussian_mixture(100_100, 128, seed=20241206)
        base, queries = allx[:100_000], allx[100_000:]
        train = base[:NTRAIN]
        nn = exact_nn(base, queries)
    else:
        raise SystemExit(f"unknown data set {name}")
    tmp = p.with_suffix(".tmp.npz")
    np.savez(tmp, base=np.ascontiguousarray(base, dtype=np.float32), train=np.ascontiguousarray(train, dtype=np.float32),
             queries=np.ascontiguousarray(queries, dtype=np.float32), nn=nn)
    os.replace(tmp, p)
    return p


# ----------------------------------------------------------------------------------------------- worker
def best_time(f, clock=time.perf_counter, min_reps: int = 3, max_reps: int = 50, budget: float = 1.0):
    """(result of the last call, fastest time by clock) over at least min_reps calls, more while under budget s."""
    best, spent, reps, out = float("inf"), 0.0, 0, None
    while reps < min_reps or (spent < budget and reps < max_reps):
        t = clock()
        out = f()
        dt_ = clock() - t
        best, spent, reps = min(best, dt_), spent + dt_, reps + 1
    return out, best


def worker(spec_path: str):
    spec = json.loads(Path(spec_path).read_text())
    t, M, method = spec["threads"], spec["M"], spec["method"]
    z = np.load(spec["data"])
    base, train, q, nn = z["base"], z["train"], z["queries"], z["nn"]
    d = base.shape[1]
    st = "ST_norm_rq2x4" if method == "rq" else "ST_norm_lsq2x4"
    if spec["lib"] == "faiss":
        import faiss
        faiss.omp_set_num_threads(t)
        cls = faiss.IndexResidualQuantizerFastScan if method == "rq" else faiss.IndexLocalSearchQuantizerFastScan
        index = cls(d, M, 4, faiss.METRIC_L2, getattr(faiss.AdditiveQuantizer, st))
        t0 = time.perf_counter()
        index.train(train)
        t1 = time.perf_counter()
        index.add(base)
        extra = {}
    else:
        sys.path.insert(0, spec["pymodule"])
        import tessera
        tessera.set_num_threads(t)
        quant = (tessera.ResidualQuantizer(d, M, 4, search_type=st) if method == "rq"
                 else tessera.LocalSearchQuantizer(d, M, 4, search_type=st))
        t0 = time.perf_counter()
        quant.train(train)
        t1 = time.perf_counter()
        index = tessera.IndexAdditiveQuantizerFastScan(quant, "l2")
        index.add(base)
        if spec.get("rerank") is not None:
            index.rerank_factor = spec["rerank"]
        extra = dict(norm_scale=index.norm_scale, rerank_factor=index.rerank_factor)
    t2 = time.perf_counter()
    clock = time.process_time if spec.get("clock") == "cpu" else time.perf_counter
    _, s10 = best_time(lambda: index.search(q, 10), clock)
    (_, I), s100 = best_time(lambda: index.search(q, 100), clock)
    I = np.asarray(I)
    rec = {f"R@{k}": float(np.mean([nn[i] in I[i, :k] for i in range(len(q))])) for k in (1, 10, 100)}
    out = dict(train_s=t1 - t0, add_s=t2 - t1, search10_ms=s10 * 1e3, search100_ms=s100 * 1e3, nq=len(q), **rec,
               **extra)
    Path(spec["out"]).write_text(json.dumps(out))
    os._exit(0)  # two OpenMP runtimes (faiss's and the system's) may crash at interpreter exit


# ----------------------------------------------------------------------------------------------- parent
def run(spec: dict, args) -> dict:
    work = Path(args.out) / "work"
    work.mkdir(parents=True, exist_ok=True)
    stem = f"fastscan-{spec['lib']}-{spec['set']}-{spec['M']}x4-{spec['method']}-t{spec['threads']}"
    spec = dict(spec, out=str(work / f"{stem}.json"), pymodule=args.pymodule, rerank=args.rerank, clock=args.clock)
    return machine.run_worker(__file__, spec, stem, work, args.peer_env if spec["lib"] == "faiss" else None, args.timeout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="siftsmall and siftsmall-x10, RQ 16x4, 1 and 2 threads")
    ap.add_argument("--sets", default="siftsmall,siftsmall-x10", help="of siftsmall, siftsmall-x10, gmm-100k")
    ap.add_argument("--configs", default="16x4,8x4", help="M x 4, comma-separated")
    ap.add_argument("--methods", default="rq,lsq", help=f"of {','.join(METHODS)}")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rerank", type=int, default=None, help="tessera's rerank_factor (default: the index's, 4)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="search time as wall clock or as the process's CPU time (all threads)")
    ap.add_argument("--out", default=str(machine.SCRATCH / "fast-scan"))
    machine.add_run_options(ap, REPO)
    a = ap.parse_args()
    if a.worker:
        return worker(a.worker)
    if a.quick:
        a.sets, a.configs, a.methods, a.threads = "siftsmall,siftsmall-x10", "16x4", "rq", "1,2"
    a.peer_env = machine.peer_blas_env(a.cli, a.peer_blas)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    print(f"tessera fast-scan search vs faiss — {stamp}{'  (QUICK)' if a.quick else ''}")
    print(f"BLAS: tessera {machine.tessera_blas(a.cli)}; faiss ({a.peer_blas}) {a.peer_env or 'as installed'}; "
          f"load {os.getloadavg()[0]:.1f}")
    results = []
    hdr = (f"{'set':<14} {'M×b':<5} {'meth':<4} {'thr':>3} {'lib':<8} {'nq':>5} {'train s':>7} {'k=10 ms':>8} "
           f"{'k=100 ms':>8} {'R@1':>5} {'R@10':>5} {'R@100':>5} | {'×10':>6} {'×100':>6}")
    print(hdr + "\n" + "-" * len(hdr))
    for s in a.sets.split(","):
        data = make_set(s, Path(a.out) / "data")
        for cfg in a.configs.split(","):
            M, nbits = (int(v) for v in cfg.split("x"))
            if nbits != 4:
                raise SystemExit(f"fast-scan needs 4-bit codebooks, got {cfg}")
            for method in a.methods.split(","):
                for t in (int(v) for v in a.threads.split(",")):
                    spec = dict(set=s, data=str(data), M=M, method=method, threads=t)
                    f = run(dict(spec, lib="faiss"), a)
                    te = run(dict(spec, lib="tessera"), a)
                    results.append(dict(spec, faiss=f, tessera=te))
                    for lib, r in (("faiss", f), ("tessera", te)):
                        if not r.get("ok"):
                            print(f"{s:<14} {cfg:<5} {METHODS[method]:<4} {t:>3} {lib:<8} FAILED: {r.get('error')}")
                            continue
                        tail = ""
                        if lib == "tessera" and f.get("ok"):
                            tail = (f" | {machine.ratio(f['search10_ms'], r['search10_ms'])} "
                                    f"{machine.ratio(f['search100_ms'], r['search100_ms'])}")
                        print(f"{s:<14} {cfg:<5} {METHODS[method]:<4} {t:>3} {lib:<8} {r['nq']:>5} {r['train_s']:>7.1f} "
                              f"{r['search10_ms']:>8.2f} {r['search100_ms']:>8.2f} {r['R@1']:>5.3f} {r['R@10']:>5.3f} "
                              f"{r['R@100']:>5.3f}{tail}", flush=True)
    print(f"k=10 ms, k=100 ms: search of the whole query batch (fastest run, {'CPU time' if a.clock == 'cpu' else 'wall clock'}); ×10, ×100 = faiss ms / "
          "tessera ms (> 1: tessera faster).")
    out = Path(a.out) / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stamp}.json").write_text(json.dumps(dict(stamp=stamp, args={k: str(v) for k, v in vars(a).items()},
                                                       results=results), indent=1))
    print(f"results: {out / (stamp + '.json')}")


if __name__ == "__main__":
    main()
