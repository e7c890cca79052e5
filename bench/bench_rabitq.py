#!/usr/bin/env python3
"""Extended RaBitQ IVF search, tessera vs RaBitQ-Library (rabitqlib) and faiss-cpu, side by side in the same run.

    .venv/bin/python bench/bench_rabitq.py [--quick] [--sets siftsmall,bigann10k,fashion-mnist,gmm-1m]
        [--bits 1,2,4,6,8] [--nprobe 1,2,4,...] [--threads 1,2] [--nlist N] [--out DIR] [--pymodule build/python]

Contenders (each in a subprocess of its own: importing faiss and tessera in one process crashes at exit,
two OpenMP runtimes):
  tessera       tessera.IVFRaBitQ(d, nlist, bits) (Hadamard rotation, exact code search), set_centroids + add,
                search with the module's default (two stages: 1-bit fast scan, full codes for the survivors)
  tessera-ss    the same with search(single_stage=True) (opt-in through --libs)
  tessera-rrR   the same index searched with rerank=R (stage 3: the max(R, k) best by estimate get exact distances
                from the raw vectors the index keeps), one contender per R of --rerank (default none; e.g.
                --rerank 50,100; R = auto: tessera-rrauto, re-ranking by the error bound, every value exact).
                The other contenders never re-rank: compare its recall with care
  rabitqlib     rabitqlib.IvfIndex(d, n, nlist, bits, "l2").build(x, centroids, list ids) (its defaults:
                FastScan 1-bit first stage, high_accuracy=None)
  faiss-rbq     faiss.IndexPreTransform(RandomRotationMatrix, IndexIVFRaBitQ(nb_bits=bits)) (qb = 4, its default)
  faiss-rbqfs   the same with IndexIVFRaBitQFastScan (qb = 8, its default)
  faiss-pqfs    faiss.IndexIVFPQFastScan(M × 4 bits) with M the largest divisor of d with M ≤ bits·d/4, i.e. the
                same code bits as RaBitQ's bits·d (without the per-vector factors), or fewer when no divisor
                fits; only for bits ≤ 4 (M ≤ d)
Every contender gets the SAME coarse partition: tessera's k-means (IVFRaBitQ.train) is run once per data set,
its centroids are given to everyone, and each base row goes to its exact nearest centroid (numpy, float64);
rabitqlib receives these list ids, faiss IVFRaBitQ gets them through add_core (contrib.ivf_tools.add_preassigned),
tessera through add(x, lists) (its own assign(x) is timed apart and compared with them). The faiss fast-scan
indexes' add_core stores codes their scan cannot read (recall ≈ 0 in faiss-cpu 1.15.1), so they add() and assign
through their IndexFlatL2 holding the same centroids; the run counts the rows that land in another list.

Measured for every (data set, bits, threads, contender): build seconds, wall and CPU (process time) — the
encoding of the base rows into the shared lists (tessera add(x, lists), rabitqlib build(x, centroids, lists),
faiss add; faiss's encoder training counted in) — and, apart, tessera's own coarse assignment (assign(x), what
add(x) without lists does first; rabitqlib is handed it) and, once per set, the coarse k-means; and for every nprobe of the sweep: search seconds of the whole query batch at k = 10 (the fastest
of several runs, wall clock) → QPS, recall@1/10 from that search and recall@100 from a k = 100 search
(recall@k = |returned top k ∩ true top k| / k, averaged over queries). Printed: a table of recall@10 and QPS per
nprobe, then per bits the QPS at a matched recall@10 of 0.90 and 0.95 (log-QPS interpolated linearly in recall
between the two nprobe values around the target) with the ratios tessera / rabitqlib and tessera / faiss.
Written into OUT: results.json, curves.csv (one row per contender / data set / bits / nprobe / threads) and
rabitq-t<threads>.png (recall@10 vs QPS, log QPS, one panel per data set, one line per contender × bits).
Benchmarks are not tests: nothing here fails on absolute time.

Data (materialised once as .npz in --data-cache, default $TESSERA_BENCH_OUT/rabitq/data, $TESSERA_BENCH_OUT
being tessera-bench in the temporary directory unless set):
  siftsmall      10,000 × 128 base, its 100 queries and top-100 ground truth (../shared/data or TESSERA_DATA)
  bigann10k      10,000 × 128 (uint8 → float32); its 100 queries are base rows 0..99: the self-match is dropped
                 from the results and the ground truth (top 100 of the other rows, computed exactly here)
  fashion-mnist  60,000 × 784 train images (Debian's dataset-fashion-mnist, /usr/share/datasets/fashion-mnist),
                 the first --fmnist-queries (1000) test images, ground truth from shared/data's top-100 file;
                 skipped with a note when the images are absent
  gmm-1m         bench/datasets.py's 1,000,000 × 128 Gaussian mixture; 1000 queries = rows 1,000,000.. of the
                 same mixture; exact top-100 computed here (slow: opt-in through --sets)
nlist (unless --nlist): 4·√n rounded to a power of two, at most n/128 rounded down to one (lists of ≥ 128 rows on
average): 64 for 10k, 256 for 60k, 4096 for 1M.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import hashlib
import json
import math
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

LIBS = {"tessera": "tessera", "tessera-ss": "tessera single stage", "rabitqlib": "rabitqlib", "faiss-rbq": "faiss IVFRaBitQ",
        "faiss-rbqfs": "faiss IVFRaBitQFastScan", "faiss-pqfs": "faiss IVFPQFastScan"}
KMAX = 100
FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


# ------------------------------------------------------------------------------------------------- data


def read_idx_gz(path: Path) -> np.ndarray:
    """MNIST idx (gzip) of uint8 images → n × (rows·cols) float32."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, n, r, c = (int.from_bytes(raw[i:i + 4], "big") for i in range(0, 16, 4))
    if magic != 0x0803:
        raise ValueError(f"{path}: not an idx3 uint8 file (magic {magic:#x})")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, r * c).astype(np.float32)


def exact_topk(base: np.ndarray, q: np.ndarray, k: int, exclude=None) -> np.ndarray:
    """The k nearest base rows of each query (squared L2): float32 BLAS candidates (k + 32 per base chunk),
    re-ranked in float64. exclude[i] (or -1) is a row never returned for query i (its self-match)."""
    bn = (base.astype(np.float64) ** 2).sum(1).astype(np.float32)
    out = np.empty((len(q), k), dtype=np.int64)
    kc = k + 32
    for i in range(0, len(q), 256):
        qq = q[i:i + 256]
        cand = []
        for j in range(0, len(base), 200_000):
            d2 = bn[None, j:j + 200_000] - 2 * qq @ base[j:j + 200_000].T
            if exclude is not None:
                for r, e in enumerate(exclude[i:i + 256]):
                    if j <= e < j + 200_000:
                        d2[r, e - j] = np.inf
            part = np.argpartition(d2, min(kc, d2.shape[1] - 1), axis=1)[:, :kc]
            cand.append(part + j)
        cand = np.concatenate(cand, axis=1)
        exact = ((base[cand].astype(np.float64) - qq[:, None, :].astype(np.float64)) ** 2).sum(-1)
        if exclude is not None:
            exact[cand == np.asarray(exclude[i:i + 256])[:, None]] = np.inf
        order = np.argsort(exact, axis=1, kind="stable")[:, :k]
        out[i:i + 256] = np.take_along_axis(cand, order, axis=1)
    return out


def make_set(name: str, cache: Path, args) -> Path | None:
    """CACHE/rabitq-NAME.npz with base, queries, gt (nq × 100 true nearest, self excluded) and self_idx (-1:
    none); made once. None (and a note) when the data are absent."""
    cache.mkdir(parents=True, exist_ok=True)
    suffix = f"-q{args.fmnist_queries}" if name == "fashion-mnist" else ""
    p = cache / f"rabitq-{name}{suffix}.npz"
    if p.exists():
        return p
    t0 = time.perf_counter()
    if name == "siftsmall":
        base, q, self_idx = datasets.texmex_queries(name)
        gt = datasets.read_ivecs(datasets.data_file("siftsmall/siftsmall_groundtruth.ivecs"))[:, :KMAX].astype(np.int64)
    elif name == "bigann10k":
        base, q, self_idx = datasets.texmex_queries(name)
        gt = exact_topk(base, q, KMAX, exclude=self_idx)  # the file's 100 columns hold only 99 others
    elif name == "fashion-mnist":
        tr, te = FMNIST_DIR / "train-images-idx3-ubyte.gz", FMNIST_DIR / "t10k-images-idx3-ubyte.gz"
        if not (tr.is_file() and te.is_file()):
            print(f"note: {FMNIST_DIR} has no Fashion-MNIST images (apt-get install dataset-fashion-mnist): "
                  "fashion-mnist skipped")
            return None
        base = read_idx_gz(tr)
        q = read_idx_gz(te)[:args.fmnist_queries]
        gt = datasets.read_ivecs(datasets.data_file("fashion-mnist/fashion-mnist_groundtruth_l2_top100.ivecs"))
        gt = gt[:len(q), :KMAX].astype(np.int64)
        self_idx = np.full(len(q), -1)
    elif name == "gmm-1m":
        base = datasets.load("gmm-1m", cache)
        q = datasets.gaussian_mixture(1_001_000, 128, normalize=False)[1_000_000:]
        gt = exact_topk(base, q, KMAX)
        self_idx = np.full(len(q), -1)
    else:
        raise SystemExit(f"unknown data set {name}")
    tmp = p.with_suffix(".tmp.npz")
    np.savez(tmp, base=np.ascontiguousarray(base, dtype=np.float32), queries=np.ascontiguousarray(q, dtype=np.float32),
             gt=gt, self_idx=self_idx.astype(np.int64))
    os.replace(tmp, p)
    print(f"  (data set {name} prepared in {time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
    return p


def default_nlist(n: int) -> int:
    a = 2 ** round(math.log2(4 * math.sqrt(n)))
    b = 2 ** int(math.floor(math.log2(max(1, n // 128))))
    return max(1, min(a, b))


def nearest_centroid(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    c64 = c.astype(np.float64)
    cn = (c64 * c64).sum(1)
    out = np.empty(len(x), dtype=np.int64)
    for i in range(0, len(x), 8192):
        out[i:i + 8192] = (cn[None, :] - 2 * x[i:i + 8192].astype(np.float64) @ c64.T).argmin(1)
    return out


# ----------------------------------------------------------------------------------------------- worker
def best_time(f, min_reps: int, budget: float, max_reps: int = 50):
    """(result of the last call, fastest wall time) over at least min_reps calls, more while under budget s."""
    best, spent, reps, out = float("inf"), 0.0, 0, None
    while reps < min_reps or (spent < budget and reps < max_reps):
        t = time.perf_counter()
        out = f()
        dt_ = time.perf_counter() - t
        best, spent, reps = min(best, dt_), spent + dt_, reps + 1
    return out, best


def recall(I: np.ndarray, gt: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(I[i, :k].tolist()) & set(gt[i, :k].tolist())) / k for i in range(len(gt))]))


def drop_self(I: np.ndarray, self_idx: np.ndarray, k: int) -> np.ndarray:
    """Results of a k + 1 search without each query's self-match (the first k others)."""
    out = np.empty((len(I), k), dtype=np.int64)
    for i, row in enumerate(I):
        row = row[row != self_idx[i]] if self_idx[i] >= 0 else row
        out[i] = row[:k]
    return out


def prep_worker(spec: dict):
    """Train tessera's coarse k-means once; write the centroids."""
    sys.path.insert(0, spec["pymodule"])
    import tessera
    tessera.set_num_threads(spec["threads"])
    base = np.load(spec["data"])["base"]
    ix = tessera.IVFRaBitQ(base.shape[1], spec["nlist"], bits=1, seed=spec["seed"])
    t0, c0 = time.perf_counter(), time.process_time()
    ix.train(base)
    out = dict(train_s=time.perf_counter() - t0, train_cpu_s=time.process_time() - c0, threads=spec["threads"])
    np.save(spec["centroids"], np.ascontiguousarray(ix.centroids, dtype=np.float32))
    return out


def rerank_of(lib: str) -> int | str:
    """R of a 'tessera-rrR' contender ("auto" for tessera-rrauto), else 0."""
    if not lib.startswith("tessera-rr"):
        return 0
    r = lib[len("tessera-rr"):]
    return r if r == "auto" else int(r)


def search_worker(spec: dict):
    lib, t, bits = spec["lib"], spec["threads"], spec["bits"]
    z = np.load(spec["data"])
    base, q, gt, self_idx = z["base"], z["queries"], z["gt"], z["self_idx"]
    part = np.load(spec["partition"])
    cent, assign = part["centroids"], part["assign"]
    n, d = base.shape
    nlist = len(cent)
    extra = {}
    if lib in ("tessera", "tessera-ss") or rerank_of(lib):
        sys.path.insert(0, spec["pymodule"])
        import tessera
        tessera.set_num_threads(t)
        # The raw vectors (4·d bytes per row, for re-ranking) only where they are used: rabitqlib keeps none.
        ix = tessera.IVFRaBitQ(d, nlist, bits=bits, seed=spec["seed"], keep_vectors=bool(rerank_of(lib)))
        ix.set_centroids(cent)
        # The coarse assignment (what add(x) does first, and what rabitqlib is handed) timed apart; then the
        # RaBitQ encoding alone, on the shared partition's lists (rabitqlib's input).
        t0, c0 = time.perf_counter(), time.process_time()
        own = ix.assign(base)
        extra["assign_s"], extra["assign_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
        extra["assign_mismatch"] = int((own != assign).sum())
        t0, c0 = time.perf_counter(), time.process_time()
        ix.add(base, lists=assign)
        build_s, build_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        sizes = np.asarray(ix.list_sizes)
        extra["list_size_mismatch"] = int(np.abs(sizes - np.bincount(assign, minlength=nlist)).sum() // 2)
        # the packed layout of docs/rabitq.md: top bits, other bits, ‖r‖, 3 floats per code level (the raw
        # vectors the index keeps for re-ranking, 4·d bytes, not counted)
        extra["bytes_per_vec"] = (d + 7) // 8 + (d * (bits - 1) + 7) // 8 + 4 + 12 * (1 if bits == 1 else 2)
        extra["version"] = getattr(tessera, "__version__", "?")

        kw = dict(single_stage=True) if lib == "tessera-ss" else dict(rerank=rerank_of(lib)) if rerank_of(lib) else {}

        def search(k, p):
            return np.asarray(ix.search(q, k, nprobe=p, **kw)[1])
    elif lib == "rabitqlib":
        import rabitqlib
        ix = rabitqlib.IvfIndex(d, n, nlist, bits, "l2")
        lists32 = assign.astype(np.uint32)
        t0, c0 = time.perf_counter(), time.process_time()
        ix.build(base, cent, lists32, num_threads=t)
        build_s, build_cpu_s = time.perf_counter() - t0, time.process_time() - c0

        def search(k, p):
            out = ix.search(q, k, p, num_threads=t)
            lab = out[0] if np.asarray(out[0]).dtype.kind in "iu" else out[1]
            return np.asarray(lab).reshape(len(q), k).astype(np.int64)
    else:
        import faiss
        from faiss.contrib.ivf_tools import add_preassigned
        faiss.omp_set_num_threads(t)
        extra["faiss_version"] = faiss.__version__
        if lib == "faiss-pqfs":
            M = max(m for m in range(1, d + 1) if d % m == 0 and m <= bits * d // 4)
            quantizer = faiss.IndexFlatL2(d)
            quantizer.add(cent)
            ivf = faiss.IndexIVFPQFastScan(quantizer, d, nlist, M, 4, faiss.METRIC_L2)
            xin, index = base, ivf
            extra["M"] = M
        else:
            rr = faiss.RandomRotationMatrix(d, d)
            rr.init(spec["seed"])
            quantizer = faiss.IndexFlatL2(d)
            quantizer.add(rr.apply(cent))
            if lib == "faiss-rbq":
                ivf = faiss.IndexIVFRaBitQ(quantizer, d, nlist, faiss.METRIC_L2, True, bits)
            else:
                ivf = faiss.IndexIVFRaBitQFastScan(quantizer, d, nlist, faiss.METRIC_L2, 32, True, bits)
            extra["qb"] = int(ivf.qb)
            xin = rr.apply(base)
        xin = np.ascontiguousarray(xin, dtype=np.float32)
        t0, c0 = time.perf_counter(), time.process_time()
        ivf.train(xin)  # the quantizer holds nlist centroids: only the encoder trains
        if lib == "faiss-rbq":
            add_preassigned(ivf, xin, assign.astype(np.int64))
        else:  # the fast-scan indexes' add_core leaves codes unpacked (faiss 1.15.1): their own nearest centroid
            ivf.add(xin)
        build_s, build_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        if lib != "faiss-rbq":
            extra["assign_mismatch"] = int((quantizer.assign(xin, 1).ravel() != assign).sum())
        index = ivf if lib == "faiss-pqfs" else faiss.IndexPreTransform(rr, ivf)  # after training: is_trained
        sizes = np.array([ivf.get_list_size(i) for i in range(nlist)])
        extra["list_size_mismatch"] = int(np.abs(sizes - np.bincount(assign, minlength=nlist)).sum() // 2)
        extra["bytes_per_vec"] = int(ivf.code_size)

        def search(k, p):
            ivf.nprobe = p
            return np.asarray(index.search(q, k)[1])

    has_self = bool((self_idx >= 0).any())
    ks = 1 if has_self else 0
    curve = []
    for p in spec["nprobes"]:
        I10, s10 = best_time(lambda: search(10 + ks, p), spec["min_reps"], spec["budget"])
        I100, s100 = best_time(lambda: search(KMAX + ks, p), 1, 0.0)
        if has_self:
            I10, I100 = drop_self(I10, self_idx, 10), drop_self(I100, self_idx, KMAX)
        curve.append(dict(nprobe=p, search_s=s10, qps=len(q) / s10, search100_s=s100,
                          R1=recall(I10, gt, 1), R10=recall(I10, gt, 10), R100=recall(I100, gt, KMAX)))
    return dict(build_s=build_s, build_cpu_s=build_cpu_s, nq=len(q), n=n, d=d, nlist=nlist, curve=curve, **extra)


def worker(spec_path: str):
    spec = json.loads(Path(spec_path).read_text())
    load1 = os.getloadavg()[0]
    out = prep_worker(spec) if spec["lib"] == "prep" else search_worker(spec)
    out["load1"] = load1
    Path(spec["out"]).write_text(json.dumps(out))
    os._exit(0)  # two OpenMP runtimes (faiss's and the system's) may crash at interpreter exit


# ----------------------------------------------------------------------------------------------- parent
def run(spec: dict, stem: str, args) -> dict:
    work = Path(args.out) / "work"
    work.mkdir(parents=True, exist_ok=True)
    spec = dict(spec, out=str(work / f"{stem}.json"), pymodule=args.pymodule, seed=args.seed,
                min_reps=args.min_reps, budget=args.budget)
    return machine.run_worker(__file__, spec, stem, work, args.peer_env if spec["lib"].startswith("faiss") or spec["lib"] == "rabitqlib" else None, args.timeout, tail=400)


def partition(name: str, data: Path, nlist: int, args) -> Path:
    """CACHE/rabitq-part-NAME-NLIST-SEED.npz: tessera's coarse centroids, the exact nearest-centroid ids and
    the k-means' seconds (kmeans_s wall, kmeans_cpu_s, kmeans_threads; absent from files of older runs)."""
    p = Path(args.data_cache) / f"rabitq-part-{data.stem.removeprefix('rabitq-')}-{nlist}-{args.seed}.npz"
    if p.exists():
        return p
    cpath = Path(args.out) / "work" / f"centroids-{name}-{nlist}.npy"
    r = run(dict(lib="prep", data=str(data), nlist=nlist, threads=max(args.thread_list), centroids=str(cpath)),
            f"prep-{name}-nlist{nlist}", args)
    if not r.get("ok"):
        raise SystemExit(f"coarse k-means on {name} failed: {r.get('error')}")
    cent = np.load(cpath)
    assign = nearest_centroid(np.load(data)["base"], cent)
    sizes = np.bincount(assign, minlength=nlist)
    print(f"  (partition {name}: nlist {nlist}, k-means {r['train_s']:.1f} s, list sizes {sizes.min()}–{sizes.max()})",
          file=sys.stderr, flush=True)
    np.savez(p, centroids=cent, assign=assign, kmeans_s=r["train_s"], kmeans_cpu_s=r["train_cpu_s"],
             kmeans_threads=r["threads"])
    return p


def kmeans_note(part: Path) -> str:
    z = np.load(part)
    if "kmeans_s" not in z.files:
        return f"coarse k-means: not timed (partition cached by an older run: delete {part} to time it)"
    return (f"coarse k-means (tessera, {int(z['kmeans_threads'])} thread(s)): {float(z['kmeans_s']):.1f} s wall, "
            f"{float(z['kmeans_cpu_s']):.1f} s CPU — once per set, shared by every contender, not in 'build'")


def snapshot_module(args, out: Path) -> str:
    """Copy the tessera package of --pymodule into OUT/module and run every worker on the copy: a build that
    rewrites build/python during the run (a shared checkout) cannot break or mix the workers' imports."""
    src = Path(args.pymodule) / "tessera"
    if not src.is_dir() or args.no_snapshot:
        return f"{args.pymodule} (not copied)"
    dst = out / "module" / "tessera"
    shutil.copytree(src, dst, dirs_exist_ok=True)
    args.pymodule = str(dst.parent)
    so = sorted(dst.glob("_tessera*.so"))
    if not so:
        return f"{src} (no extension module found)"
    mtime = dt.datetime.fromtimestamp(so[0].stat().st_mtime).strftime("%Y-%m-%d %H:%M:%S")
    sha = hashlib.sha256(so[0].read_bytes()).hexdigest()[:12]
    return f"{src}, {so[0].name} of {mtime}, sha256 {sha}… (copied to {dst})"


def at_recall(curve: list, target: float):
    """(QPS at recall@10 = target, flag): log-QPS interpolated linearly in recall between the nprobe values
    around the target; flag '>' when the smallest nprobe already exceeds it (its QPS is a lower bound), None
    when the curve never reaches it."""
    pts = sorted(curve, key=lambda c: c["nprobe"])
    if not pts or max(c["R10"] for c in pts) < target:
        return None, None
    if pts[0]["R10"] >= target:
        return pts[0]["qps"], ">"
    for a, b in zip(pts, pts[1:]):
        if a["R10"] < target <= b["R10"]:
            w = (target - a["R10"]) / (b["R10"] - a["R10"])
            return math.exp((1 - w) * math.log(a["qps"]) + w * math.log(b["qps"])), ""
    # non-monotone curve: the first point at or above the target
    c = next(c for c in pts if c["R10"] >= target)
    return c["qps"], "~"


def fmt_qps(v, flag="") -> str:
    if v is None:
        return "—"
    s = f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"
    return (flag or "") + s


def ratio(a, b) -> str:
    return f"{a / b:.2f}" if a and b else "—"


def write_plots(rows: list, sets: list, out: Path, threads: list) -> list:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed (pip install -r requirements/bench.txt): no plot")
        return []
    files = []
    colors = {**{l: "tab:pink" for l in {r["lib"] for r in rows} if rerank_of(l)}, "tessera": "tab:red", "tessera-ss": "tab:orange", "rabitqlib": "tab:blue", "faiss-rbq": "tab:green", "faiss-rbqfs": "tab:olive",
              "faiss-pqfs": "tab:gray"}
    markers = {**{l: "P" for l in {r["lib"] for r in rows} if rerank_of(l)}, "tessera": "o", "tessera-ss": "D", "rabitqlib": "s", "faiss-rbq": "^", "faiss-rbqfs": "v", "faiss-pqfs": "x"}
    dashes = ["-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)), (0, (3, 1, 1, 1, 1, 1))]
    for t in threads:
        fig, axes = plt.subplots(1, len(sets), figsize=(6.5 * len(sets), 5.2), squeeze=False)
        all_bits = sorted({r["bits"] for r in rows})
        for ax, s in zip(axes[0], sets):
            for r in rows:
                if r["set"] != s or r["threads"] != t or not r["res"].get("ok"):
                    continue
                c = sorted(r["res"]["curve"], key=lambda c: c["nprobe"])
                ls = dashes[all_bits.index(r["bits"]) % len(dashes)]
                ax.plot([p["R10"] for p in c], [p["qps"] for p in c], linestyle=ls, marker=markers[r["lib"]],
                        markersize=3, linewidth=1, color=colors[r["lib"]], label=f"{r['lib']} {r['bits']}b")
                ax.annotate(f"{r['bits']}b", (c[0]["R10"], c[0]["qps"]), fontsize=6, color=colors[r["lib"]],
                            xytext=(-4, 3), textcoords="offset points", ha="right")
            ax.set_yscale("log")
            ax.set_xlabel("recall@10")
            ax.set_ylabel("QPS (queries / s)")
            ax.set_title(f"{s}, {t} thread{'s' if t > 1 else ''}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        f = out / f"rabitq-t{t}.png"
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(f)
    return files


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="siftsmall, bits 1,4, 1 thread, a shorter nprobe sweep")
    ap.add_argument("--sets", default="siftsmall,bigann10k,fashion-mnist",
                    help="of siftsmall, bigann10k, fashion-mnist, gmm-1m (slow: opt-in)")
    ap.add_argument("--bits", default="1,2,4,6,8", help="bits per coordinate, of 1..8")
    ap.add_argument("--libs", default=",".join(l for l in LIBS if l != "tessera-ss"),
                    help=f"of {','.join(LIBS)} (tessera-ss: search(single_stage=True), every probed vector "
                         "estimated with its full code; needs a module that has it)")
    ap.add_argument("--rerank", default="",
                    help="R values (comma-separated, > 0, or auto): each adds the contender tessera-rrR, tessera's index "
                         "searched with rerank=R (exact distances for the R best estimates)")
    ap.add_argument("--nprobe", default="1,2,4,8,12,16,24,32,48,64,96,128,192,256",
                    help="nprobe sweep (values above nlist dropped; nlist itself always added when smaller)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--targets", default="0.90,0.95", help="recall@10 values at which QPS is compared")
    ap.add_argument("--nlist", type=int, default=None, help="coarse lists (default per data set, see above)")
    ap.add_argument("--fmnist-queries", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0x12345, help="tessera's k-means and rotation, faiss's rotation")
    ap.add_argument("--min-reps", type=int, default=3, help="timed k = 10 searches per point, at least")
    ap.add_argument("--budget", type=float, default=0.3, help="more timed searches while under this many s")
    ap.add_argument("--out", default=None, help="default $TESSERA_BENCH_OUT/rabitq/rabitq-<timestamp>")
    ap.add_argument("--data-cache", default=str(machine.SCRATCH / "rabitq" / "data"))
    ap.add_argument("--no-snapshot", action="store_true",
                    help="import tessera from --pymodule itself instead of a copy made in OUT/module at the start")
    machine.add_run_options(ap, REPO)
    a = ap.parse_args()
    if a.worker:
        return worker(a.worker)
    if a.quick:
        a.sets, a.bits, a.threads, a.nprobe = "siftsmall", "1,4", "1", "1,2,4,8,16,32,64"
        a.min_reps, a.budget = 2, 0.1
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    a.out = a.out or str(machine.SCRATCH / "rabitq" / f"rabitq-{stamp}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    a.thread_list = [int(v) for v in a.threads.split(",")]
    bits_list = [int(v) for v in a.bits.split(",")]
    libs = a.libs.split(",")
    for r in (v.strip() for v in a.rerank.split(",") if v.strip()):
        if r != "auto" and not (r.isdigit() and int(r) > 0):
            raise SystemExit("--rerank values must be > 0 or auto")
        LIBS[f"tessera-rr{r}"] = f"tessera, rerank={r}"
        libs.insert(libs.index("tessera") + 1 if "tessera" in libs else 0, f"tessera-rr{r}")
    for lib in libs:
        if lib not in LIBS:
            raise SystemExit(f"unknown contender {lib}; known: {', '.join(LIBS)}")
    a.peer_env = machine.peer_blas_env(a.cli, a.peer_blas)
    module = snapshot_module(a, out)
    print(f"tessera Extended RaBitQ IVF vs rabitqlib and faiss — {stamp}{'  (QUICK)' if a.quick else ''}")
    print(f"BLAS: tessera {machine.tessera_blas(a.cli)}; peers ({a.peer_blas}) {a.peer_env or 'as installed'}; "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start (a shared machine: timings are noisy, "
          "compare ratios within one run)")
    print(f"tessera module: {module}")
    rows, sets_done, meta = [], [], {}
    for s in a.sets.split(","):
        data = make_set(s, Path(a.data_cache), a)
        if data is None:
            continue
        n = int(np.load(data)["base"].shape[0])
        nlist = a.nlist or default_nlist(n)
        part = partition(s, data, nlist, a)
        nprobes = sorted({p for p in (int(v) for v in a.nprobe.split(",")) if p <= nlist} | ({nlist} if nlist <= 256 else set()))
        meta[s] = dict(n=n, nlist=nlist, nprobes=nprobes, kmeans=kmeans_note(part))
        print(f"\n{s}: {meta[s]['kmeans']}")
        sets_done.append(s)
        for bits in bits_list:
            for t in a.thread_list:
                block = []
                for lib in libs:
                    if lib == "faiss-pqfs" and bits > 4:
                        continue
                    spec = dict(lib=lib, set=s, data=str(data), partition=str(part), bits=bits, threads=t,
                                nprobes=nprobes)
                    r = run(spec, f"{lib}-{s}-b{bits}-t{t}", a)
                    row = dict(lib=lib, set=s, bits=bits, threads=t, nlist=nlist, res=r)
                    rows.append(row)
                    block.append(row)
                print_block(s, bits, t, nlist, nprobes, block)
    print_summary(rows, sets_done, bits_list, a.thread_list, [float(v) for v in a.targets.split(",")])
    # files
    with open(out / "curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["library", "dataset", "bits", "nprobe", "threads", "nlist", "nq", "build_s", "build_cpu_s",
                    "assign_s", "bytes_per_vec",
                    "search_s", "qps", "recall1", "recall10", "recall100", "load1"])
        for r in rows:
            res = r["res"]
            for c in res.get("curve", []):
                w.writerow([r["lib"], r["set"], r["bits"], c["nprobe"], r["threads"], r["nlist"], res["nq"],
                            f"{res['build_s']:.4f}", f"{res.get('build_cpu_s', float('nan')):.4f}",
                            f"{res['assign_s']:.4f}" if "assign_s" in res else "", res.get("bytes_per_vec", ""),
                            f"{c['search_s']:.6f}",
                            f"{c['qps']:.1f}", f"{c['R1']:.4f}", f"{c['R10']:.4f}", f"{c['R100']:.4f}",
                            f"{res.get('load1', float('nan')):.2f}"])
    (out / "results.json").write_text(json.dumps(dict(stamp=stamp, args={k: str(v) for k, v in vars(a).items()},
                                                      module=module, sets=meta, results=rows), indent=1))
    pngs = write_plots(rows, sets_done, out, a.thread_list)
    print(f"results: {out / 'results.json'}, {out / 'curves.csv'}" + "".join(f", {p}" for p in pngs))


def print_block(s, bits, t, nlist, nprobes, block):
    cells = [f"np={p}" for p in nprobes]
    hdr = (f"{'contender':<12} {'build s':>7} {'cpu s':>7} {'asgn s':>6} {'B/vec':>5} {'load':>4} | "
           + " ".join(f"{c:>12}" for c in cells))
    nq = next((r["res"]["nq"] for r in block if r["res"].get("ok")), "?")
    print(f"\n{s}  bits={bits}  threads={t}  nlist={nlist}  nq={nq}   cells: recall@10 / QPS at k=10; build: "
          "encoding on the shared lists (wall, CPU), asgn: tessera's own coarse assignment, timed apart")
    print(hdr + "\n" + "-" * len(hdr))
    for r in block:
        res = r["res"]
        if not res.get("ok"):
            print(f"{r['lib']:<12} FAILED: {res.get('error')}")
            continue
        by = {c["nprobe"]: c for c in res["curve"]}
        note = ""
        if res.get("assign_mismatch") and "assign_s" in res:
            note = f"  (its own assignment puts {res['assign_mismatch']} rows in another list; the shared one is used)"
        elif res.get("assign_mismatch"):
            note = f"  ({res['assign_mismatch']} rows in another list than the shared partition's)"
        elif res.get("list_size_mismatch"):
            note = f"  (list sizes differ from the shared partition's by {res['list_size_mismatch']} rows)"
        if "M" in res:
            note += f"  (PQ M={res['M']}×4)"
        asg = f"{res['assign_s']:>6.2f}" if "assign_s" in res else f"{'—':>6}"
        print(f"{r['lib']:<12} {res['build_s']:>7.2f} {res.get('build_cpu_s', float('nan')):>7.2f} {asg} "
              f"{res.get('bytes_per_vec', '—'):>5} {res['load1']:>4.1f} | "
              + " ".join(f"{by[p]['R10']:.3f}/{fmt_qps(by[p]['qps']):>6}" if p in by else f"{'—':>12}"
                         for p in nprobes) + note, flush=True)
    ok = [r for r in block if r["res"].get("ok")]
    if ok:
        last = nprobes[-1]
        print("  recall@1 / @100 at np=%d: " % last + ", ".join(
            f"{r['lib']} {r['res']['curve'][-1]['R1']:.2f}/{r['res']['curve'][-1]['R100']:.3f}" for r in ok))


def print_summary(rows, sets, bits_list, threads, targets):
    libs = [l for l in LIBS if any(r["lib"] == l for r in rows)]
    print("\nhighest recall@10 of the sweep (no re-ranking, except the tessera-rrR contenders)")
    hdr = f"{'set':<14} {'bits':>4} {'thr':>3} | " + " ".join(f"{l:>11}" for l in libs)
    print(hdr + "\n" + "-" * len(hdr))
    for s in sets:
        for b in bits_list:
            for t in threads:
                best = {r["lib"]: max(c["R10"] for c in r["res"]["curve"]) for r in rows
                        if r["set"] == s and r["bits"] == b and r["threads"] == t and r["res"].get("ok")}
                print(f"{s:<14} {b:>4} {t:>3} | " + " ".join(
                    f"{best[l]:>11.3f}" if l in best else f"{'—':>11}" for l in libs))
    for target in targets:
        print(f"\nQPS at recall@10 = {target:.2f} (interpolated along the nprobe curve; '>' = already above at the "
              "smallest nprobe, a lower bound; '—' = not reached)")
        rr = [l for l in libs if rerank_of(l)]
        hdr = (f"{'set':<14} {'bits':>4} {'thr':>3} | " + " ".join(f"{l:>11}" for l in libs)
               + f" | {'t/rabitq':>8} {'t/f-rbq':>8} {'t/f-rbqfs':>9} {'t/f-pqfs':>8}"
               + "".join(f" {'rr' + str(rerank_of(l)) + '/rabitq':>13}" for l in rr))
        print(hdr + "\n" + "-" * len(hdr))
        for s in sets:
            for b in bits_list:
                for t in threads:
                    q = {}
                    for r in rows:
                        if r["set"] == s and r["bits"] == b and r["threads"] == t and r["res"].get("ok"):
                            q[r["lib"]] = at_recall(r["res"]["curve"], target)
                    te = q.get("tessera", (None, None))[0]
                    rat = [ratio(te, q.get(l, (None, None))[0]) for l in ("rabitqlib", "faiss-rbq", "faiss-rbqfs",
                                                                          "faiss-pqfs")]
                    rrat = [ratio(q.get(l, (None, None))[0], q.get("rabitqlib", (None, None))[0]) for l in rr]
                    print(f"{s:<14} {b:>4} {t:>3} | " + " ".join(f"{fmt_qps(*q.get(l, (None, None))):>11}" for l in libs)
                          + f" | {rat[0]:>8} {rat[1]:>8} {rat[2]:>9} {rat[3]:>8}"
                          + "".join(f" {v:>13}" for v in rrat))
    print("ratios: tessera QPS / peer QPS at the same recall@10 (> 1: tessera faster); computed only where both "
          "reach the target (a '>' value enters as its lower bound); rrR/rabitq: tessera with rerank=R (exact "
          "distances from raw vectors, which rabitqlib does not use) / rabitqlib.")


if __name__ == "__main__":
    main()
