"""One contender per process: `python bench/contenders.py SPEC.json RESULT.json`.

bench_sid.py starts this script once per contender, so that peak memory (ru_maxrss / VmHWM) belongs to one
contender. The worker loads the cached dataset, runs the contender, and saves what it produced (codes n × L
and the per-level codebooks — a single k-means saves its labels as n × 1 codes and its centroids as
codebook 0 — or an assignment) to `<workdir>/output.npz`; bench_sid.py computes every
quality number (MSE, cluster sizes, collision rate, objective) from those arrays in the same way for all.

Timings are measured around the algorithm only (the dataset is already in memory); for the tessera CLI the
time is the library's own `seconds_total` from metrics.json (fit + metrics + collision resolution, without
reading the input or writing outputs), and the process wall time is kept as well.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def vm_hwm_kb() -> int:
    """Peak resident set of this process in KiB (VmHWM), falling back to ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# ------------------------------------------------------------------------------------------ RQ contenders
def run_tessera_cli(spec, x_path):
    """tessera's CLI (`tessera sid build`), the most stable contract. Peak RSS is the CLI's own (wait4)."""
    p = spec["params"]
    out = Path(spec["workdir"]) / "cli-out"
    cmd = [spec["cli"], "sid", "build", str(x_path), "--out", str(out),
           "--levels", str(p["levels"]), "--codebook-size", str(p["K"]),
           "--balance", "exact" if p["balance"] else "none", "--dedup", p.get("dedup", "append"),
           "--seed", str(p.get("seed", 42)), "--n-init", str(p["n_init"]), "--max-iter", str(p["max_iter"]),
           "--tol", repr(p.get("tol", 1e-4)), "--threads", str(spec["threads"]), "-q"]
    if p.get("train_sample"):
        cmd += ["--train-sample", str(p["train_sample"])]
    if not p.get("sample_warm_start", True):
        cmd += ["--no-sample-warm-start"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}: {stderr.strip()[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    codes = np.load(out / "codes.npy")
    with np.load(out / "codebooks.npz") as z:
        books = [np.asarray(z[f"codebook_{m}"], dtype=np.float32) for m in range(p["levels"])]
    return dict(time_s=metrics["seconds_total"], wall_s=wall, peak_rss_kb=ru.ru_maxrss,
                codes=codes, codebooks=books, command=" ".join(cmd),
                reported=dict(mse=metrics.get("mse"), collision_rate=metrics.get("collision_rate"),
                              level_seconds=[lv.get("seconds") for lv in metrics.get("levels", [])],
                              level_sizes=[(lv.get("min_cluster_size"), lv.get("max_cluster_size"))
                                           for lv in metrics.get("levels", [])]),
                summary=stdout.strip())


def run_tessera_py(spec, x):
    """tessera's Python module, in process (no file I/O)."""
    import tessera
    p = spec["params"]
    tessera.set_num_threads(spec["threads"])
    kw = dict(levels=p["levels"], codebook_size=p["K"], balance=p["balance"], dedup=p.get("dedup", "append"),
              seed=p.get("seed", 42), n_init=p["n_init"], max_iter=p["max_iter"], tol=p.get("tol", 1e-4),
              train_sample=p.get("train_sample", 0), sample_warm_start=p.get("sample_warm_start", True))
    t0 = time.perf_counter()
    res = tessera.build_semantic_ids(x, **kw)
    elapsed = time.perf_counter() - t0
    codes = np.asarray(res.codes, dtype=np.int32)
    books = _tessera_codebooks(res.model, p["levels"])
    metrics = dict(res.metrics)
    return dict(time_s=elapsed, codes=codes, codebooks=books,
                reported=dict(mse=metrics.get("mse"), collision_rate=metrics.get("collision_rate"),
                              level_seconds=[lv.get("seconds") for lv in metrics.get("levels", [])]))


def _tessera_codebooks(model, levels):
    """Per-level codebooks of a tessera ResidualQuantizer, whatever the binding calls them."""
    for name in ("codebooks", "get_codebooks"):
        cb = getattr(model, name, None)
        if cb is None:
            continue
        cb = cb() if callable(cb) else cb
        if isinstance(cb, (list, tuple)):
            return [np.asarray(c, dtype=np.float32) for c in cb]
        cb = np.asarray(cb, dtype=np.float32)
        if cb.ndim == 3:
            return list(cb)
        return list(cb.reshape(levels, -1, cb.shape[-1]))
    for name in ("codebook",):
        fn = getattr(model, name, None)
        if callable(fn):
            return [np.asarray(fn(m), dtype=np.float32) for m in range(levels)]
    return None


def run_faiss_rq(spec, x):
    """faiss.ResidualQuantizer(d, L, log2 K): greedy (max_beam_size = 1), default train_type, unbalanced.
    Timed: train + compute_codes of every row (what a semantic-ID build needs)."""
    import faiss
    p = spec["params"]
    faiss.omp_set_num_threads(spec["threads"])
    nbits = int(p["K"]).bit_length() - 1
    assert 1 << nbits == p["K"], "faiss RQ needs a power-of-two K"
    n, d = x.shape
    rq = faiss.ResidualQuantizer(d, p["levels"], nbits)
    defaults = dict(train_type=int(rq.train_type), niter=int(rq.cp.niter), nredo=int(rq.cp.nredo),
                    max_beam_size=int(rq.max_beam_size),
                    max_points_per_centroid=int(rq.cp.max_points_per_centroid))
    rq.max_beam_size = 1
    # niter: --iters by default (the same Lloyd iterations as every contender); "faiss_niter": "default" keeps
    # faiss's own (cp.niter = 10 in faiss-cpu 1.15.1: the out-of-the-box ResidualQuantizer a user runs).
    if p.get("faiss_niter", "max_iter") == "max_iter":
        rq.cp.niter = p["max_iter"]
    elif p["faiss_niter"] != "default":
        rq.cp.niter = int(p["faiss_niter"])
    if "train_type" in p:  # 0 = Train_default (plain k-means per level), 1 = Train_progressive_dim (default)
        rq.train_type = int(p["train_type"])
    rq.cp.nredo = p["n_init"]
    rq.cp.seed = p.get("seed", 42)
    t0 = time.perf_counter()
    rq.train(x)
    t_train = time.perf_counter() - t0
    packed = rq.compute_codes(x)
    elapsed = time.perf_counter() - t0
    codes = _unpack_codes(packed, n, p["levels"], nbits)
    books = faiss.vector_to_array(rq.codebooks).reshape(p["levels"], p["K"], d).astype(np.float32)
    # cross-check our unpacking and reconstruction against faiss's own decoder on a few rows
    check = rq.decode(packed[:256])
    mine = sum(books[m][codes[:256, m]] for m in range(p["levels"]))
    assert np.allclose(check, mine, rtol=1e-4, atol=1e-3 * (1 + np.abs(check).max())), "faiss code unpack"
    return dict(time_s=elapsed, train_s=t_train, codes=codes, codebooks=list(books),
                faiss_defaults=defaults, faiss_version=faiss.__version__, settings=dict(train_type=int(rq.train_type), niter=int(rq.cp.niter),
                                                       nredo=int(rq.cp.nredo), max_beam_size=1))


def _unpack_codes(packed, n, levels, nbits):
    if nbits == 8:
        return np.asarray(packed, dtype=np.uint8).reshape(n, levels).astype(np.int32)
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8).reshape(n, -1), axis=1, bitorder="little")
    bits = bits[:, :levels * nbits].reshape(n, levels, nbits).astype(np.int32)
    return (bits << np.arange(nbits)).sum(axis=2).astype(np.int32)


def run_faiss_kmeans_rq(spec, x):
    """Residual loop with faiss.Kmeans per level (unbalanced): train on R, assign R, R -= C[labels]."""
    import faiss
    p = spec["params"]
    faiss.omp_set_num_threads(spec["threads"])
    n, d = x.shape
    t0 = time.perf_counter()
    r = x.copy()
    codes = np.empty((n, p["levels"]), dtype=np.int32)
    books = []
    for m in range(p["levels"]):
        km = faiss.Kmeans(d, p["K"], niter=p["max_iter"], nredo=p["n_init"], seed=p.get("seed", 42) + m,
                          verbose=False)
        km.train(r)
        _, idx = km.index.search(r, 1)
        codes[:, m] = idx[:, 0]
        books.append(km.centroids.astype(np.float32).copy())
        r -= km.centroids[idx[:, 0]]
    elapsed = time.perf_counter() - t0
    return dict(time_s=elapsed, codes=codes, codebooks=books)


# ------------------------------------------------------------------------------ single (plain) k-means
def run_tessera_kmeans(spec, x):
    """tessera.kmeans(x, K, balanced=False) through the Python module (PYTHONPATH = --pymodule), in process.
    Returns the labels (n × 1 codes) and centroids it computed; the driver recomputes the MSE from them."""
    import tessera
    p = spec["params"]
    tessera.set_num_threads(spec["threads"])
    n = x.shape[0]
    kw = dict(max_iter=p["max_iter"], tol=p.get("tol", 1e-4), n_init=p["n_init"], seed=p.get("seed", 42),
              balanced=False)
    for opt in ("init", "sample_warm_start", "max_train_points"):
        if opt in p:
            kw[opt] = p[opt]
    t0 = time.perf_counter()
    res = tessera.kmeans(x, p["K"], **kw)
    elapsed = time.perf_counter() - t0
    labels = np.asarray(res.labels, dtype=np.int32)
    if labels.shape[0] != n:  # trained on a sample: label every row with its nearest centroid (as for faiss)
        raise RuntimeError(f"tessera.kmeans returned {labels.shape[0]} labels for {n} rows")
    return dict(time_s=elapsed, codes=labels[:, None], codebooks=[np.asarray(res.centroids, dtype=np.float32)],
                reported=dict(mse=float(res.objective) / x.size), iterations=int(res.iterations),
                warm_start_rows=int(getattr(res, "warm_start_rows", 0)), train_rows=n,
                module=dict(file=tessera.__file__, version=getattr(tessera, "__version__", "?")), call=kw,
                init=kw.get("init") or _default_init(tessera.kmeans))


def _default_init(fn):
    """The default of `init` in a pybind11 function's signature line (its docstring), else '?'."""
    import re
    m = re.search(r"init: str = '([^']*)'", fn.__doc__ or "")
    return m.group(1) if m else "?"


def run_faiss_kmeans(spec, x):
    """faiss.Kmeans(d, K, niter, nredo, seed) with its defaults otherwise (random init; trains on at most
    max_points_per_centroid · K rows, 256 · K by default), then every row to its nearest centroid
    (index.search): timed train + search, since a clustering needs every row's label."""
    import faiss
    p = spec["params"]
    faiss.omp_set_num_threads(spec["threads"])
    n, d = x.shape
    kw = dict(niter=p["max_iter"], nredo=p["n_init"], seed=p.get("seed", 42), verbose=False)
    if p.get("all_rows"):  # no training sample: every row takes part in every iteration
        kw["max_points_per_centroid"] = n // p["K"] + 1
    km = faiss.Kmeans(d, p["K"], **kw)
    defaults = dict(niter=int(faiss.ClusteringParameters().niter),
                    max_points_per_centroid=int(faiss.ClusteringParameters().max_points_per_centroid),
                    min_points_per_centroid=int(faiss.ClusteringParameters().min_points_per_centroid),
                    seed=int(faiss.ClusteringParameters().seed))
    t0 = time.perf_counter()
    km.train(x)
    t_train = time.perf_counter() - t0
    _, idx = km.index.search(x, 1)
    elapsed = time.perf_counter() - t0
    return dict(time_s=elapsed, train_s=t_train, codes=idx[:, :1].astype(np.int32),
                codebooks=[km.centroids.astype(np.float32)], iterations=len(km.obj),
                train_rows=min(n, int(km.cp.max_points_per_centroid) * p["K"]),
                faiss_defaults=defaults, faiss_version=faiss.__version__,
                settings=dict(niter=int(km.cp.niter), nredo=int(km.cp.nredo), seed=int(km.cp.seed),
                              max_points_per_centroid=int(km.cp.max_points_per_centroid)))


def run_kmc_rq(spec, x):
    """MiniOneRec's constrained RQ-KMeans (rq/rqkmeans_constrained.py): k_means_constrained.KMeansConstrained
    per level on the residuals with size_min = max(1, n//K − 1), size_max = n//K + 1; R -= C[labels]."""
    from joblib import parallel_config
    from k_means_constrained import KMeansConstrained
    p = spec["params"]
    n, d = x.shape
    K = p["K"]
    t0 = time.perf_counter()
    r = x.astype(np.float32).copy()
    codes = np.empty((n, p["levels"]), dtype=np.int32)
    books, level_s = [], []
    for m in range(p["levels"]):
        tl = time.perf_counter()
        km = KMeansConstrained(n_clusters=K, size_min=max(1, n // K - 1), size_max=n // K + 1,
                               max_iter=p["max_iter"], tol=p.get("tol", 1e-4),
                               random_state=p.get("seed", 42) + m, n_init=p["n_init"], n_jobs=p.get("n_jobs", 2))
        # n_jobs > 1 runs the fit in a joblib worker; joblib would hand it a read-only memmap of r, which
        # k-means-constrained's Cython code rejects ("buffer source array is read-only"): pass copies instead.
        with parallel_config(max_nbytes=None):
            labels = km.fit_predict(r)
        c = km.cluster_centers_.astype(np.float32)
        codes[:, m] = labels
        books.append(c)
        r -= c[labels]
        level_s.append(time.perf_counter() - tl)
    elapsed = time.perf_counter() - t0
    _shutdown_joblib()
    return dict(time_s=elapsed, codes=codes, codebooks=books, level_seconds=level_s)


def _shutdown_joblib():
    """Stop (and reap) joblib's worker processes so that their peak RSS shows up in RUSAGE_CHILDREN."""
    try:
        from joblib.externals.loky import get_reusable_executor
        get_reusable_executor().shutdown(wait=True)
    except Exception:  # noqa: BLE001 - best effort
        pass


# ------------------------------------------------------------------------------- single assignment problems
def assignment_problem(n, k, d=64, seed=0):
    """A realistic cost matrix: squared distances from n points of a Gaussian mixture to k centroids (k points
    of the same set), n × k float32."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from datasets import gaussian_mixture
    pts = gaussian_mixture(n + k, d, components=64, seed=seed)
    x, c = pts[:n], pts[n:]
    cost = (x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]
    return np.maximum(cost, 0).astype(np.float32)


def _as_assignment(res, n):
    if isinstance(res, tuple):
        for part in res:
            a = np.asarray(part)
            if a.ndim == 1 and a.shape[0] == n and a.dtype.kind in "iu":
                return a.astype(np.int64)
    a = getattr(res, "assignment", None)
    if a is None:
        a = getattr(res, "labels", res)
    return np.asarray(a).astype(np.int64)


def run_assign(spec, _x):
    import tessera
    p = spec["params"]
    tessera.set_num_threads(spec["threads"])
    cost = assignment_problem(p["n"], p["k"], seed=p.get("seed", 0))
    lo, hi = max(1, p["n"] // p["k"] - 1), p["n"] // p["k"] + 1
    fn = tessera.balanced_assign_exact if spec["contender"] == "assign-exact" else tessera.balanced_assign
    t0 = time.perf_counter()
    res = fn(cost, lo, hi)
    elapsed = time.perf_counter() - t0
    a = _as_assignment(res, p["n"])
    sizes = np.bincount(a, minlength=p["k"])
    return dict(time_s=elapsed, assignment=a.astype(np.int32), bounds=[lo, hi],
                sizes=[int(sizes.min()), int(sizes.max())],
                bounds_ok=bool(sizes.min() >= lo and sizes.max() <= hi and sizes.size == p["k"]),
                objective=float(cost[np.arange(p["n"]), a].astype(np.float64).sum()))


RUNNERS = {
    "tessera-cli": run_tessera_cli,
    "tessera-py": run_tessera_py,
    "faiss-rq": run_faiss_rq,
    "faiss-kmeans-rq": run_faiss_kmeans_rq,
    "kmc-rq": run_kmc_rq,
    "tessera-kmeans": run_tessera_kmeans,
    "faiss-kmeans": run_faiss_kmeans,
    "assign-exact": run_assign,
    "assign-scalable": run_assign,
}


def main(spec_path, result_path):
    spec = json.loads(Path(spec_path).read_text())
    name = spec["contender"]
    t_start = time.perf_counter()
    try:
        if name == "tessera-cli":
            out = run_tessera_cli(spec, spec["data_path"])
        else:
            x = np.load(spec["data_path"]) if spec.get("data_path") else None
            out = RUNNERS[name](spec, x)
        arrays = {k: out.pop(k) for k in ("codes", "assignment") if k in out}
        books = out.pop("codebooks", None)
        if books is not None:
            for m, b in enumerate(books):
                arrays[f"codebook_{m}"] = np.asarray(b, dtype=np.float32)
        if "peak_rss_kb" not in out:  # Python contenders: this process (and any reaped helpers)
            out["peak_rss_kb"] = max(vm_hwm_kb(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        out.setdefault("wall_s", time.perf_counter() - t_start)
        np.savez(Path(spec["workdir"]) / "output.npz", **arrays)
        out["ok"] = True
    except Exception as e:  # noqa: BLE001 - reported in the table
        import traceback
        out = dict(ok=False, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()[-4000:])
    Path(result_path).write_text(json.dumps(out, default=float))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
