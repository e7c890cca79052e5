#!/usr/bin/env python3
"""IVF over additive quantizers, tessera vs the current faiss-cpu, side by side in the same run.

    .venv/bin/python bench/bench_ivf_aq.py [--quick] [--sets siftsmall,bigann10k,gmm-100k]
        [--methods rq,lsq] [--configs 4x8,8x8,8x4] [--nlist 32,64] [--nprobe 1,4,16,32] [--threads 1]
        [--search-type decompress] [--pymodule build-codec/python] [--out DIR]

Contenders, each (data set, method, M × nbits, nlist, threads) built in a subprocess of its own (importing
faiss and tessera in one process crashes at exit: two OpenMP runtimes), on the same float32 bytes:

  faiss    faiss.IndexIVFResidualQuantizer(IndexFlatL2(d), d, nlist, M, nbits, METRIC_L2, search_type) or
           faiss.IndexIVFLocalSearchQuantizer(...) with everything else at faiss's defaults (faiss-cpu 1.15.1):
           by_residual = True, coarse k-means cp.niter = 10 on at most 256·nlist rows, the encoder trained on
           the residuals of all base rows (train_encoder_num_vectors() = 262,144 for RQ, 1,048,576 for LSQ,
           both above every set here); RQ: max_beam_size = 5, train_type = Train_progressive_dim,
           cp.niter = 10; LSQ: train_iters 25, encode_ils_iters 16, train_ils_iters 8, icm_iters 4, nperts 4,
           random code init. The values are read back from the objects and stored in the JSON.
  tessera  tessera.IndexIVFResidualQuantizer(d, nlist, M, nbits, search_type=...) or
           tessera.IndexIVFLocalSearchQuantizer(...) with the module's defaults: residual coding (tessera has
           no other mode: faiss's by_residual = True), coarse k-means 20 iterations on at most 256·nlist
           rows, the quantizer trained on the residuals of all base rows; RQ: max_beam_size = 5 (faiss's),
           k-means max_iter 100 / tol 1e-4 / n_init 3 per level; LSQ: faiss's iteration counts, plus its
           own defaults init='auto' (greedy-RQ start for nbits > 4) and encode_greedy_init=True.
           `--tessera-rq` / `--tessera-lsq` (JSON) pass other constructor keywords.

Same nlist, M, nbits, metric (L2), k, nprobe and search type on both sides. The search type defaults to
ST_decompress, the default of both libraries' IVF constructors: faiss's scanner then decodes every probed
code, tessera's uses one lookup table per query and a norm cached at add time (docs/additive-quantizer.md);
`--search-type norm_float` (or any ST_ name) runs both on a stored-norm LUT search instead.

Measured per contender: train seconds and add seconds (wall clock, and CPU seconds of the process,
time.process_time, which is what a shared machine cannot inflate), code bytes per vector, the MSE of the
stored vectors (mean ‖x − x'‖² over the base, x' = reconstruct(), outside the timings), the list sizes,
and for every nprobe the search of the whole query batch at k = 10 (k = 11 on bigann10k, whose queries are
base rows: the self-match is dropped before scoring): fastest wall and fastest CPU time of at least
--min-reps runs (more while under --budget seconds). The labels go back to the driver, which computes
recall@1 and recall@10 for both with the same numpy code: recall@k = |returned top k ∩ true top k| / k,
averaged over queries, the true top 10 computed here exactly (float64, brute force, self excluded).
Ratios: faiss / tessera time (> 1: tessera faster), of CPU and of wall time.

Data: siftsmall and bigann10k (10,000 × 128 base, 100 queries; bench/datasets.py: ../shared/data relative to
the checkout, or TESSERA_DATA; a set whose files are absent is skipped with a message), gmm-100k: 100,000 × 128
rows of datasets.gaussian_mixture (seed 20241206, the same as bench_aq.py) with 100 further rows as queries
(opt-in through --sets: ten times the rows of the others, not run for the figures in the docs). Benchmarks
are not tests: nothing here fails on absolute time.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import datasets  # noqa: E402
import machine  # noqa: E402

K = 10
METHODS = {"rq": "RQ", "lsq": "LSQ"}
LIBS = ("faiss", "tessera")


# ------------------------------------------------------------------------------------------------- data


def exact_top(base: np.ndarray, q: np.ndarray, k: int, self_idx: np.ndarray) -> np.ndarray:
    """The k nearest base rows of each query (squared L2 in float64, ties to the lower row), the query's own
    row (self_idx ≥ 0) excluded."""
    b = base.astype(np.float64)
    bn = (b * b).sum(1)
    out = np.empty((len(q), k), dtype=np.int64)
    for i, qq in enumerate(q.astype(np.float64)):
        d2 = bn - 2 * b @ qq
        if self_idx[i] >= 0:
            d2[self_idx[i]] = np.inf
        cand = np.argpartition(d2, k + 8)[:k + 8]
        exact = ((b[cand] - qq) ** 2).sum(1)
        exact[cand == self_idx[i]] = np.inf
        out[i] = cand[np.lexsort((cand, exact))][:k]
    return out


def make_set(name: str, cache: Path) -> Path | None:
    """CACHE/ivfaq-NAME.npz (base, queries, gt: nq × 10 true nearest, self_idx: −1 or the query's own row);
    made once. None (with a message) when the data files are absent."""
    cache.mkdir(parents=True, exist_ok=True)
    p = cache / f"ivfaq-{name}.npz"
    if p.exists():
        return p
    try:
        if name in ("siftsmall", "bigann10k"):
            base, q, self_idx = datasets.texmex_queries(name)
        elif name == "gmm-100k":
            allx = datasets.gaussian_mixture(100_100, 128, seed=20241206)
            base, q = allx[:100_000], allx[100_000:]
            self_idx = np.full(len(q), -1, dtype=np.int64)
        else:
            raise SystemExit(f"unknown data set {name} (siftsmall, bigann10k, gmm-100k)")
    except FileNotFoundError as e:
        print(f"note: {name} skipped: {e}")
        return None
    base, q = np.ascontiguousarray(base, dtype=np.float32), np.ascontiguousarray(q, dtype=np.float32)
    gt = exact_top(base, q, K, self_idx)
    tmp = p.with_suffix(".tmp.npz")
    np.savez(tmp, base=base, queries=q, gt=gt, self_idx=self_idx)
    os.replace(tmp, p)
    return p


def recalls(I: np.ndarray, gt: np.ndarray, self_idx: np.ndarray) -> dict:
    """recall@1 and recall@10 (|top k ∩ true top k| / k, mean over queries) of the labels I (nq × k or k + 1),
    after dropping each query's self-match; the same code for every contender."""
    rows = []
    for i, row in enumerate(I):
        row = row[row != self_idx[i]] if self_idx[i] >= 0 else row
        rows.append(row[:K])
    return {f"R@{k}": float(np.mean([len(set(r[:k].tolist()) & set(g[:k].tolist())) / k for r, g in zip(rows, gt)]))
            for k in (1, K)}


# ----------------------------------------------------------------------------------------------- worker
def timed(f):
    """(result, wall seconds, CPU seconds of this process) of f()."""
    w, c = time.perf_counter(), time.process_time()
    out = f()
    return out, time.perf_counter() - w, time.process_time() - c


def best_of(f, min_reps: int, budget: float, max_reps: int = 200):
    """(last result, fastest wall, fastest CPU) over at least min_reps calls, more while under budget s."""
    bw = bc = float("inf")
    spent, reps, out = 0.0, 0, None
    while reps < min_reps or (spent < budget and reps < max_reps):
        out, w, c = timed(f)
        bw, bc, spent, reps = min(bw, w), min(bc, c), spent + w, reps + 1
    return out, bw, bc, reps


def build_faiss(spec, d):
    import faiss
    faiss.omp_set_num_threads(spec["threads"])
    st = getattr(faiss.AdditiveQuantizer, f"ST_{spec['search_type']}")
    coarse = faiss.IndexFlatL2(d)
    if spec["method"] == "rq":
        ix = faiss.IndexIVFResidualQuantizer(coarse, d, spec["nlist"], spec["M"], spec["nbits"], faiss.METRIC_L2, st)
        aq = ix.rq
        settings = dict(max_beam_size=int(aq.max_beam_size), train_type=int(aq.train_type), niter=int(aq.cp.niter))
    else:
        ix = faiss.IndexIVFLocalSearchQuantizer(coarse, d, spec["nlist"], spec["M"], spec["nbits"], faiss.METRIC_L2, st)
        aq = ix.lsq
        settings = {a: getattr(aq, a) for a in ("train_iters", "encode_ils_iters", "train_ils_iters", "icm_iters",
                                                "nperts", "p", "lambd")}
    settings.update(by_residual=bool(ix.by_residual), coarse_niter=int(ix.cp.niter),
                    coarse_max_points_per_centroid=int(ix.cp.max_points_per_centroid),
                    train_encoder_num_vectors=int(ix.train_encoder_num_vectors()), search_type=int(aq.search_type))

    def search(q, k, p, _coarse=coarse):  # _coarse: keeps the coarse quantizer alive as long as the index
        ix.nprobe = p
        return ix.search(q, k)[1]

    def reconstruct_all(n):
        ix.make_direct_map()
        return ix.reconstruct_n(0, n)

    def list_sizes():
        return [int(ix.get_list_size(i)) for i in range(spec["nlist"])]

    return ix, search, reconstruct_all, list_sizes, settings, dict(faiss_version=faiss.__version__)


def build_tessera(spec, d):
    sys.path.insert(0, spec["pymodule"])
    import tessera
    tessera.set_num_threads(spec["threads"])
    st = getattr(tessera, f"ST_{spec['search_type']}")
    kw = spec.get("tessera_kw", {})
    if spec["method"] == "rq":
        ix = tessera.IndexIVFResidualQuantizer(d, spec["nlist"], spec["M"], spec["nbits"], search_type=st, **kw)
        settings = dict(max_beam_size=int(ix.quantizer.max_beam_size))
    else:
        ix = tessera.IndexIVFLocalSearchQuantizer(d, spec["nlist"], spec["M"], spec["nbits"], search_type=st, **kw)
        settings = {a: getattr(ix.quantizer, a, None) for a in ("train_iters", "encode_ils_iters", "train_ils_iters",
                                                                "icm_iters", "nperts", "p", "lambd")}
    settings.update(kw)

    def search(q, k, p):
        return ix.search(q, k, nprobe=p)[1]

    def reconstruct_all(n):
        return np.stack([ix.reconstruct(i) for i in range(n)])

    return ix, search, reconstruct_all, lambda: [int(v) for v in ix.list_sizes()], settings, \
        dict(module=tessera.__file__, version=tessera.__version__, build_info=dict(tessera.build_info()))


def worker(spec_path: str):
    spec = json.loads(Path(spec_path).read_text())
    load1 = os.getloadavg()[0]
    z = np.load(spec["data"])
    base, q, self_idx = z["base"], z["queries"], z["self_idx"]
    n, d = base.shape
    ix, search, reconstruct_all, list_sizes, settings, info = (build_faiss if spec["lib"] == "faiss"
                                                                 else build_tessera)(spec, d)
    _, train_w, train_c = timed(lambda: ix.train(base))
    _, add_w, add_c = timed(lambda: ix.add(base))
    k = K + (1 if (self_idx >= 0).any() else 0)
    curve, labels = [], {}
    for p in spec["nprobes"]:
        I, w, c, reps = best_of(lambda: search(q, k, p), spec["min_reps"], spec["budget"])
        labels[f"np{p}"] = np.asarray(I, dtype=np.int64)
        curve.append(dict(nprobe=p, search_ms=1e3 * w, search_cpu_ms=1e3 * c, reps=reps))
    rec = np.asarray(reconstruct_all(n), dtype=np.float32)
    np.savez(spec["labels"], **labels)
    out = dict(train_s=train_w, train_cpu_s=train_c, add_s=add_w, add_cpu_s=add_c, curve=curve,
               mse=float(((base.astype(np.float64) - rec) ** 2).sum(1).mean()), code_size=int(ix.code_size),
               list_sizes=list_sizes(), settings=settings, load1=load1, load1_end=os.getloadavg()[0], nq=len(q), **info)
    Path(spec["out"]).write_text(json.dumps(out, default=float))
    os._exit(0)  # two OpenMP runtimes (faiss's and the system's) may crash at interpreter exit


# ----------------------------------------------------------------------------------------------- parent
def snapshot_module(args, out: Path) -> str:
    """Copy the tessera package of --pymodule into OUT/module; every worker imports the copy, so a rebuild of
    the build tree during the run cannot mix two builds."""
    src = Path(args.pymodule) / "tessera"
    so = sorted(src.glob("_tessera*.so"))
    if not so:
        raise SystemExit(f"no tessera extension module in {src} (--pymodule)")
    dst = out / "module" / "tessera"
    shutil.copytree(src, dst, dirs_exist_ok=True)
    args.pymodule = str(dst.parent)
    mtime = dt.datetime.fromtimestamp(so[0].stat().st_mtime).strftime("%Y-%m-%d %H:%M:%S")
    sha = hashlib.sha256(so[0].read_bytes()).hexdigest()[:12]
    return f"{src}/{so[0].name} of {mtime}, sha256 {sha}… (copied to {dst})"


def run(spec: dict, args) -> dict:
    work = Path(args.out) / "work"
    work.mkdir(parents=True, exist_ok=True)
    stem = (f"{spec['lib']}-{spec['set']}-{spec['method']}-{spec['M']}x{spec['nbits']}-nl{spec['nlist']}"
            f"-{spec['search_type']}-t{spec['threads']}")
    spec = dict(spec, out=str(work / f"{stem}.json"), labels=str(work / f"{stem}.labels.npz"),
                pymodule=args.pymodule, min_reps=args.min_reps, budget=args.budget)
    if spec["lib"] == "tessera":
        spec["tessera_kw"] = json.loads(args.tessera_rq if spec["method"] == "rq" else args.tessera_lsq)
    r = machine.run_worker(__file__, spec, stem, work, args.peer_env if spec["lib"] == "faiss" else None,
                           args.timeout, tail=600)
    if r.get("ok"):
        z = np.load(spec["data"])
        with np.load(spec["labels"]) as lab:
            for c in r["curve"]:
                c.update(recalls(lab[f"np{c['nprobe']}"], z["gt"], z["self_idx"]))
    return r


def fmt_s(w, c) -> str:
    return f"{w:7.2f}/{c:<7.2f}"


def print_case(case: dict):
    f, t = case["faiss"], case["tessera"]
    print(f"\n{case['set']}  {METHODS[case['method']]} {case['M']}x{case['nbits']}  nlist={case['nlist']}  "
          f"ST_{case['search_type']}  threads={case['threads']}  (seconds: wall/CPU)")
    for lib, r in (("faiss", f), ("tessera", t)):
        if not r.get("ok"):
            print(f"  {lib:<8} FAILED: {r.get('error')}")
            continue
        ls = r["list_sizes"]
        print(f"  {lib:<8} train {fmt_s(r['train_s'], r['train_cpu_s'])} add {fmt_s(r['add_s'], r['add_cpu_s'])} "
              f"MSE {r['mse']:10.1f}  {r['code_size']:>2} B/vec  lists {min(ls)}–{max(ls)}  load {r['load1']:.1f}")
    if not (f.get("ok") and t.get("ok")):
        return
    print(f"  ratios faiss/tessera: train CPU {machine.ratio(f['train_cpu_s'], t['train_cpu_s']).strip()} "
          f"(wall {machine.ratio(f['train_s'], t['train_s']).strip()}), add CPU "
          f"{machine.ratio(f['add_cpu_s'], t['add_cpu_s']).strip()} (wall {machine.ratio(f['add_s'], t['add_s']).strip()})"
          f"; MSE tessera/faiss {t['mse'] / f['mse']:.3f}")
    hdr = (f"  {'nprobe':>6} | {'faiss ms':>8} {'cpu ms':>8} {'R@1':>5} {'R@10':>5} | {'tess ms':>8} {'cpu ms':>8} "
           f"{'R@1':>5} {'R@10':>5} | {'f/t cpu':>7} {'f/t wall':>8}")
    print(hdr + "\n  " + "-" * (len(hdr) - 2))
    for cf, ct in zip(f["curve"], t["curve"]):
        print(f"  {cf['nprobe']:>6} | {cf['search_ms']:>8.2f} {cf['search_cpu_ms']:>8.2f} {cf['R@1']:>5.2f} "
              f"{cf['R@10']:>5.3f} | {ct['search_ms']:>8.2f} {ct['search_cpu_ms']:>8.2f} {ct['R@1']:>5.2f} "
              f"{ct['R@10']:>5.3f} | {machine.ratio(cf['search_cpu_ms'], ct['search_cpu_ms']):>7} "
              f"{machine.ratio(cf['search_ms'], ct['search_ms']):>8}", flush=True)


def print_summary(cases: list, nprobes: list):
    print("\nsummary: faiss / tessera CPU time (> 1: tessera faster); R@10 at the largest nprobe, faiss → tessera")
    hdr = (f"{'set':<10} {'AQ':<4} {'M×b':<4} {'nl':>3} {'ST':<10} {'thr':>3} | {'train×':>6} {'add×':>6} | "
           + " ".join(f"{'np' + str(p) + '×':>6}" for p in nprobes) + f" | {'R@10 f → t':>13} {'MSE t/f':>7}")
    print(hdr + "\n" + "-" * len(hdr))
    for c in cases:
        f, t = c["faiss"], c["tessera"]
        head = (f"{c['set']:<10} {METHODS[c['method']]:<4} {str(c['M']) + 'x' + str(c['nbits']):<4} {c['nlist']:>3} "
                f"{c['search_type']:<10} {c['threads']:>3}")
        if not (f.get("ok") and t.get("ok")):
            print(head + " | failed")
            continue
        sr = {cf["nprobe"]: machine.ratio(cf["search_cpu_ms"], ct["search_cpu_ms"]) for cf, ct in zip(f["curve"], t["curve"])}
        print(f"{head} | {machine.ratio(f['train_cpu_s'], t['train_cpu_s'])} {machine.ratio(f['add_cpu_s'], t['add_cpu_s'])} | "
              + " ".join(f"{sr.get(p, '     —'):>6}" for p in nprobes)
              + f" | {f['curve'][-1]['R@10']:.3f} → {t['curve'][-1]['R@10']:.3f} {t['mse'] / f['mse']:>7.3f}")
    # 100 queries give recall@10 a standard error of ~0.02 per case: the mean over cases says more
    for m in METHODS:
        ok = [c for c in cases if c["method"] == m and c["faiss"].get("ok") and c["tessera"].get("ok")]
        if ok:
            dr = [ct["R@10"] - cf["R@10"] for c in ok for cf, ct in zip(c["faiss"]["curve"], c["tessera"]["curve"])]
            d1 = [ct["R@1"] - cf["R@1"] for c in ok for cf, ct in zip(c["faiss"]["curve"], c["tessera"]["curve"])]
            mr = np.exp(np.mean([np.log(c["tessera"]["mse"] / c["faiss"]["mse"]) for c in ok]))
            print(f"{METHODS[m]}: over {len(ok)} cases × nprobe, tessera − faiss recall@10 {np.mean(dr):+.3f} "
                  f"(min {min(dr):+.3f}, max {max(dr):+.3f}), recall@1 {np.mean(d1):+.3f}; MSE tessera/faiss "
                  f"(geometric mean) {mr:.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true",
                    help="siftsmall, RQ and LSQ 4x8, nlist 32, nprobe 1,4,16, 1 thread (under 2 minutes)")
    ap.add_argument("--sets", default="siftsmall,bigann10k", help="of siftsmall, bigann10k, gmm-100k (opt-in)")
    ap.add_argument("--methods", default="rq,lsq", help="of rq, lsq")
    ap.add_argument("--configs", default="4x8,8x8,8x4", help="M x nbits, comma-separated")
    ap.add_argument("--nlist", default="32,64", help="coarse lists, comma-separated")
    ap.add_argument("--nprobe", default="1,4,16,32", help="nprobe sweep (values above nlist dropped)")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--search-type", default="decompress",
                    help="search type(s) of both sides, ST_ names without the prefix, comma-separated (decompress: "
                         "both libraries' default; norm_float, norm_qint8, ...)")
    ap.add_argument("--tessera-rq", default="{}", help="JSON of extra tessera.ResidualQuantizer keywords")
    ap.add_argument("--tessera-lsq", default="{}", help="JSON of extra tessera.LocalSearchQuantizer keywords")
    ap.add_argument("--min-reps", type=int, default=5, help="timed searches per nprobe, at least")
    ap.add_argument("--budget", type=float, default=0.5, help="more timed searches while under this many s")
    ap.add_argument("--out", default=None, help="default $TESSERA_BENCH_OUT/ivfaq/ivfaq-<timestamp>")
    ap.add_argument("--data-cache", default=str(machine.SCRATCH / "ivfaq" / "data"))
    machine.add_run_options(ap, REPO)
    a = ap.parse_args()
    if a.worker:
        return worker(a.worker)
    if a.quick:
        a.sets, a.methods, a.configs, a.nlist, a.nprobe, a.threads = "siftsmall", "rq,lsq", "4x8", "32", "1,4,16", "1"
        a.min_reps, a.budget = 3, 0.1
    if a.cli == str(REPO / "build" / "tessera") and (Path(a.pymodule).parent / "tessera").is_file():
        a.cli = str(Path(a.pymodule).parent / "tessera")  # the CLI of the same build tree, for its BLAS line
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    a.out = a.out or str(machine.SCRATCH / "ivfaq" / f"ivfaq-{stamp}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    a.peer_env = machine.peer_blas_env(a.cli, a.peer_blas)
    module = snapshot_module(a, out)
    t_start = time.perf_counter()
    print(f"tessera IVF additive quantizers vs faiss — {stamp}{'  (QUICK)' if a.quick else ''}")
    print(f"BLAS: tessera {machine.tessera_blas(a.cli)}; faiss ({a.peer_blas}) {a.peer_env or 'as installed'}; "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start (shared machine: compare CPU-time ratios)")
    print(f"tessera module: {module}")
    cases = []
    nprobe_all = sorted({int(v) for v in a.nprobe.split(",")})
    for s in a.sets.split(","):
        data = make_set(s, Path(a.data_cache))
        if data is None:
            continue
        for nlist in (int(v) for v in a.nlist.split(",")):
            nprobes = [p for p in nprobe_all if p <= nlist]
            for cfg in a.configs.split(","):
                M, nbits = (int(v) for v in cfg.split("x"))
                for method in a.methods.split(","):
                    for st in a.search_type.split(","):
                        for t in (int(v) for v in a.threads.split(",")):
                            spec = dict(set=s, data=str(data), method=method, M=M, nbits=nbits, nlist=nlist,
                                        nprobes=nprobes, threads=t, search_type=st)
                            case = {k: v for k, v in spec.items() if k != "data"}
                            for lib in LIBS:
                                case[lib] = run(dict(spec, lib=lib), a)
                            cases.append(case)
                            print_case(case)
    print_summary(cases, nprobe_all)
    print("train×, add×, npP× = faiss CPU seconds / tessera CPU seconds (process_time of the contender's process);"
          " the wall-clock ratios are in the blocks above and in the JSON.")
    (out / "results.json").write_text(json.dumps(dict(stamp=stamp, args={k: str(v) for k, v in vars(a).items()},
                                                      module=module, cases=cases), indent=1, default=float))
    print(f"results: {out / 'results.json'}  ({time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
