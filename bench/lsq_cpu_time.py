#!/usr/bin/env python3
"""CPU seconds of LSQ training and encoding, tessera or faiss, one configuration per run.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/lsq_cpu_time.py tessera siftsmall 8x8 [--threads 2] [--pymodule build/python]
    OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=2 .venv/bin/python bench/lsq_cpu_time.py faiss siftsmall 8x8 --threads 2

Trains on the 10k base with the library's default parameters (tessera's are faiss's), encodes it and prints
one JSON line: wall and CPU seconds (process time: all threads) of train and encode, and the MSE per vector.
On a VM shared with other work, CPU seconds compare the two libraries more fairly than wall time
(bench_aq.py reports wall time). Data: the float32 cache bench_aq.py uses (made on first use).
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import datasets  # noqa: E402
import machine  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("lib", choices=["tessera", "faiss"])
ap.add_argument("set", choices=["siftsmall", "bigann10k"])
ap.add_argument("config", help="M x nbits, e.g. 8x8")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--pymodule", default=str(HERE.parent / "build" / "python"))
ap.add_argument("--data-cache", default=str(machine.SCRATCH / "aq" / "data"))
args = ap.parse_args()

x = datasets.load(args.set, args.data_cache)
M, nbits = map(int, args.config.split("x"))
if args.lib == "faiss":
    import faiss
    faiss.omp_set_num_threads(args.threads)
    q = faiss.LocalSearchQuantizer(x.shape[1], M, nbits)
else:
    sys.path.insert(0, args.pymodule)
    import tessera
    tessera.set_num_threads(args.threads)
    q = tessera.LocalSearchQuantizer(x.shape[1], M, nbits)
w0, c0 = time.perf_counter(), time.process_time()
q.train(x)
w1, c1 = time.perf_counter(), time.process_time()
codes = q.compute_codes(x)
w2, c2 = time.perf_counter(), time.process_time()
rec = q.decode(codes)
print(json.dumps(dict(lib=args.lib, set=args.set, config=args.config, threads=args.threads,
                      train_wall=round(w1 - w0, 2), train_cpu=round(c1 - c0, 2), encode_wall=round(w2 - w1, 3),
                      encode_cpu=round(c2 - c1, 3), mse=round(float(((x - rec) ** 2).sum(1).mean()), 1))), flush=True)
