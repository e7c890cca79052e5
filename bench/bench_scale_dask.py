"""Semantic IDs on Dask (tessera.distributed) on a directory of .npy shards, with 1 and 2 local worker
processes: seconds and peak RSS per worker.

    PYTHONPATH=build/python .venv/bin/python bench/bench_scale_dask.py SHARD_DIR [--workers 1 2]
        [--levels 3] [--codebook-size 256] [--train-sample 65536] [--seed 42]

``run_dask_build(input, out, workers, levels, codebook_size, train_sample, seed)`` is the importable hook
(bench/bench_scale.py calls it): it starts a LocalCluster of `workers` processes (one thread each), runs
``python -m tessera.distributed build`` semantics in-process, writes `out`, and returns
``{"seconds", "workers", "peak_rss_bytes_per_worker", "peak_rss_bytes_client", "metrics"}``.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time


def _peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_dask_build(input, out, workers, levels=3, codebook_size=256, train_sample=None, seed=42) -> dict:
    """Build semantic IDs of the shards `input` on a fresh LocalCluster of `workers` processes and save them to
    `out` (replaced if it exists). Returns seconds (build + save, not the cluster's start) and peak RSS."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from distributed import Client, LocalCluster

    import tessera.distributed as td

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                           env=td._worker_env(1))
    client = Client(cluster)
    try:
        t0 = time.perf_counter()
        res = td.build_semantic_ids(os.fspath(input), client=client, levels=levels, codebook_size=codebook_size,
                                    seed=seed, train_sample=train_sample)
        res.save(out, overwrite=True)
        seconds = time.perf_counter() - t0
        rss = client.run(_peak_rss)
        return {"seconds": seconds, "workers": workers,
                "peak_rss_bytes_per_worker": [rss[w] for w in sorted(rss)],
                "peak_rss_bytes_client": _peak_rss(), "metrics": res.metrics}
    finally:
        client.close()
        cluster.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="directory (or glob) of .npy shards")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--codebook-size", type=int, default=256)
    ap.add_argument("--train-sample", type=int, default=None)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=None, help="output directory (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="tessera-dask-bench-")
    try:
        print("| workers | seconds | peak RSS per worker (MB) | client peak RSS (MB) | assign s | boundary rows |")
        print("|---|---|---|---|---|---|")
        for w in args.workers:
            out = args.out or os.path.join(scratch, f"out-{w}")
            r = run_dask_build(args.input, out, w, args.levels, args.codebook_size, args.train_sample, args.seed)
            dist = r["metrics"]["distributed"]
            rows = ",".join(str(s.get("boundary_rows", "-")) for s in dist["assignment"])
            print(f"| {w} | {r['seconds']:.1f} | {', '.join(f'{b / 2**20:.0f}' for b in r['peak_rss_bytes_per_worker'])} "
                  f"| {r['peak_rss_bytes_client'] / 2**20:.0f} | {dist['seconds_assign']:.1f} | {rows} |", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
