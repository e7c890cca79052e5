"""What the benchmarks' processes compute with, shared by every bench script.

The peers' wheels bundle their own OpenBLAS (faiss-cpu 1.15.1: 0.3.15; numpy: scipy-openblas), and on a CPU
newer than that OpenBLAS release it falls back to its generic SSE3 "Prescott" kernels, 3–5× slower. tessera
selects fitting kernels itself (src/core/blas_setup.cpp). By default the peers get the same kernels through
OPENBLAS_CORETYPE, so the comparison is against each peer at its best on this machine; `--peer-blas
installed` runs them as a user gets them out of the box.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Where the bench scripts put scratch files, caches and results: $TESSERA_BENCH_OUT, else tessera-bench in the
# system's temporary directory.
SCRATCH = Path(os.environ.get("TESSERA_BENCH_OUT") or Path(tempfile.gettempdir()) / "tessera-bench")


def add_run_options(ap, repo: Path) -> None:
    """The options every contender-running bench script takes: where tessera is, the peers' BLAS, the timeout."""
    ap.add_argument("--pymodule", default=str(repo / "build" / "python"), help="PYTHONPATH for `import tessera`")
    ap.add_argument("--cli", default=str(repo / "build" / "tessera"), help="tessera CLI (reports its BLAS kernels)")
    ap.add_argument("--peer-blas", choices=["fitted", "installed"], default="fitted",
                    help="the peers' OpenBLAS kernels: the ones tessera selected (default) or as installed")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds before a contender is stopped")


def tessera_blas(cli) -> str:
    """The `BLAS:` line of `tessera version` (e.g. "OpenBLAS SkylakeX (selected by tessera: ...)")."""
    try:
        out = subprocess.run([str(cli), "version"], capture_output=True, text=True, timeout=30).stdout
    except Exception as e:  # noqa: BLE001
        return f"unknown ({e})"
    return next((l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("BLAS:")), "unknown")


def peer_blas_env(cli, mode: str) -> dict:
    """Environment for peer processes: OPENBLAS_CORETYPE = the kernels tessera uses when tessera had to
    select them (mode "fitted"), nothing otherwise (mode "installed", or OpenBLAS chose well itself)."""
    blas = tessera_blas(cli)
    if mode != "fitted" or "selected by tessera" not in blas:
        return {}
    return {"OPENBLAS_CORETYPE": blas.split()[1]}


def run_worker(script, spec: dict, stem: str, work: Path, peer_env: dict | None, timeout: float,
               tail: int = 300) -> dict:
    """Run `python script --worker SPEC` for one contender in a subprocess of its own (faiss and tessera must
    not share a process: two OpenMP runtimes crash at exit), with spec["threads"] threads, OpenMP waiting
    passively and, for peers, peer_env. The worker writes its result to spec["out"] (JSON). Returns that
    result with ok=True, or dict(ok=False, error=...) on a timeout, a failure or no output."""
    sp = work / f"{stem}.spec.json"
    sp.write_text(json.dumps(spec))
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), OPENBLAS_NUM_THREADS=str(spec["threads"]),
               OMP_WAIT_POLICY="PASSIVE")
    if peer_env:
        env.update(peer_env)
    print(f"  .. {stem}", file=sys.stderr, flush=True)
    try:
        p = subprocess.run([sys.executable, str(script), "--worker", str(sp)], env=env, capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(ok=False, error=f"timeout after {timeout:.0f} s")
    if p.returncode != 0 or not Path(spec["out"]).exists():
        return dict(ok=False, error=(p.stderr or p.stdout).strip()[-tail:])
    return dict(json.loads(Path(spec["out"]).read_text()), ok=True)


def ratio(a, b) -> str:
    """a / b for a table (6 wide), or a dash when either is missing or zero."""
    return f"{a / b:6.2f}" if a and b else "     —"
