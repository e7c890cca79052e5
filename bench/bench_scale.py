#!/usr/bin/env python3
"""Scaling of balanced semantic IDs in one process: `tessera sid build` (balanced, K = 256, L = 3) on N × 128
synthetic embeddings stored as .npy shards, for growing N.

    .venv/bin/python bench/bench_scale.py [--sizes 1M 2M 4M] [--threads 2] [--train-sample 65536] [--keep] [--json]

For each N: the data are generated shard by shard (at most 1M rows each, never the whole matrix in this
process) under machine.SCRATCH/scale-data, then
  * tessera      `tessera sid build SHARDS --balance exact --train-sample S` as a subprocess: wall and CPU
                 seconds and peak RSS of that process (wait4), peak RSS from its metrics.json, seconds per
                 million items, and per level the smallest and largest cluster against the size bounds;
  * faiss        (the time reference; unbalanced) faiss.Kmeans per level trained on a uniform sample of the same
                 size (niter = 25, nredo = 1: faiss's defaults), then every row's greedy residual codes by
                 IndexFlatL2 search, streamed shard by shard from the memory-mapped files;
  * dask 1w, 2w  run_dask_build (tessera.distributed's, else bench/bench_scale_dask.py's) with 1 and 2 local
                 worker processes, when tessera.distributed imports from --pymodule (skipped with a message
                 otherwise); wall and CPU seconds of the driver process as wait4 reports them (CPU includes the
                 worker processes it reaped), peak RSS the sum of the workers' and the client's.
Every contender runs in its own subprocess (the peers and tessera must not share a process; memory is per
contender). Benchmarks are not tests: nothing here fails on absolute time; the run says whether the peak RSS
stayed within the issue's budget (input bytes + 2 GiB) and whether every cluster size lies within its bounds.

Sizes: 1M 2M 4M 8M 10M 16M. Disk: 512 MB per million rows for the shards (8M: 4.1 GB, 10M: 5.1 GB, 16M: 8.2 GB)
plus the outputs (about 60 MB per million: codes.npy, index.json); the free space under the scratch directory is
checked before a size is generated. Time (quiet 2-core Zen 4, Dec 2026): generating ≈ 6–14 s per million rows;
tessera about 15–20 s per million rows (1M 28–37 s, 4M 65–77 s, 10M 153–166 s); Dask on 2 workers 1.1–1.6× that,
on 1 worker 1.7–2.4× (docs/semantic-ids.md has the table). Generated shards are removed at the end unless --keep (then a later
run with the same --seed reuses them).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import machine  # noqa: E402

D = 128
K = 256
LEVELS = 3
SHARD_ROWS = 1_000_000
SIZES = {"1M": 1_000_000, "2M": 2_000_000, "4M": 4_000_000, "8M": 8_000_000, "10M": 10_000_000,
         "16M": 16_000_000}
GIB = 1 << 30


# ------------------------------------------------------------------------------------------------ data
class Mixture:
    """Embedding-like synthetic data: a Gaussian mixture of `components` modes in d dimensions with unequal
    weights (Zipf-like), centres of unequal norms, and anisotropic noise (every mode has its own per-axis
    scales, lognormal, and the axes' overall variance decays like a spectrum). Fully determined by the seed;
    shard s draws its rows from its own generator (seed, s), so a shard does not depend on N."""

    def __init__(self, seed: int, d: int = D, components: int = 300):
        g = np.random.default_rng([seed, 0xC0FFEE])
        self.d = d
        w = 1.0 / np.arange(1, components + 1) ** 0.7
        self.weights = w / w.sum()
        spectrum = 1.0 / np.sqrt(1.0 + np.arange(d) / 8.0)  # decaying axis variance, as real embeddings have
        self.centres = (g.standard_normal((components, d)) * spectrum * g.uniform(0.5, 1.5, (components, 1)))
        self.scales = (0.35 * spectrum * np.exp(0.4 * g.standard_normal((components, d)))).astype(np.float32)
        self.centres = self.centres.astype(np.float32)
        self.seed = seed

    def shard(self, index: int, rows: int, block: int = 250_000) -> np.ndarray:
        g = np.random.default_rng([self.seed, index])
        out = np.empty((rows, self.d), dtype=np.float32)
        for a in range(0, rows, block):
            b = min(rows, a + block)
            comp = g.choice(len(self.weights), size=b - a, p=self.weights)
            noise = g.standard_normal((b - a, self.d), dtype=np.float32)
            out[a:b] = self.centres[comp] + noise * self.scales[comp]
        return out


def data_dir(root: Path, n: int, seed: int) -> Path:
    return root / "scale-data" / f"gmm-{n}-{D}-seed{seed}"


def free_bytes(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(path).free


def generate(root: Path, n: int, seed: int) -> tuple[Path, float]:
    """The shards of N rows (reused when complete); returns their directory and the seconds spent."""
    out = data_dir(root, n, seed)
    done = out / "COMPLETE"
    if done.exists():
        return out, 0.0
    need = n * D * 4 + n * 60 + GIB  # shards, outputs, and a margin
    have = free_bytes(root)
    if have < need:
        raise SystemExit(f"not enough disk under {root}: {n:,} rows need about {need / GIB:.1f} GiB, "
                         f"{have / GIB:.1f} GiB free (set TESSERA_BENCH_OUT or --out elsewhere)")
    out.mkdir(parents=True, exist_ok=True)
    mix = Mixture(seed)
    t0 = time.perf_counter()
    for s, a in enumerate(range(0, n, SHARD_ROWS)):
        rows = min(SHARD_ROWS, n - a)
        x = mix.shard(s, rows)
        np.save(out / f"part-{s:04d}.npy", x)
        del x
        print(f"  .. generated shard {s} ({a + rows:,}/{n:,} rows)", file=sys.stderr, flush=True)
    done.write_text(json.dumps(dict(rows=n, d=D, seed=seed)))
    return out, time.perf_counter() - t0


# --------------------------------------------------------------------------------------------- running
def run_measured(cmd, env, timeout) -> dict:
    """Run cmd; wall seconds, and the child's own CPU seconds and peak RSS (wait4: that process alone)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = t0 + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            p.kill()
            pid, status, ru = os.wait4(p.pid, 0)
            return dict(ok=False, error=f"timeout after {timeout:.0f} s")
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    out = p.stdout.read().decode(errors="replace")
    p.returncode = os.waitstatus_to_exitcode(status)
    res = dict(ok=p.returncode == 0, wall_s=wall, cpu_s=ru.ru_utime + ru.ru_stime,
               rss_bytes=ru.ru_maxrss * 1024, log=out[-2000:])
    if not res["ok"]:
        res["error"] = out.strip()[-400:]
    return res


def thread_env(threads: int) -> dict:
    return dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
                OMP_WAIT_POLICY="PASSIVE")


def run_tessera(args, shards: Path, work: Path, n: int) -> dict:
    out = work / f"tessera-{n}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [args.cli, "sid", "build", str(shards), "--out", str(out), "--levels", str(LEVELS), "--codebook-size",
           str(K), "--balance", "exact", "--train-sample", str(args.train_sample), "--seed", str(args.seed),
           "--threads", str(args.threads), "-q"]
    print("  .. " + " ".join(cmd), file=sys.stderr, flush=True)
    res = run_measured(cmd, thread_env(args.threads), args.timeout)
    if not res["ok"]:
        return res
    m = json.loads((out / "metrics.json").read_text())
    res["metrics_peak_rss_bytes"] = m.get("peak_rss_bytes")
    res["seconds_total"] = m.get("seconds_total")
    res["mse"] = m.get("mse")
    res["mse_before"] = m.get("mse_before")
    res["collision_rate"] = m.get("collision_rate")
    res["levels"] = [dict(min=l["min_cluster_size"], max=l["max_cluster_size"], lo=l.get("size_min"),
                          hi=l.get("size_max"), seconds=l.get("seconds"), iterations=l.get("iterations"))
                     for l in m["levels"]]
    res["bounds_hold"] = all(l["lo"] is not None and l["lo"] <= l["min"] and l["max"] <= l["hi"]
                             for l in res["levels"])
    res["output_bytes"] = sum(f.stat().st_size for f in out.iterdir())
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return res


def run_worker_process(args, kind: str, shards: Path, work: Path, n: int, extra: dict) -> dict:
    spec = dict(kind=kind, shards=str(shards), n=n, threads=args.threads, train_sample=args.train_sample,
                seed=args.seed, out=str(work / f"{kind}-{n}.json"), work=str(work / f"{kind}-{n}"), **extra)
    sp = work / f"{kind}-{n}.spec.json"
    sp.write_text(json.dumps(spec))
    env = thread_env(args.threads)
    if kind == "faiss":
        env.update(args.peer_env)
    if kind.startswith("dask"):
        env["PYTHONPATH"] = args.pymodule + os.pathsep + env.get("PYTHONPATH", "")
    print(f"  .. {kind} on {n:,} rows", file=sys.stderr, flush=True)
    res = run_measured([sys.executable, str(Path(__file__).resolve()), "--worker", str(sp)], env, args.timeout)
    if res["ok"] and Path(spec["out"]).exists():
        res.update(json.loads(Path(spec["out"]).read_text()))
    elif res["ok"]:
        res = dict(ok=False, error="the worker wrote no result")
    shutil.rmtree(spec["work"], ignore_errors=True)
    return res


# ---------------------------------------------------------------------------------------------- workers
def worker(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    if spec["kind"] == "faiss":
        res = faiss_worker(spec)
    else:
        res = dask_worker(spec)
    Path(spec["out"]).write_text(json.dumps(res))


def shard_paths(d: str) -> list[Path]:
    return sorted(Path(d).glob("part-*.npy"))


def faiss_worker(spec) -> dict:
    """faiss.Kmeans per level on a uniform sample's residuals, then greedy residual codes for every row, read
    shard by shard from the memory-mapped files (what an industrial RQ-KMeans pipeline does; no balance)."""
    import faiss
    faiss.omp_set_num_threads(spec["threads"])
    t0 = time.perf_counter()
    maps = [np.load(p, mmap_mode="r") for p in shard_paths(spec["shards"])]
    offsets = np.cumsum([0] + [m.shape[0] for m in maps])
    n = int(offsets[-1])
    rows = np.sort(np.random.default_rng(spec["seed"]).choice(n, size=spec["train_sample"], replace=False))
    sample = np.concatenate([maps[s][rows[(rows >= offsets[s]) & (rows < offsets[s + 1])] - offsets[s]]
                             for s in range(len(maps))]).astype(np.float32)
    r = sample.copy()
    books = []
    for m in range(LEVELS):
        km = faiss.Kmeans(D, K, niter=25, nredo=1, seed=spec["seed"] + m, verbose=False)
        km.train(r)
        _, idx = km.index.search(r, 1)
        r -= km.centroids[idx[:, 0]]
        books.append(km.centroids.copy())
    t_train = time.perf_counter() - t0
    indexes = []
    for b in books:
        ix = faiss.IndexFlatL2(D)
        ix.add(b)
        indexes.append(ix)
    codes = np.empty((n, LEVELS), dtype=np.int32)
    sizes = [np.zeros(K, dtype=np.int64) for _ in range(LEVELS)]
    err = 0.0
    for s, mp in enumerate(maps):
        for a in range(0, mp.shape[0], 262_144):
            res = np.array(mp[a:a + 262_144], dtype=np.float32)
            for m in range(LEVELS):
                _, idx = indexes[m].search(res, 1)
                c = idx[:, 0]
                codes[offsets[s] + a:offsets[s] + a + len(c), m] = c
                sizes[m] += np.bincount(c, minlength=K)
                res -= books[m][c]
            err += float(np.einsum("ij,ij->", res, res, dtype=np.float64))
    elapsed = time.perf_counter() - t0
    return dict(time_s=elapsed, train_s=t_train, mse=err / (n * D),
                levels=[dict(min=int(z.min()), max=int(z.max())) for z in sizes])


def import_dask_hook():
    """run_dask_build(input, out, workers, levels, codebook_size, train_sample, seed) -> dict: from
    tessera.distributed when it has one, else from bench/bench_scale_dask.py (which calls tessera.distributed)."""
    try:
        from tessera.distributed import run_dask_build  # noqa: PLC0415
    except ImportError:
        import tessera.distributed  # noqa: F401, PLC0415  (the engine itself must import)
        from bench_scale_dask import run_dask_build  # noqa: PLC0415
    return run_dask_build


def dask_worker(spec) -> dict:
    run_dask_build = import_dask_hook()
    t0 = time.perf_counter()
    out = run_dask_build(spec["shards"], spec["work"], spec["workers"], LEVELS, K, spec["train_sample"],
                         spec["seed"])
    res = dict(time_s=time.perf_counter() - t0)
    if isinstance(out, dict):
        res.update({k: v for k, v in out.items() if isinstance(v, (int, float, str, bool, list))})
        m = out.get("metrics") or {}
        res["levels"] = [dict(min=l.get("min_cluster_size"), max=l.get("max_cluster_size"), lo=l.get("size_min"),
                              hi=l.get("size_max")) for l in m.get("levels", [])]
        rss = out.get("peak_rss_bytes_per_worker") or []
        if rss:  # the driver's own RSS (wait4) does not see the workers: report the sum over processes
            res["workers_rss_bytes"] = sum(rss) + out.get("peak_rss_bytes_client", 0)
    return res


def dask_available(pymodule: str) -> str:
    """'' when tessera.distributed.run_dask_build imports (with the built module on the path), else why not."""
    env = dict(os.environ, PYTHONPATH=pymodule + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(HERE)!r}); "
                        "import bench_scale; bench_scale.import_dask_hook()"], env=env,
                       capture_output=True, text=True, timeout=120)
    return "" if p.returncode == 0 else (p.stderr.strip().splitlines() or ["import failed"])[-1]


# ------------------------------------------------------------------------------------------------ report
def fmt_mb(b) -> str:
    return f"{b / 2**20:8,.0f}" if b else "       —"


def print_table(rows, args) -> None:
    print(f"\nbalanced semantic IDs, K = {K}, L = {LEVELS}, d = {D}, --train-sample {args.train_sample}, "
          f"{args.threads} threads; RSS in MiB; budget = input + 2 GiB")
    hdr = (f"{'N':>11} {'contender':<10} {'wall s':>8} {'CPU s':>8} {'s / M':>7} {'peak RSS':>8} {'budget':>8} "
           f"{'t/tessera':>9}  clusters per level (min..max [bounds])")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        n = r["n"]
        base = r["contenders"].get("tessera", {})
        for name, c in r["contenders"].items():
            if not c.get("ok"):
                print(f"{n:>11,} {name:<10} {'skipped or failed: ' + str(c.get('error', ''))[:90]}")
                continue
            if c.get("workers_rss_bytes"):  # Dask: the client and its worker processes together
                c["rss_bytes"] = c["workers_rss_bytes"]
            rss = c.get("metrics_peak_rss_bytes") or c.get("rss_bytes")
            budget = n * D * 4 + 2 * GIB
            lv = "  ".join(f"{l['min']}..{l['max']}" + (f" [{l['lo']}..{l['hi']}]" if l.get("lo") is not None else "")
                           for l in c.get("levels", []))
            ok = "" if name != "tessera" else (" ok" if c.get("bounds_hold") else " BOUNDS VIOLATED")
            print(f"{n:>11,} {name:<10} {c['wall_s']:8.1f} {c['cpu_s']:8.1f} {c['wall_s'] / (n / 1e6):7.1f} "
                  f"{fmt_mb(c.get('rss_bytes'))} {'ok' if c.get('rss_bytes', 0) <= budget else 'OVER':>8} "
                  f"{machine.ratio(c['wall_s'], base.get('wall_s')) if base.get('ok') else '     —':>9}  {lv}{ok}")
            if name == "tessera" and rss != c.get("rss_bytes"):
                print(f"{'':>11} {'':<10} (metrics.json peak_rss_bytes: {fmt_mb(rss).strip()} MiB)")
    ts = [(r["n"], r["contenders"]["tessera"]) for r in rows if r["contenders"].get("tessera", {}).get("ok")]
    if ts:
        print("\ntessera seconds per million items: " +
              ", ".join(f"{n / 1e6:g}M {c['wall_s'] / (n / 1e6):.1f} s wall, {c['cpu_s'] / (n / 1e6):.1f} s CPU"
                        for n, c in ts))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", nargs="+", default=["1M", "2M", "4M"], choices=list(SIZES),
                    help="N values (default 1M 2M 4M)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-sample", type=int, default=256 * K,
                    help="rows the codebooks are trained on (default 256·K = 65,536: faiss's default cap of 256 "
                         "points per centroid)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=str(machine.SCRATCH), help="scratch directory (default machine.SCRATCH)")
    ap.add_argument("--cli", default=None, help="tessera CLI (default build/tessera)")
    ap.add_argument("--pymodule", default=None, help="PYTHONPATH for `import tessera` (Dask runs; default <cli dir>/python)")
    ap.add_argument("--no-faiss", action="store_true", help="skip the faiss reference")
    ap.add_argument("--no-dask", action="store_true", help="skip the Dask columns")
    ap.add_argument("--peer-blas", choices=["fitted", "installed"], default="fitted",
                    help="faiss's OpenBLAS kernels: the ones tessera selected (default) or as installed")
    ap.add_argument("--timeout", type=float, default=7200, help="seconds before a contender is stopped")
    ap.add_argument("--keep", action="store_true", help="keep the generated shards and the outputs")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker)
        return
    args.cli = str(Path(args.cli or REPO / "build" / "tessera").resolve())
    args.pymodule = args.pymodule or str(Path(args.cli).parent / "python")
    root = Path(args.out)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    work = root / "scale-work" / stamp
    work.mkdir(parents=True, exist_ok=True)
    args.peer_env = machine.peer_blas_env(args.cli, args.peer_blas)
    dask_why = "--no-dask" if args.no_dask else dask_available(args.pymodule)
    if dask_why:
        print(f"Dask columns skipped: {dask_why}", file=sys.stderr)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; tessera BLAS: {machine.tessera_blas(args.cli)}; "
          f"scratch {root} ({free_bytes(root) / GIB:.0f} GiB free)")
    rows, generated = [], []
    try:
        for size in sorted(args.sizes, key=SIZES.get):
            n = SIZES[size]
            shards, gen_s = generate(root, n, args.seed)
            if gen_s:
                generated.append(shards)
            print(f"N = {n:,}: {shards} ({n * D * 4 / GIB:.2f} GiB; generated in {gen_s:.0f} s)", file=sys.stderr)
            c = {"tessera": run_tessera(args, shards, work, n)}
            if not args.no_faiss:
                c["faiss"] = run_worker_process(args, "faiss", shards, work, n, {})
            for w in (1, 2):
                c[f"dask {w}w"] = (dict(ok=False, error=dask_why) if dask_why else
                                   run_worker_process(args, f"dask{w}", shards, work, n, dict(workers=w)))
            rows.append(dict(n=n, size=size, input_bytes=n * D * 4, contenders=c))
            if not args.keep and shards in generated:
                shutil.rmtree(shards, ignore_errors=True)
    finally:
        if not args.keep:
            for s in generated:
                shutil.rmtree(s, ignore_errors=True)
    print_table(rows, args)
    for r in rows:
        for c in r["contenders"].values():
            c.pop("log", None)
    result = dict(when=stamp, machine=platform.machine(), cores=os.cpu_count(), threads=args.threads,
                  train_sample=args.train_sample, K=K, levels=LEVELS, d=D, rows=rows)
    res_path = root / "results" / f"scale-{stamp}.json"
    res_path.parent.mkdir(parents=True, exist_ok=True)
    res_path.write_text(json.dumps(result, indent=1))
    print(f"\nresults: {res_path}")
    if args.json:
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
