"""What the benchmarks' processes compute with, shared by every bench script.

The peers' wheels bundle their own OpenBLAS (faiss-cpu 1.15.1: 0.3.15; numpy: scipy-openblas), and on a CPU
newer than that OpenBLAS release it falls back to its generic SSE3 "Prescott" kernels, 3–5× slower. tessera
selects fitting kernels itself (src/core/blas_setup.cpp). By default the peers get the same kernels through
OPENBLAS_CORETYPE, so the comparison is against each peer at its best on this machine; `--peer-blas
installed` runs them as a user gets them out of the box.
"""
from __future__ import annotations

import subprocess


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
