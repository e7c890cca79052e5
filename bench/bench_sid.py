#!/usr/bin/env python3
"""Semantic-ID benchmarks: tessera's (balanced) RQ-KMeans against faiss and k-means-constrained.

    .venv/bin/python bench/bench_sid.py [--quick] [--only CASE[,CASE]] [--threads 2] [--out DIR]

Cases (see bench/README.md): rq_vs_faiss, vs_kmeans_constrained, exact_vs_scalable, scale_1m,
kmeans_vs_faiss, rq_heavy_tail.
Every contender runs in its own subprocess (bench/contenders.py) on the same cached float32 data, so peak
RSS is per contender; every quality number is computed here from the codes and codebooks each contender
returns, the same way for all. Prints one table per case with ratios against tessera and writes
<out>/results/<timestamp>.json. Benchmarks are not tests: nothing here fails on absolute time.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import datasets  # noqa: E402
import machine  # noqa: E402

CASES = ["rq_vs_faiss", "vs_kmeans_constrained", "exact_vs_scalable", "scale_1m", "kmeans_vs_faiss",
         "rq_heavy_tail"]
PY_MODULE_CONTENDERS = ("assign-exact", "assign-scalable", "tessera-kmeans")  # always `import tessera`
LABELS = {  # contender label → (runner, fixed params)
    "tessera balanced": ("tessera", dict(balance=True)),
    "tessera unbalanced": ("tessera", dict(balance=False)),
    "faiss RQ beam=1": ("faiss-rq", {}),
    "faiss Kmeans loop": ("faiss-kmeans-rq", {}),
    "k-means-constrained": ("kmc-rq", {}),
}


# ----------------------------------------------------------------------------------------------- running
class Runner:
    def __init__(self, args):
        self.args = args
        self.root = Path(args.out)
        self.stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.work = self.root / "work" / self.stamp
        self.work.mkdir(parents=True, exist_ok=True)
        self.cache = {}  # identical runs within one invocation are run once
        self.skip = {}  # contender kind → error of its failed probe
        self.count = 0
        self._x_name, self._x = None, None

    def data(self, name):
        if self._x_name != name:
            self._x, self._x_name = None, None
            self._x = datasets.load(name, self.args.data_cache)
            self._x_name = name
        return self._x

    def probe(self, cases=()):
        """Small runs first, so that a contender that hangs costs one short timeout, not one per case."""
        t = self.args.probe_timeout
        plan = [("tessera-balanced", "tessera", "gmm-3k", dict(levels=2, K=16, n_init=1, max_iter=2, balance=True)),
                ("assign-scalable", "assign-scalable", None, dict(n=500, k=16, seed=1)),
                ("assign-exact", "assign-exact", None, dict(n=500, k=16, seed=1))]
        if "kmeans_vs_faiss" in cases:
            plan.append(("tessera-kmeans", "tessera-kmeans", "gmm-3k", dict(K=16, n_init=1, max_iter=2, seed=1)))
        for kind, contender, ds, p in plan:
            r = self.run(contender, ds, p, timeout=t, probe=True)
            status = "ok" if r.get("ok") else f"FAILED: {r.get('error', '')[:200]}"
            print(f"probe {kind:<17} {status}" + (f" ({r['process_wall_s']:.1f} s)" if r.get("ok") else ""))
            if not r.get("ok"):
                self.skip[kind] = r.get("error", "")

    def run(self, contender, dataset, params, timeout=None, probe=False):
        """Run one contender in its own process; returns a result dict (ok=False with `error` on failure)."""
        if contender == "tessera":
            contender = "tessera-py" if self.args.backend == "py" else "tessera-cli"
        key = json.dumps([contender, dataset, params], sort_keys=True)
        kind = "tessera-balanced" if contender.startswith("tessera") and params.get("balance") else contender
        if kind in self.skip and not probe:
            return dict(ok=False, skipped=True, contender=contender, dataset=dataset, params=params,
                        error=f"skipped: {kind} failed a small probe run ({self.skip[kind][:120]})")
        if key in self.cache:
            return dict(self.cache[key], reused=True)
        self.count += 1
        wd = self.work / f"{self.count:03d}-{contender}-{dataset or 'none'}"
        wd.mkdir(parents=True, exist_ok=True)
        spec = dict(contender=contender, params=params, threads=self.args.threads, workdir=str(wd),
                    cli=str(self.args.cli), dataset=dataset,
                    data_path=str(datasets.path(dataset, self.args.data_cache)) if dataset else None)
        (wd / "spec.json").write_text(json.dumps(spec, indent=1))
        env = dict(os.environ)
        t = str(self.args.threads)
        env.update(OMP_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t, MKL_NUM_THREADS=t)
        if not contender.startswith("tessera") and contender not in PY_MODULE_CONTENDERS:
            env.update(self.args.peer_env)
        if self.args.backend == "py" or contender in PY_MODULE_CONTENDERS:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.args.pymodule), env.get("PYTHONPATH")]))
        label = f"{contender} on {dataset or '-'} {json.dumps(params, sort_keys=True)}"
        print(f"  .. {label}", file=sys.stderr, flush=True)
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(HERE / "contenders.py"), str(wd / "spec.json"),
                                 str(wd / "result.json")], env=env, start_new_session=True,
                                stdout=open(wd / "stdout.txt", "w"), stderr=open(wd / "stderr.txt", "w"))
        limit = timeout or self.args.timeout
        status, timed_out = None, False
        while True:
            pid, st, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status = os.waitstatus_to_exitcode(st)
                break
            if time.perf_counter() - t0 > limit:
                os.killpg(proc.pid, signal.SIGKILL)  # the worker's own session: it and its children only
                os.wait4(proc.pid, 0)
                timed_out = True
                break
            time.sleep(0.2)
        proc.returncode = status if status is not None else -9
        wall = time.perf_counter() - t0
        load1 = os.getloadavg()
        if timed_out:
            res = dict(ok=False, timeout=True, error=f"did not finish within {limit:.0f} s (killed)")
        elif (wd / "result.json").exists():
            res = json.loads((wd / "result.json").read_text())
        else:
            err = (wd / "stderr.txt").read_text()[-1500:]
            res = dict(ok=False, error=f"worker exited with {status}: {err}")
        res.update(contender=contender, dataset=dataset, params=params, process_wall_s=wall,
                   load_before=load0, load_after=load1)
        if res.get("ok"):
            self._measure(res, wd, dataset)
        else:
            print(f"     !! {res['error'][:300]}", file=sys.stderr, flush=True)
        self.cache[key] = res
        return res

    def _measure(self, res, wd, dataset):
        with np.load(wd / "output.npz") as z:
            arrays = {k: z[k] for k in z.files}
        if "codes" in arrays:
            x = self.data(dataset)
            codes = arrays["codes"].astype(np.int64)
            books = [arrays[f"codebook_{m}"] for m in range(codes.shape[1]) if f"codebook_{m}" in arrays]
            if len(books) == codes.shape[1]:
                res["mse"] = mse(x, codes, books)
            elif res.get("reported", {}).get("mse") is not None:
                res["mse"] = float(res["reported"]["mse"])
                res["mse_source"] = "reported by the contender (no codebooks returned)"
            counts = [np.bincount(codes[:, m], minlength=max(int(codes[:, m].max()) + 1,
                                                             books[m].shape[0] if m < len(books) else 0))
                      for m in range(codes.shape[1])]
            res["sizes"] = [[int(b.min()), int(b.max())] for b in counts]
            res["max_cluster"] = [int(b.max()) for b in counts]  # rows in the largest cluster, per level
            res["perplexity"] = [perplexity(b) for b in counts]  # exp(entropy of the cluster-size distribution)
            res["unused_codes"] = [int(np.sum(np.bincount(codes[:, m], minlength=K) == 0))
                                   for m, K in enumerate([b.shape[0] for b in books] or [0] * codes.shape[1])]
            _, counts = np.unique(codes, axis=0, return_counts=True)
            res["collision_rate"] = 1.0 - counts.size / codes.shape[0]
            rep = res.get("reported", {}).get("mse")
            if rep is not None and "mse" in res and abs(rep - res["mse"]) > 1e-3 * max(1e-12, abs(res["mse"])):
                res["warning"] = f"tessera reported MSE {rep:.6g}, recomputed {res['mse']:.6g}"
            if codes.shape[1] == 1 and len(books) == 1:
                # A single k-means: the MSE above uses the labels it returned; this one every row's nearest
                # centroid (the codebook's own quality). They agree when the labels come from a last E-step.
                near = nearest(x, books[0])
                res["mse_nearest"] = mse(x, near[:, None], books)
                res["labels_not_nearest"] = float(np.mean(near != codes[:, 0]))
                if res["mse_nearest"] < res["mse"] * (1 - 1e-4):
                    res["warning"] = (f"labels are not every row's nearest centroid ({100 * res['labels_not_nearest']:.2f}%"
                                      f" differ): MSE {res['mse']:.6g} with them, {res['mse_nearest']:.6g} nearest")


def mse(x, codes, books, chunk=200_000):
    """np.mean((x − Σ_m C_m[codes[:, m]])²), chunked, accumulated in float64."""
    total = 0.0
    for s in range(0, x.shape[0], chunk):
        r = np.array(x[s:s + chunk], dtype=np.float32)
        for m, c in enumerate(books):
            r -= c[codes[s:s + chunk, m]]
        total += float(np.einsum("ij,ij->", r, r, dtype=np.float64))
    return total / x.size


def nearest(x, c, chunk=50_000):
    """Index of every row's nearest centroid (squared L2), chunked."""
    cn = np.einsum("ij,ij->i", c, c)
    out = np.empty(x.shape[0], dtype=np.int64)
    for s in range(0, x.shape[0], chunk):
        xs = np.asarray(x[s:s + chunk], dtype=np.float32)
        out[s:s + chunk] = np.argmin(cn[None, :] - 2.0 * (xs @ c.T), axis=1)
    return out


def perplexity(counts):
    """exp(H) of the cluster-size distribution: K when every cluster has n/K rows, 1 when one has them all."""
    q = counts[counts > 0] / counts.sum()
    return float(np.exp(-np.sum(q * np.log(q))))


# ----------------------------------------------------------------------------------------------- printing
def fmt_time(s):
    return "-" if s is None else (f"{s:.2f}" if s < 100 else f"{s:.0f}")


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    r = a / b
    return f"{r:.3g}"


def rss_mb(r):
    return r.get("peak_rss_kb", 0) / 1024.0


def print_rq_table(title, rows, ref_label="tessera balanced"):
    """rows: (dataset, label, result). Ratios are contender / tessera balanced on the same dataset."""
    print(f"\n{title}")
    hdr = (f"{'dataset':<12} {'contender':<34} {'time s':>8} {'t/tess':>7} {'RSS MB':>7} {'MSE':>11} "
           f"{'mse/tess':>8} {'coll.':>6}  {'sizes per level (min-max)':<28} {'load1':>5}")
    print(hdr)
    print("-" * len(hdr))
    refs = {ds: r for ds, lab, r in rows if lab == ref_label and r.get("ok")}
    for ds, lab, r in rows:
        ref = refs.get(ds)
        load = r.get("load_before", [None])[0]
        if not r.get("ok"):
            print(f"{ds:<12} {lab:<34} {'—':>8}  {r.get('error', '')[:90]}")
            continue
        t = r["time_s"]
        m = r.get("mse")
        sizes = " ".join(f"{a}-{b}" for a, b in r.get("sizes", []))
        print(f"{ds:<12} {lab:<34} {fmt_time(t):>8} {fmt_ratio(t, ref and ref['time_s']):>7} {rss_mb(r):>7.0f} "
              f"{m:>11.5g} {fmt_ratio(m, ref and ref.get('mse')):>8} {r.get('collision_rate', 0):>6.3f}  "
              f"{sizes:<28} {load if load is not None else 0:>5.1f}" + ("  (reused)" if r.get("reused") else ""))
        if r.get("warning"):
            print(f"{'':<12} !! {r['warning']}")


def verdict(ok):
    return "MET" if ok else "NOT MET"


# ----------------------------------------------------------------------------------------------- cases
def case_rq_vs_faiss(R, a, report):
    iters = a.iters
    sets = ["siftsmall"] if a.quick else ["siftsmall", "debian", "gmm-1m"]
    base = dict(levels=3, K=256, n_init=1, max_iter=iters, seed=42)
    rows = []
    title = (f"== rq_vs_faiss: L=3, K=256, n_init=1, max_iter={iters} for every contender "
             f"(faiss RQ: max_beam_size=1, default train_type, cp.niter set to {iters}, cp.nredo=1; "
             f"faiss Kmeans: niter={iters}, nredo=1) ==")
    for ds in sets:
        rows_ds = []
        for lab in ["tessera balanced", "tessera unbalanced", "faiss RQ beam=1", "faiss Kmeans loop"]:
            runner, extra = LABELS[lab]
            rows_ds.append((ds, lab, R.run(runner, ds, dict(base, **extra))))
        if ds == "gmm-1m":
            p = dict(base, balance=True, train_sample=65536)
            rows_ds.append((ds, "tessera balanced, train 65536", R.run("tessera", ds, p)))
        print_rq_table(title if not rows else f"   rq_vs_faiss on {ds}:", rows_ds)  # a table per dataset as
        rows += rows_ds                                                   # it finishes: a long run shows progress
        sys.stdout.flush()
    fd = next((r.get("faiss_defaults") for _, lab, r in rows if lab == "faiss RQ beam=1" and r.get("ok")), None)
    if fd:
        print(f"   faiss ResidualQuantizer defaults as installed: {fd} (we override niter/nredo/max_beam_size "
              f"so every contender does the same number of Lloyd iterations)")
    print("   faiss's k-means trains on a sample of max_points_per_centroid·K = 65,536 rows when given more "
          "(its default, kept);\n   'tessera balanced, train 65536' is tessera with the same training-set "
          "size (all rows are still assigned under the size bounds).\n   tessera's default sample warm start "
          "(from 32·K rows on) runs the restarts on min(256·K, n/2) rows and the last quarter of the iterations "
          "on all rows; scale_1m also shows it switched off.")
    print("   targets: tessera balanced time ≤ 2 × faiss RQ beam=1 time; tessera balanced MSE ≤ 1.10 × faiss "
          "RQ MSE")
    targets = []
    for ds in sets:
        t = {lab: r for d, lab, r in rows if d == ds}
        tb, fq = t.get("tessera balanced"), t.get("faiss RQ beam=1")
        if tb and fq and tb.get("ok") and fq.get("ok"):
            tr, mr = tb["time_s"] / fq["time_s"], tb["mse"] / fq["mse"]
            print(f"   {ds:<10} time tessera/faiss = {tr:6.2f} ({verdict(tr <= 2)})   "
                  f"MSE tessera/faiss = {mr:6.3f} ({verdict(mr <= 1.10)})")
            targets.append(dict(dataset=ds, time_ratio=tr, mse_ratio=mr, time_met=tr <= 2, mse_met=mr <= 1.10))
            ts = t.get("tessera balanced, train 65536")
            if ts and ts.get("ok"):  # faiss trains on 65,536 rows here: the same training-set size
                print(f"   {'':<10} time tessera (train 65536)/faiss = {ts['time_s'] / fq['time_s']:6.2f} "
                      f"({verdict(ts['time_s'] / fq['time_s'] <= 2)}, same training-set size as faiss)")
            tu = t.get("tessera unbalanced")
            if tu and tu.get("ok") and mr > 1.10:
                # What the size bounds themselves cost: data whose natural clusters have very unequal sizes
                # (the Zipf-weighted mixture) cannot reach an unbalanced MSE under balance.
                print(f"   {'':<10} MSE tessera unbalanced/faiss = {tu['mse'] / fq['mse']:6.3f}; balanced/unbalanced "
                      f"= {tb['mse'] / tu['mse']:6.3f} (the price of the size bounds on this data)")
    report["cases"]["rq_vs_faiss"] = dict(rows=[dict(r, label=l) for d, l, r in rows],
                                          targets=targets, iters=iters)


def case_vs_kmc(R, a, report):
    iters = a.kmc_iters
    if a.quick:
        plan = [("gmm-3k", None), ("debian-3k", None)]
    else:
        plan = [("gmm-5k", None), ("debian-5k", None), ("gmm-20k", a.kmc_timeout), ("debian-20k", a.kmc_timeout)]
    base = dict(levels=3, K=256, n_init=1, max_iter=iters, seed=42, tol=1e-4)
    rows = []
    for ds, limit in plan:
        rows.append((ds, "tessera balanced", R.run("tessera", ds, dict(base, balance=True))))
        rows.append((ds, "k-means-constrained (n_jobs=2)",
                     R.run("kmc-rq", ds, dict(base, n_jobs=2), timeout=limit)))
    print_rq_table(f"== vs_kmeans_constrained: MiniOneRec's constrained RQ-KMeans (KMeansConstrained per level, "
                   f"size_min=max(1,n//K-1), size_max=n//K+1) vs tessera balanced; L=3, K=256, n_init=1, "
                   f"max_iter={iters}, tol=1e-4 for both ==", rows)
    print("   targets: tessera ≥ 100× faster; tessera MSE within 1% of k-means-constrained "
          "(ratio k-means-constrained/tessera shown as t/tess; mse/tess < 1 means k-means-constrained is better)")
    targets = []
    for ds, _ in plan:
        t = {lab: r for d, lab, r in rows if d == ds}
        tb, kc = t.get("tessera balanced"), t.get("k-means-constrained (n_jobs=2)")
        if not (tb and tb.get("ok") and kc):
            continue
        if kc.get("ok"):
            sp, mr = kc["time_s"] / tb["time_s"], tb["mse"] / kc["mse"]
            print(f"   {ds:<11} speed-up = {sp:8.1f}× ({verdict(sp >= 100)})   MSE tessera/kmc = {mr:6.4f} "
                  f"({verdict(mr <= 1.01)})")
            targets.append(dict(dataset=ds, speedup=sp, mse_ratio=mr, speed_met=sp >= 100, mse_met=mr <= 1.01))
        elif kc.get("timeout"):
            lim = kc["process_wall_s"]
            sp = lim / tb["time_s"]
            print(f"   {ds:<11} k-means-constrained did not finish in {lim:.0f} s: speed-up ≥ {sp:.0f}× "
                  f"(a lower bound, not a measurement; MSE not available)")
            targets.append(dict(dataset=ds, speedup_lower_bound=sp, timeout_s=lim))
    report["cases"]["vs_kmeans_constrained"] = dict(rows=[dict(r, label=l) for d, l, r in rows],
                                                    targets=targets, iters=iters)


def case_exact_vs_scalable(R, a, report):
    combos = [(2000, 64)] if a.quick else [(2000, 64), (2000, 256), (20000, 64), (20000, 256)]
    print("\n== exact_vs_scalable: one size-constrained assignment problem (cost = squared distances of n "
          "Gaussian-mixture points, d=64, to k centroids; bounds max(1,n//k-1)..n//k+1): "
          "exact min-cost flow (LEMON network simplex) vs the scalable BalancedAssigner ==")
    hdr = (f"{'n':>6} {'k':>4} {'exact s':>9} {'scalable s':>10} {'speed-up':>9} {'exact objective':>16} "
           f"{'scalable objective':>18} {'gap %':>9} {'RSS MB ex/sc':>13} {'load1':>5}")
    print(hdr)
    print("-" * len(hdr))
    out = []
    for n, k in combos:
        p = dict(n=n, k=k, seed=0)
        ex, sc = R.run("assign-exact", None, p), R.run("assign-scalable", None, p)
        load = ex.get("load_before", [0])[0]
        if not (ex.get("ok") and sc.get("ok")):
            cols = []
            for name, r in (("exact", ex), ("scalable", sc)):
                cols.append(f"{name}: {r['time_s']:.3f} s, objective {r['objective']:.6g}, RSS {rss_mb(r):.0f} MB"
                            if r.get("ok") else f"{name} FAILED: {(r.get('error') or '')[:80]}")
            print(f"{n:>6} {k:>4}  " + "; ".join(cols) + f"  (load1 {load:.1f})")
        else:
            for name, r in (("exact", ex), ("scalable", sc)):
                if not r.get("bounds_ok"):
                    print(f"   !! {name} solution violates the bounds: sizes {r.get('sizes')} vs {r.get('bounds')}")
            gap = 100 * (sc["objective"] - ex["objective"]) / ex["objective"]
            print(f"{n:>6} {k:>4} {ex['time_s']:>9.3f} {sc['time_s']:>10.3f} {ex['time_s'] / sc['time_s']:>8.1f}× "
                  f"{ex['objective']:>16.6g} {sc['objective']:>18.6g} {gap:>9.2e} "
                  f"{rss_mb(ex):>6.0f}/{rss_mb(sc):<6.0f} {load:>5.1f}")
        out.append(dict(n=n, k=k, exact=ex, scalable=sc))
    print("   gap % = (scalable − exact) / exact × 100; cluster sizes of both are checked against the bounds here.")
    report["cases"]["exact_vs_scalable"] = dict(rows=out)


def case_scale_1m(R, a, report):
    iters = a.scale_iters
    base = dict(levels=3, K=256, n_init=1, max_iter=iters, seed=42, balance=True)
    rows = [("gmm-1m", "tessera balanced", R.run("tessera", "gmm-1m", base)),
            ("gmm-1m", "tessera balanced, every iteration on all rows",
             R.run("tessera", "gmm-1m", dict(base, sample_warm_start=False))),
            ("gmm-1m", "tessera balanced, train 100000",
             R.run("tessera", "gmm-1m", dict(base, train_sample=100000)))]
    print_rq_table(f"== scale_1m: 1,000,000 × 128 synthetic, K=256, L=3, balanced, n_init=1, max_iter={iters}, "
                   f"through the CLI ==", rows)
    for _, lab, r in rows:
        if r.get("ok"):
            print(f"   {lab}: {r['time_s'] / 60:.1f} min (library), {r.get('wall_s', 0) / 60:.1f} min wall "
                  f"incl. reading the 512 MB input and writing outputs; peak RSS {rss_mb(r):.0f} MB; "
                  f"per-level seconds {[round(s, 1) for s in r.get('reported', {}).get('level_seconds', [])]}")
    print("   target: completes in minutes, not hours")
    report["cases"]["scale_1m"] = dict(rows=[dict(r, label=l) for d, l, r in rows], iters=iters)


def case_kmeans_vs_faiss(R, a, report):
    """Plain (unbalanced) single k-means, K = 256: tessera.kmeans (Python module) vs faiss.Kmeans."""
    iters, K = a.iters, 256
    sets = ["siftsmall", "bigann10k"] if a.quick else ["siftsmall", "bigann10k", "debian", "gmm-100k"]
    base = dict(K=K, n_init=1, max_iter=iters, seed=42)
    print(f"\n== kmeans_vs_faiss: one plain (unbalanced) k-means, K={K}, n_init/nredo=1, {iters} iterations: "
          f"tessera.kmeans(balanced=False, tol={a.kmeans_tol:g}, the build's defaults otherwise) through the "
          f"Python module vs faiss.Kmeans(niter={iters}, seed=42) with its defaults (random init, trains on at most "
          f"max_points_per_centroid·K = {256 * K:,} rows) and with max_points_per_centroid = n//K+1 (all rows) ==")
    hdr = (f"{'dataset':<10} {'contender':<26} {'time s':>8} {'train s':>8} {'t/tess':>7} {'iters':>5} "
           f"{'train rows':>10} {'RSS MB':>7} {'MSE':>11} {'mse/tess':>8}  {'sizes':<11} {'empty':>5} "
           f"{'perplex.':>8} {'load1':>5}")
    rows, targets = [], []
    for ds in sets:
        n = R.data(ds).shape[0]
        plan = [("tessera kmeans", R.run("tessera-kmeans", ds, dict(base, tol=a.kmeans_tol))),
                ("faiss Kmeans (defaults)", R.run("faiss-kmeans", ds, base))]
        if n > 256 * K:
            plan.append(("faiss Kmeans, all rows", R.run("faiss-kmeans", ds, dict(base, all_rows=True))))
        print(hdr if not rows else "")
        if not rows:
            print("-" * len(hdr))
        ref = plan[0][1] if plan[0][1].get("ok") else None
        for lab, r in plan:
            rows.append((ds, lab, r))
            load = r.get("load_before", [0])[0]
            if not r.get("ok"):
                print(f"{ds:<10} {lab:<26} {'—':>8}  {r.get('error', '')[:100]}")
                continue
            t, m = r["time_s"], r.get("mse")
            lo, hi = r["sizes"][0]
            print(f"{ds:<10} {lab:<26} {fmt_time(t):>8} {fmt_time(r.get('train_s')):>8} "
                  f"{fmt_ratio(t, ref and ref['time_s']):>7} {r.get('iterations', 0):>5} {r.get('train_rows', 0):>10,} "
                  f"{rss_mb(r):>7.0f} {m:>11.5g} {fmt_ratio(m, ref and ref.get('mse')):>8}  {f'{lo}-{hi}':<11} "
                  f"{r['unused_codes'][0]:>5} {r['perplexity'][0]:>8.1f} {load:>5.1f}"
                  + ("  (reused)" if r.get("reused") else ""))
            if r.get("warning"):
                print(f"{'':<10} !! {r['warning']}")
        if n <= 256 * K:
            print(f"{'':<10} (n = {n:,} ≤ 256·K: faiss's defaults already train on all rows)")
        sys.stdout.flush()
    inits = sorted({r.get("init", "?") for _, lab, r in rows if lab == "tessera kmeans" and r.get("ok")})
    if inits:
        print(f"   tessera's init (the build's default): {', '.join(inits)}")
    print("   time: tessera = the kmeans call (labels of every row included); faiss = train + index.search of every "
          "row (the labels). MSE = mean((x − C[labels])²) recomputed here; faiss's labels are every row's nearest "
          "centroid. empty = clusters with no row; perplex. = exp(entropy of the cluster sizes), K at best.")
    print("   targets (issue 14: as good and as fast as faiss's): tessera time ≤ faiss (defaults) time; tessera MSE ≤ "
          "faiss (defaults) MSE; vs all rows for reference")
    for ds in sets:
        t = {lab: r for d, lab, r in rows if d == ds and r.get("ok")}
        tk = t.get("tessera kmeans")
        if not tk:
            continue
        line, entry = [], dict(dataset=ds)
        for lab, key in (("faiss Kmeans (defaults)", "defaults"), ("faiss Kmeans, all rows", "all_rows")):
            f = t.get(lab)
            if not f:
                continue
            tr, mr = tk["time_s"] / f["time_s"], tk["mse"] / f["mse"]
            line.append(f"vs faiss {key}: time {tr:5.2f} ({verdict(tr <= 1)}), MSE {mr:6.4f} ({verdict(mr <= 1)})")
            entry.update({f"time_ratio_{key}": tr, f"mse_ratio_{key}": mr, f"time_met_{key}": tr <= 1,
                          f"mse_met_{key}": mr <= 1})
        print(f"   {ds:<10} tessera/faiss " + ";  ".join(line))
        targets.append(entry)
    report["cases"]["kmeans_vs_faiss"] = dict(rows=[dict(r, label=l) for d, l, r in rows], targets=targets,
                                              iters=iters, tol=a.kmeans_tol)


def case_rq_heavy_tail(R, a, report):
    """Unbalanced 3 × 256 RQ on the heavy-tailed mixture: the user's report of collapsing levels 2 and 3."""
    it = a.ht_iters
    ds = "heavy-200k" if a.quick else "heavy-1m"
    base = dict(levels=3, K=256, n_init=1, max_iter=it, seed=42)
    plan = [("tessera unbalanced", "tessera", dict(base, balance=False, dedup="none")),
            ("faiss RQ beam=1 (defaults)", "faiss-rq", dict(base, faiss_niter="default")),
            ("faiss RQ beam=1, train_type=0", "faiss-rq", dict(base, faiss_niter="default", train_type=0)),
            (f"faiss RQ beam=1, niter={it}", "faiss-rq", dict(base)),
            ("faiss Kmeans loop", "faiss-kmeans-rq", dict(base))]
    rows = [(ds, lab, R.run(runner, ds, p)) for lab, runner, p in plan]
    n = R.data(ds).shape[0]
    print(f"\n== rq_heavy_tail: unbalanced RQ, L=3, K=256, on {ds} ({datasets.describe(ds)}). tessera: `sid build "
          f"--balance none --n-init 1 --max-iter {it} --dedup none`; faiss ResidualQuantizer(d, 3, 8), max_beam_size=1, "
          f"default training (train_type=1 progressive-dim k-means, cp.niter=10), then train_type=0 (plain k-means "
          f"per level), then niter={it}; faiss Kmeans residual loop niter={it}, nredo=1 ==")
    hdr = (f"{'contender':<32} {'time s':>8} {'t/tess':>7} {'RSS MB':>7} {'MSE':>10} {'mse/tess':>8} "
           f"{'perplexity per level':<22} {'largest cluster per level':<27} {'coll.':>6} {'load1':>5}")
    print(hdr)
    print("-" * len(hdr))
    ref = rows[0][2] if rows[0][2].get("ok") else None
    for _, lab, r in rows:
        if not r.get("ok"):
            print(f"{lab:<32} {'—':>8}  {r.get('error', '')[:100]}")
            continue
        t, m = r["time_s"], r["mse"]
        ppl = " ".join(f"{v:.1f}" for v in r["perplexity"])
        big = " ".join(f"{100 * v / n:.1f}%" for v in r["max_cluster"])
        print(f"{lab:<32} {fmt_time(t):>8} {fmt_ratio(t, ref and ref['time_s']):>7} {rss_mb(r):>7.0f} {m:>10.5g} "
              f"{fmt_ratio(m, ref and ref.get('mse')):>8} {ppl:<22} {big:<27} {r['collision_rate']:>6.3f} "
              f"{r.get('load_before', [0])[0]:>5.1f}" + ("  (reused)" if r.get("reused") else ""))
        if r.get("warning"):
            print(f"{'':<4}!! {r['warning']}")
    print(f"   perplexity = exp(entropy of a level's cluster sizes) (256 at best); largest cluster as % of the "
          f"{n:,} rows; coll. = items whose 3-token code is not unique. t/tess, mse/tess: contender / tessera "
          f"(> 1: tessera better).")
    print("   the user's report (their data): tessera levels 2-3 perplexity 16-40 of 256, one cluster ~18% of the rows; "
          "MSE tessera 9.75, faiss RQ 8.97 (tessera/faiss RQ = 1.087), faiss Kmeans loop 10.0 (1.115).")
    print("   targets (issue 14: as good as faiss's): tessera MSE ≤ faiss RQ (defaults) MSE; tessera time ≤ faiss RQ "
          "(defaults) time")
    t = {lab: r for _, lab, r in rows if r.get("ok")}
    tu, fq = t.get("tessera unbalanced"), t.get("faiss RQ beam=1 (defaults)")
    targets = {}
    if tu and fq:
        tr, mr = tu["time_s"] / fq["time_s"], tu["mse"] / fq["mse"]
        print(f"   MSE tessera/faiss RQ = {mr:6.3f} ({verdict(mr <= 1)});  time tessera/faiss RQ = {tr:5.2f} "
              f"({verdict(tr <= 1)});  tessera levels 2-3: perplexity {tu['perplexity'][1]:.1f} / "
              f"{tu['perplexity'][2]:.1f}, largest cluster {100 * tu['max_cluster'][1] / n:.1f}% / "
              f"{100 * tu['max_cluster'][2] / n:.1f}% (faiss RQ: {fq['perplexity'][1]:.1f} / {fq['perplexity'][2]:.1f}, "
              f"{100 * fq['max_cluster'][1] / n:.1f}% / {100 * fq['max_cluster'][2] / n:.1f}%)")
        targets = dict(dataset=ds, time_ratio=tr, mse_ratio=mr, time_met=tr <= 1, mse_met=mr <= 1)
    report["cases"]["rq_heavy_tail"] = dict(rows=[dict(r, label=l) for d, l, r in rows], targets=targets,
                                            iters=it, dataset=ds)


CASE_FUNCS = {"rq_vs_faiss": case_rq_vs_faiss, "vs_kmeans_constrained": case_vs_kmc,
              "exact_vs_scalable": case_exact_vs_scalable, "scale_1m": case_scale_1m,
              "kmeans_vs_faiss": case_kmeans_vs_faiss, "rq_heavy_tail": case_rq_heavy_tail}


# ----------------------------------------------------------------------------------------------- main
def environment(a):
    import faiss
    env = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
                                          "OPENBLAS_NUM_THREADS")}
    vers = dict(python=platform.python_version(), numpy=np.__version__, faiss=faiss.__version__)
    try:
        from importlib.metadata import version
        vers["k-means-constrained"] = version("k-means-constrained")
        vers["ortools"] = version("ortools")
    except Exception:  # noqa: BLE001
        pass
    try:
        vers["tessera-cli"] = subprocess.run([str(a.cli), "version"], capture_output=True, text=True,
                                             timeout=30).stdout.strip()
    except Exception as e:  # noqa: BLE001
        vers["tessera-cli"] = f"unavailable ({e})"
    try:
        git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        vers["git"] = git + (" (uncommitted changes)" if dirty else "")
    except Exception:  # noqa: BLE001
        pass
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except Exception:  # noqa: BLE001
        pass
    return dict(env=env, versions=vers, cpu=cpu, cores=os.cpu_count(), host=platform.node())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small N, few iterations, no 1M case (~3 minutes)")
    ap.add_argument("--only", default="", help=f"comma-separated cases to run: {', '.join(CASES)}")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(machine.SCRATCH),
                    help="results go to OUT/results/<timestamp>.json ($TESSERA_BENCH_OUT)")
    ap.add_argument("--data-cache", default=None, help="float32 .npy dataset cache (default OUT/data)")
    ap.add_argument("--cli", default=None, help="tessera CLI (default build-bench/tessera, else build/tessera)")
    ap.add_argument("--backend", choices=["cli", "py"], default="cli",
                    help="run tessera's RQ through the CLI (default) or the Python module in-process")
    ap.add_argument("--pymodule", default=None, help="PYTHONPATH for `import tessera` (default <build>/python)")
    ap.add_argument("--iters", type=int, default=None,
                    help="Lloyd iterations in rq_vs_faiss and kmeans_vs_faiss (default 25; quick 5)")
    ap.add_argument("--kmeans-tol", type=float, default=0.0,
                    help="tessera's tol in kmeans_vs_faiss (default 0: every iteration runs, as in faiss, which "
                         "has no early stop; 1e-4 is the library default)")
    ap.add_argument("--ht-iters", type=int, default=25,
                    help="tessera --max-iter (and the faiss Kmeans loop's niter) in rq_heavy_tail, quick too")
    ap.add_argument("--kmc-iters", type=int, default=None,
                    help="max_iter in vs_kmeans_constrained (default 10; quick 3)")
    ap.add_argument("--kmc-timeout", type=float, default=1800,
                    help="seconds before a k-means-constrained run at N=20,000 is stopped")
    ap.add_argument("--scale-iters", type=int, default=25, help="max_iter in scale_1m")
    ap.add_argument("--probe-timeout", type=float, default=90,
                    help="seconds for the small probe runs made before the cases")
    ap.add_argument("--no-probe", action="store_true", help="skip the probe runs")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds before any contender is stopped")
    ap.add_argument("--peer-blas", choices=["fitted", "installed"], default="fitted",
                    help="peers' OpenBLAS kernels: the ones tessera selected (default) or as installed "
                         "(bench/machine.py)")
    a = ap.parse_args()
    a.iters = a.iters or (5 if a.quick else 25)
    a.kmc_iters = a.kmc_iters or (3 if a.quick else 10)
    a.data_cache = a.data_cache or str(Path(a.out) / "data")
    if a.cli is None:
        a.cli = next((p for p in (REPO / "build-bench" / "tessera", REPO / "build" / "tessera") if p.exists()),
                     REPO / "build" / "tessera")
    a.cli = Path(a.cli).resolve()
    a.pymodule = a.pymodule or str(a.cli.parent / "python")
    a.peer_env = machine.peer_blas_env(a.cli, a.peer_blas)
    only = [c.strip() for c in a.only.split(",") if c.strip()] or CASES
    unknown = [c for c in only if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; choose from {CASES}")
    if a.quick and "scale_1m" in only and not a.only:
        only.remove("scale_1m")

    R = Runner(a)
    info = environment(a)
    report = dict(timestamp=R.stamp, args={k: str(v) for k, v in vars(a).items()}, machine=info, cases={})
    print(f"tessera semantic-ID benchmarks — {R.stamp}{'  (QUICK)' if a.quick else ''}")
    print(f"machine: {info['cpu']} × {info['cores']} cores; threads per contender: {a.threads}; "
          f"load average at start {tuple(round(v, 2) for v in os.getloadavg())}")
    print(f"versions: {info['versions']}")
    print(f"BLAS: tessera {machine.tessera_blas(a.cli)}; peers ({a.peer_blas}) "
          f"{a.peer_env or 'as installed'}; every worker gets OMP/OPENBLAS/MKL_NUM_THREADS={a.threads}")
    print(f"tessera via {'the CLI ' + str(a.cli) if a.backend == 'cli' else 'the Python module'}; "
          f"tessera time = library seconds_total (fit + metrics + collision resolution, no file I/O); "
          f"Python contenders' time = the algorithm call(s) only, data already in memory.")
    if a.backend == "py" or any(c in only for c in ("kmeans_vs_faiss", "exact_vs_scalable")):
        print(f"tessera Python module (`import tessera` with PYTHONPATH={a.pymodule}) for "
              + ("every tessera run" if a.backend == "py" else
                 ", ".join(c for c in ("kmeans_vs_faiss", "exact_vs_scalable") if c in only)))
    print("peak RSS = the contender's process (VmHWM / wait4 ru_maxrss), including its input data in memory. "
          "load1 = 1-minute load average when the contender started (other builds share the 2 cores).")
    print("datasets: " + "; ".join(f"{n}: {datasets.describe(n)}" for n in
                                   ["siftsmall", "debian", "gmm-20k", "gmm-1m"]
                                   + (["bigann10k", "gmm-100k"] if "kmeans_vs_faiss" in only else [])
                                   + (["heavy-1m"] if "rq_heavy_tail" in only else [])))
    if not a.no_probe:
        R.probe(only)
    out = Path(a.out) / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{R.stamp}{'-quick' if a.quick else ''}.json"

    def save():  # after every case, so an interrupted run keeps what it measured
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
        os.replace(tmp, path)

    t0 = time.perf_counter()
    for c in only:
        tc = time.perf_counter()
        CASE_FUNCS[c](R, a, report)
        print(f"   [{c}: {time.perf_counter() - tc:.0f} s]")
        sys.stdout.flush()
        save()
    total = time.perf_counter() - t0
    report["total_seconds"] = total
    report["load_end"] = os.getloadavg()
    save()
    print(f"\ntotal {total:.0f} s; load average at end {tuple(round(v, 2) for v in os.getloadavg())}; "
          f"results: {path}")


if __name__ == "__main__":
    main()
