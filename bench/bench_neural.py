#!/usr/bin/env python3
"""RQ-VAE and RQ-KMeans+ (issue 17): tessera's libtorch trainer against a PyTorch implementation of the same
model, and the semantic IDs of RQ-VAE vs RQ-KMeans+ vs balanced RQ-KMeans.

Needs torch in the project's .venv, which neither `make setup` nor `make bench` installs (it pulls several GB
of CUDA wheels):

    .venv/bin/pip install -r requirements/bench-neural.txt
    .venv/bin/python bench/bench_neural.py [--quick] [--only speed,quality] [--sets synthetic,debian]
        [--threads 1,2] [--timing-epochs 3] [--epochs 10] [--json PATH]

Without torch it prints a skip message and exits 0; without the neural CLI (build/tessera-neural) too.

speed: seconds per epoch of `tessera rqvae|rqkmeans-plus train` and of bench/torch_rqvae.py's loop (the same
model, AdamW, batch 2048, clipping at 1.0, MiniOneRec's default layers), each in its own process, at each
--threads: wall and process CPU time per epoch, the first epoch left out as warm-up. tessera's CPU time per
epoch is read from /proc/<pid>/stat when the CLI prints each epoch's line (--eval-every 0; the last line
comes after an evaluation on all rows, and the CPU time the process spends after that line — one more
evaluation and writing its files — is taken off the last interval); its wall time is the trainer's own
`seconds` in config.json. PyTorch's are time.perf_counter / time.process_time around each
epoch in its worker.

quality: on each set, `tessera sid build` (balanced RQ-KMeans, 3 × 256), `tessera rqkmeans-plus train`
(warm-started from that build's codebooks.npz) for 0 and --epochs epochs, `tessera rqvae train` for --epochs
epochs, each followed by `generate --dedup append --labels ...`: collision rate before resolution, codes used
per level, reconstruction MSE (sid: metrics `mse`, the RQ reconstruction of the input; neural: `recon_mse`, the
decoder's), items still colliding after resolution, prefix purity per level against the labels (Debian
sections; the synthetic set's mixture components), and the issue's targets.
Benchmarks are not tests: nothing here fails on absolute time.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import re
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

LAYERS = [2048, 1024, 512, 256, 128, 64]  # MiniOneRec's default
SIZES = [256, 256, 256]
E_DIM = 32
LR = {"rqvae": 1e-3, "rqkmeans-plus": 1e-4}  # the CLI's defaults (MiniOneRec's)
SETS = {"synthetic": "synthetic embedding-like, 20000 × 768: 256 Zipf-sized clusters in a 64-dim subspace + "
                     "anisotropic within-cluster spread + isotropic noise, L2-normalised rows (seed 20261206)",
        "debian": "Debian 12 package embeddings (LSA), 63440 × 256 float16 → float32, labels = Debian sections"}


# ----------------------------------------------------------------------------------------------- data
def synthetic(n=20_000, d=768, seed=20261206, clusters=256, rank=64):
    """Embedding-like rows: cluster centres and within-cluster directions in one rank-`rank` subspace,
    Zipf-sized clusters, isotropic noise, L2-normalised. Returns (x float32 n × d, cluster label per row)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, rank)))[0].T  # rank × d, orthonormal rows
    spec = (np.arange(rank) + 1.0) ** -0.5
    centres = rng.standard_normal((clusters, rank)) * spec
    w = (np.arange(clusters) + 1.0) ** -0.8
    w = rng.permutation(w / w.sum())
    lab = rng.choice(clusters, size=n, p=w)
    local = rng.standard_normal((clusters, rank, rank)) * (0.35 / np.sqrt(rank))  # per-cluster spread
    g = rng.standard_normal((n, rank))
    lat = centres[lab] + np.einsum("nr,nrs->ns", g, local[lab])
    x = lat @ basis + rng.standard_normal((n, d)) * (0.25 / np.sqrt(d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), lab


def prepare(name, cache: Path):
    """(data .npy path, labels .txt path) of a set, cached as float32."""
    cache.mkdir(parents=True, exist_ok=True)
    if name == "debian":
        xp = datasets.path("debian", cache)
        lp = cache / "debian-sections.txt"
        if not lp.exists():
            rows = datasets.data_file("debian-packages/items.tsv").read_text().splitlines()[1:]
            secs = [r.split("\t")[2] for r in rows]
            if len(secs) != np.load(xp, mmap_mode="r").shape[0]:
                raise SystemExit("debian-packages: items.tsv and embeddings.npy differ in rows")
            lp.write_text("\n".join(secs) + "\n")
        return xp, lp
    if name == "synthetic":
        xp, lp = cache / "neural-synthetic-20k-768.npy", cache / "neural-synthetic-20k-768.labels.txt"
        if not xp.exists() or not lp.exists():
            x, lab = synthetic()
            np.save(cache / "tmp.npy", x)
            os.replace(cache / "tmp.npy", xp)
            lp.write_text("\n".join(f"c{v}" for v in lab) + "\n")
        return xp, lp
    raise SystemExit(f"unknown set {name!r}; known: {', '.join(SETS)}")


# ----------------------------------------------------------------------------------------------- tessera
def proc_cpu(pid) -> float | None:
    """utime + stime (+ waited-for children) of a live process, seconds."""
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(v) for v in f[11:15]) / os.sysconf("SC_CLK_TCK")


def run_cli(args, cmd, log: Path, epoch_re=None):
    """Run the tessera CLI; with epoch_re, stamp (wall, process CPU) at each matching stderr line.
    Returns dict(rc, wall_s, cpu_s, stamps=[(epoch, wall, cpu)], stdout, stderr)."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    print(f"  .. {' '.join(str(c) for c in cmd[1:])}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    p = subprocess.Popen([str(c) for c in cmd], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, bufsize=1)
    stamps, err = [], []
    for line in p.stderr:
        err.append(line)
        m = epoch_re.search(line) if epoch_re else None
        if m and (not stamps or int(m.group(1)) > stamps[-1][0]):  # the first line of each epoch, in order
            stamps.append((int(m.group(1)), time.perf_counter() - t0, proc_cpu(p.pid)))
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    log.write_text(" ".join(map(str, cmd)) + "\n" + out + "".join(err))
    res = dict(rc=p.returncode, wall_s=wall, cpu_s=ru.ru_utime + ru.ru_stime, stamps=stamps, stdout=out,
               stderr="".join(err))
    if p.returncode != 0:
        print(f"     !! exit {p.returncode}: {''.join(err)[-400:]}", file=sys.stderr, flush=True)
    return res


def sid_build(a, xp, lp, out: Path, threads):
    if not (out / "metrics.json").exists():
        r = run_cli(a, [a.cli, "sid", "build", xp, "--out", out, "--codebook-sizes", ",".join(map(str, SIZES)),
                        "--labels", lp, "--dedup", "append", "--threads", threads, "-q"], out.parent / f"{out.name}.log")
        if r["rc"]:
            raise SystemExit(f"tessera sid build failed: {r['stderr'][-500:]}")
    return json.loads((out / "metrics.json").read_text())


def train_cmd(a, method, xp, out, epochs, threads, codebooks=None, eval_every=0):
    cmd = [a.cli, method, "train", "--data", xp, "--out", out, "--epochs", epochs, "--threads", threads,
           "--eval-every", eval_every, "--layers", ",".join(map(str, LAYERS))]
    if method == "rqvae":
        cmd += ["--codebook-sizes", ",".join(map(str, SIZES)), "--e-dim", E_DIM]
    else:
        cmd += ["--codebooks", codebooks]
    return cmd


# ----------------------------------------------------------------------------------------------- PyTorch worker
def worker(spec_path):
    spec = json.loads(Path(spec_path).read_text())
    import torch
    import torch_rqvae
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    x = np.load(spec["data"]).astype(np.float32)
    d = x.shape[1]
    plus = spec["method"] == "rqkmeans-plus"
    model = torch_rqvae.RQVAE(d, d if plus else E_DIM, LAYERS, SIZES, residual_encoder=plus,
                              residual_decoder=plus,  # tessera's rqkmeans-plus defaults (--decoder residual,
                              partial_sum_commitment=plus)  # --commitment partial-sums)
    if plus:  # the same warm start as tessera's
        with np.load(spec["codebooks"]) as z, torch.no_grad():
            for l, vq in enumerate(model.rq.vq_layers):
                vq.embedding.weight.copy_(torch.from_numpy(z[f"codebook_{l}"]))
    else:
        model.init_codebooks_from_rows(x, spec["seed"])
    reps = torch_rqvae.train(model, x, spec["epochs"], batch_size=2048, lr=LR[spec["method"]],
                             seed=spec["seed"],
                             on_epoch=lambda r: print(f"torch epoch {r['epoch']}  loss {r['loss']:.6g}  "
                                                      f"{r['wall_s']:.1f} s", file=sys.stderr, flush=True))
    codes = model.codes(x)  # after the timed epochs, as tessera's final evaluation: the same model collapses alike
    used = [int(np.unique(codes[:, l]).size) for l in range(codes.shape[1])]
    coll = 1.0 - np.unique(codes, axis=0).shape[0] / codes.shape[0]
    Path(spec["out"]).write_text(json.dumps(dict(epochs=reps, torch=torch.__version__, codes_used=used,
                                                 collision_rate=coll,
                                                 torch_threads=torch.get_num_threads(),
                                                 blas=torch.__config__.show())))


# ----------------------------------------------------------------------------------------------- speed
def mean(v):
    return float(np.mean(v)) if len(v) else None


def speed(a, report, work: Path):
    rows = []
    T = a.timing_epochs
    skip = 1 if T > 1 else 0  # first epoch = warm-up
    for name in a.sets:
        xp, lp = prepare(name, a.cache)
        n, d = np.load(xp, mmap_mode="r").shape
        books = work / f"sid-{name}"
        if "rqkmeans-plus" in a.methods:
            sid_build(a, xp, lp, books, max(a.threads))
        for method in a.methods:
            for th in a.threads:
                tag = f"{name}-{method}-t{th}"
                od = work / f"speed-{tag}"
                r = run_cli(a, train_cmd(a, method, xp, od, T, th, books / "codebooks.npz"), work / f"{tag}.log",
                            re.compile(rf"epoch (\d+)/{T}\b"))
                tess = dict(ok=r["rc"] == 0, process_wall_s=r["wall_s"], process_cpu_s=r["cpu_s"])
                if tess["ok"]:
                    hist = json.loads((od / "config.json").read_text())["training"]["history"]
                    secs = [h["seconds"] for h in hist if "seconds" in h]
                    st = {e: (w, c) for e, w, c in r["stamps"]}
                    cpu = [st[e][1] - st[e - 1][1] for e in range(1, T + 1) if e in st and e - 1 in st]
                    wall_st = [st[e][0] - st[e - 1][0] for e in range(1, T + 1) if e in st and e - 1 in st]
                    # The last epoch's line comes after an evaluation on all rows; after it the CLI evaluates
                    # once more and writes its files: that tail's CPU time is taken off the last interval.
                    tail = r["cpu_s"] - st[T][1] if T in st else None
                    if len(cpu) == T and tail is not None and 0 <= tail < cpu[-1]:
                        cpu = cpu[:-1] + [cpu[-1] - tail]
                    else:
                        cpu = []  # the epoch lines were not as expected: no CPU figure rather than a wrong one
                    cfg = json.loads((od / "config.json").read_text())["training"]
                    tess.update(codes_used=cfg.get("final_codes_used"), collision_rate=cfg.get("final_collision_rate"))
                    tess.update(epoch_wall_s=secs, epoch_cpu_s=cpu, epoch_stamp_wall_s=wall_st, cpu_tail_s=tail,
                                losses=[h.get("loss") for h in hist[1:]], wall=mean(secs[skip:]),
                                cpu=mean(cpu[skip:]))
                spec = dict(method=method, data=str(xp), codebooks=str(books / "codebooks.npz"), epochs=T,
                            threads=th, seed=42, out=str(work / f"{tag}.torch.json"))
                load0 = os.getloadavg()[0]
                t = machine.run_worker(Path(__file__), spec, f"{tag}.torch", work, {"MKL_NUM_THREADS": str(th)},
                                       a.timeout)
                if t.get("ok"):
                    ep = t["epochs"]
                    t.update(wall=mean([e["wall_s"] for e in ep][skip:]), cpu=mean([e["cpu_s"] for e in ep][skip:]),
                             losses=[e["loss"] for e in ep])
                    t.pop("blas", None)
                row = dict(set=name, n=n, d=d, method=method, threads=th, tessera=tess, torch=t,
                           load1=[load0, os.getloadavg()[0]])
                rows.append(row)
                print_speed_row(row)
                report["speed"] = rows
                a.save()
    print_speed(rows, T, skip)
    return rows


def f(v, w=7, p=2):
    return f"{v:{w}.{p}f}" if v is not None else f"{'—':>{w}}"


SPEED_HDR = (f"{'set':<10} {'method':<14} {'thr':>3} {'tess wall':>9} {'torch wall':>10} {'t/p wall':>8} "
             f"{'tess CPU':>8} {'torch CPU':>9} {'t/p CPU':>7} {'tess CPU/wall':>13} {'loss tess / torch (last)':>26} "
             f"{'load1':>5}")


def print_speed_row(r):
    t, p = r["tessera"], r["torch"]
    if not t.get("ok") or not p.get("ok"):
        print(f"{r['set']:<10} {r['method']:<14} {r['threads']:>3}  failed: tessera {t.get('ok')}, torch "
              f"{p.get('ok')} {p.get('error', '')[:200]}")
        return
    cw = (t["cpu"] / t["wall"]) if t.get("cpu") and t.get("wall") else None
    print(f"{r['set']:<10} {r['method']:<14} {r['threads']:>3} {f(t['wall'], 9)} {f(p['wall'], 10)} "
          f"{machine.ratio(t['wall'], p['wall']):>8} {f(t['cpu'], 8)} {f(p['cpu'], 9)} "
          f"{machine.ratio(t['cpu'], p['cpu']):>7} {f(cw, 13)} "
          f"{t['losses'][-1]:>12.5g} / {p['losses'][-1]:<11.5g} {r['load1'][0]:>5.1f}", flush=True)


def print_speed(rows, T, skip):
    print(f"\n== speed: seconds per epoch, mean of epochs {skip + 1}..{T}; t/p = tessera / PyTorch; CPU = the "
          f"process's CPU time (robust on a shared machine), wall inflated by other load ==")
    print(SPEED_HDR)
    print("-" * len(SPEED_HDR))
    for r in rows:
        print_speed_row(r)
    ok = [r for r in rows if r["tessera"].get("ok") and r["torch"].get("ok")]
    print(f"   after the {T} timed epochs (same model, same data; different initial weights and shuffles): "
          "collision rate and codes used per level, tessera | PyTorch")
    for r in ok:
        t, p = r["tessera"], r["torch"]
        print(f"   {r['set']:<10} {r['method']:<14} t{r['threads']}: {t.get('collision_rate', 0):.4f} "
              f"{t.get('codes_used')} | {p.get('collision_rate', 0):.4f} {p.get('codes_used')}")
    for r in ok:
        t, p = r["tessera"], r["torch"]
        met = t["cpu"] <= p["cpu"] if t.get("cpu") and p.get("cpu") else None
        r["target_cpu_met"] = met
    one = [r for r in ok if r["threads"] == 1 and r.get("target_cpu_met") is not None]
    if one:
        print("   target (issue 17): per-epoch time no slower than PyTorch's — at 1 thread (CPU time): "
              + ", ".join(f"{r['set']}/{r['method']} {'MET' if r['target_cpu_met'] else 'NOT MET'}" for r in one))


# ----------------------------------------------------------------------------------------------- quality
def neural_metrics(m):
    lv = m["levels"]
    return dict(collision_rate=m["collision_rate"], codes_used=[l["unique_codes"] for l in lv],
                recon_mse=m.get("recon_mse", m.get("mse")), latent_mse=m.get("mse"),
                final_collisions=m["final_collisions"], max_id_length=m["max_id_length"],
                purity=[l.get("purity") for l in lv], purity_chance=[l.get("purity_chance") for l in lv])


def quality(a, report, work: Path):
    out = []
    th = max(a.threads) if a.quality_threads is None else a.quality_threads
    for name in a.sets:
        xp, lp = prepare(name, a.cache)
        n, d = np.load(xp, mmap_mode="r").shape
        x = np.load(xp)
        ms = float(np.mean(x.astype(np.float64) ** 2))
        books = work / f"sid-{name}"
        t0 = time.perf_counter()
        sm = sid_build(a, xp, lp, books, th)
        rows = [dict(label="balanced RQ-KMeans (sid build)", seconds=time.perf_counter() - t0,
                     **neural_metrics(sm))]
        rows[0]["recon_mse"] = sm["mse"]
        runs = [("RQ-KMeans+ 0 epochs (warm start)", "rqkmeans-plus", 0),
                (f"RQ-KMeans+ {a.epochs} epochs", "rqkmeans-plus", a.epochs),
                (f"RQ-VAE {a.epochs} epochs", "rqvae", a.epochs)]
        for label, method, E in runs:
            tag = f"{name}-{method}-e{E}"
            od, gd = work / f"q-{tag}", work / f"q-{tag}-ids"
            t0 = time.perf_counter()
            r = run_cli(a, train_cmd(a, method, xp, od, E, th, books / "codebooks.npz",
                                     eval_every=max(1, a.epochs // 5)), work / f"{tag}.log")
            if r["rc"] == 0:
                r = run_cli(a, [a.cli, method, "generate", "--checkpoint", od / "state_dict.pt", "--data", xp,
                                "--out", gd, "--dedup", "append", "--labels", lp, "--threads", th, "-q"],
                            work / f"{tag}-gen.log")
            if r["rc"]:
                rows.append(dict(label=label, error=r["stderr"][-300:]))
                continue
            row = dict(label=label, method=method, epochs=E, seconds=time.perf_counter() - t0,
                       **neural_metrics(json.loads((gd / "metrics.json").read_text())))
            hist = json.loads((od / "config.json").read_text())["training"]["history"]
            row["history"] = [{k: h.get(k) for k in ("epoch", "loss", "reconstruction", "collision_rate",
                                                     "codes_used", "seconds")} for h in hist]
            rows.append(row)
            if method == "rqkmeans-plus" and E > 0:  # the same model, its last level balanced over all items
                bd = work / f"q-{tag}-ids-balanced"
                r = run_cli(a, [a.cli, method, "generate", "--checkpoint", od / "state_dict.pt", "--data", xp,
                                "--out", bd, "--dedup", "append", "--labels", lp, "--balance", "last",
                                "--threads", th, "-q"], work / f"{tag}-gen-balanced.log")
                if r["rc"] == 0:
                    rows.append(dict(label=f"{label}, generate --balance last", method=method, epochs=E,
                                     **neural_metrics(json.loads((bd / "metrics.json").read_text()))))
        q = dict(set=name, n=n, d=d, input_mean_square=ms, threads=th, rows=rows)
        q["targets"] = targets(rows, a.epochs)
        out.append(q)
        print_quality(q)
        report["quality"] = out
        a.save()
    return out


def targets(rows, E):
    by = {r["label"]: r for r in rows if "error" not in r}
    sid, plus = by.get("balanced RQ-KMeans (sid build)"), by.get(f"RQ-KMeans+ {E} epochs")
    if not sid or not plus:
        return {}
    return {"RQ-KMeans+ recon MSE < balanced RQ-KMeans's": plus["recon_mse"] < sid["recon_mse"],
            "RQ-KMeans+ collision rate <= balanced RQ-KMeans's": plus["collision_rate"] <= sid["collision_rate"],
            "RQ-KMeans+ >= 200 of 256 level-1 codes used": plus["codes_used"][0] >= 200,
            "RQ-KMeans+ no duplicate ID after resolution": plus["final_collisions"] == 0}


def print_quality(q):
    print(f"\n== quality on {q['set']} ({q['n']} × {q['d']}, input mean square {q['input_mean_square']:.4g}, "
          f"{q['threads']} threads; dedup append; labels: "
          f"{'Debian sections' if q['set'] == 'debian' else 'mixture clusters'}) ==")
    hdr = (f"{'method':<50} {'recon MSE':>10} {'coll. before':>12} {'codes used / level':>20} "
           f"{'dup after':>9} {'max len':>7} {'purity L1 / L2 / L3 (chance L1)':>34} {'time s':>7}")
    print(hdr)
    print("-" * len(hdr))
    for r in q["rows"]:
        if "error" in r:
            print(f"{r['label']:<50} failed: {r['error'][:150]}")
            continue
        pur = " / ".join(f"{p:.3f}" if p is not None else "—" for p in r["purity"])
        ch = r["purity_chance"][0]
        print(f"{r['label']:<50} {r['recon_mse']:>10.5g} {r['collision_rate']:>12.4f} "
              f"{' '.join(str(c) for c in r['codes_used']):>20} {r['final_collisions']:>9} {r['max_id_length']:>7} "
              f"{pur + (f' ({ch:.3f})' if ch is not None else ''):>34} {r.get('seconds', float('nan')):>7.0f}")
    for k, v in q["targets"].items():
        print(f"   target: {k}: {'MET' if v else 'NOT MET'}")
    sys.stdout.flush()


# ----------------------------------------------------------------------------------------------- main
def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        return worker(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="speed,quality", help="speed, quality or both (comma-separated)")
    ap.add_argument("--sets", default="synthetic,debian", help=f"comma-separated: {', '.join(SETS)}")
    ap.add_argument("--methods", default="rqvae,rqkmeans-plus", help="for speed: rqvae, rqkmeans-plus")
    ap.add_argument("--threads", default="1,2", help="thread counts for speed (comma-separated)")
    ap.add_argument("--quality-threads", type=int, default=None, help="threads for quality (default: the most "
                                                                      "of --threads)")
    ap.add_argument("--timing-epochs", type=int, default=3, help="epochs per speed run (the first is warm-up)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="training epochs for quality (default 10; --quick 2)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: synthetic only, 1 thread, 2 timing epochs, 2 quality epochs")
    ap.add_argument("--out", default=str(machine.SCRATCH), help="scratch in the folder work inside OUT (neural-<stamp>), data "
                                                                "cache in OUT/data ($TESSERA_BENCH_OUT)")
    ap.add_argument("--json", default=None, help="results JSON (default OUT/results/neural-<stamp>.json)")
    ap.add_argument("--cli", default=str(REPO / "build" / "tessera"), help="tessera CLI (with tessera-neural "
                                                                           "next to it)")
    ap.add_argument("--timeout", type=float, default=7200, help="seconds before a PyTorch worker is stopped")
    a = ap.parse_args()
    if importlib.util.find_spec("torch") is None:
        print(f"SKIP bench_neural: torch is not installed for {sys.executable}; install it with\n"
              f"    .venv/bin/pip install -r requirements/bench-neural.txt")
        return 0
    a.cli = Path(a.cli).resolve()
    if not (a.cli.parent / "tessera-neural").exists():
        print(f"SKIP bench_neural: {a.cli.parent / 'tessera-neural'} is absent (tessera built without libtorch)")
        return 0
    if a.quick:
        a.sets = a.sets if "--sets" in sys.argv else "synthetic"
        a.threads = a.threads if "--threads" in sys.argv else "1"
        a.timing_epochs = a.timing_epochs if "--timing-epochs" in sys.argv else 2
    a.epochs = a.epochs if a.epochs is not None else (2 if a.quick else 10)
    a.sets = [s for s in a.sets.split(",") if s]
    a.methods = [s for s in a.methods.split(",") if s]
    a.threads = [int(t) for t in a.threads.split(",") if t]
    only = [s for s in a.only.split(",") if s]
    for s in a.sets:
        if s not in SETS:
            ap.error(f"unknown set {s}; known: {', '.join(SETS)}")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    a.cache = Path(a.out) / "data"
    work = Path(a.out) / "work" / f"neural-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    path = Path(a.json) if a.json else Path(a.out) / "results" / f"neural-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    import torch
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
    ver = subprocess.run([str(a.cli), "version"], capture_output=True, text=True).stdout.strip()
    report = dict(timestamp=stamp, args={k: str(v) for k, v in vars(a).items()},
                  machine=dict(cpu=cpu, cores=os.cpu_count(), host=platform.node(), load_start=os.getloadavg()),
                  versions=dict(torch=torch.__version__, numpy=np.__version__, python=platform.python_version(),
                                tessera=ver),
                  model=dict(layers=LAYERS, codebook_sizes=SIZES, e_dim_rqvae=E_DIM, batch_size=2048, lr=LR,
                             optimizer="AdamW, weight decay 0, clip 1.0, constant lr, no warm-up"))

    def save():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1, default=str))
        os.replace(tmp, path)
    a.save = save

    print(f"tessera RQ-VAE / RQ-KMeans+ benchmark — {stamp}{'  (QUICK)' if a.quick else ''}")
    print(f"machine: {cpu} × {os.cpu_count()} cores; load average at start "
          f"{tuple(round(v, 2) for v in os.getloadavg())}")
    print(f"torch {torch.__version__} (PyPI) in {sys.executable}; tessera: {ver.splitlines()[0] if ver else '?'} "
          f"({a.cli}); tessera's libtorch is Debian's (docs/neural.md)")
    print(f"model: layers {LAYERS}, codebooks {SIZES}, RQ-VAE e_dim {E_DIM} (RQ-KMeans+: e_dim = d), batch 2048, "
          f"AdamW lr {LR}, clip 1.0; every run in its own process, OMP_WAIT_POLICY=PASSIVE")
    for s in a.sets:
        print(f"  {s}: {SETS[s]}")
    t0 = time.perf_counter()
    if "speed" in only:
        speed(a, report, work)
    if "quality" in only:
        quality(a, report, work)
    report["total_seconds"] = time.perf_counter() - t0
    report["machine"]["load_end"] = os.getloadavg()
    save()
    print(f"\ntotal {report['total_seconds']:.0f} s; load average at end "
          f"{tuple(round(v, 2) for v in os.getloadavg())}; results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
