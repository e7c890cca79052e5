"""Ctrl-C stops long work: SIGINT during build_semantic_ids / kmeans / ResidualQuantizer.fit raises
KeyboardInterrupt within a few seconds (not when the job ends), and a save that did not run leaves nothing.

Each case runs a child Python (same interpreter and PYTHONPATH) that starts a job several seconds long,
prints "started", and is sent SIGINT 1.5 s later.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import tessera

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# The child: argv = job, output directory. A job that finishes prints "finished" (the test then fails:
# the signal came too late to test anything).
CHILD = r"""
import os, sys
import numpy as np
import tessera

job, out = sys.argv[1], sys.argv[2]
if job == "custom_handler":
    import signal

    class Stop(Exception):
        pass

    def handler(signum, frame):
        raise Stop("stopped by the user's handler")

    signal.signal(signal.SIGINT, handler)

x = np.random.default_rng(0).standard_normal((200_000, 64), dtype=np.float32)
print("started", flush=True)
if job == "build_semantic_ids":
    sids = tessera.build_semantic_ids(x, levels=3, codebook_size=256)
    sids.save(out)
elif job == "with_progress":  # the progress callback also looks at signals: either may see it first
    calls = []
    sids = tessera.build_semantic_ids(x, levels=3, codebook_size=256, progress=lambda *a: calls.append(a))
    sids.save(out)
elif job in ("kmeans", "custom_handler"):
    r = tessera.kmeans(x, 1024, max_iter=300, tol=0.0, n_init=3, sample_warm_start=False)
    tessera.write_npy(os.path.join(out, "centroids.npy"), r.centroids)
elif job == "kmeans_balanced":
    r = tessera.kmeans(x, 256, balanced=True)
    tessera.write_npy(os.path.join(out, "centroids.npy"), r.centroids)
elif job == "rq_fit":
    q = tessera.ResidualQuantizer(64, [256, 256, 256], balance=True)
    q.fit(x)
    q.save(os.path.join(out, "model.tsq"))
print("finished", flush=True)
"""

SIGNAL_AFTER = 1.5  # seconds after "started"
MAX_STOP = 5.0  # seconds from the signal to the child's exit (expected well under 1 s)
GIVE_UP = 30.0  # a child still running this long after the signal is killed and the test fails


def run_and_interrupt(job: str, out_dir: str) -> tuple[int, str, str, float]:
    """Run the child, SIGINT it SIGNAL_AFTER s after it says "started"; (returncode, stdout, stderr, s from signal to exit)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, job, out_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        line = proc.stdout.readline()  # blocks until the data exists and the job starts
        assert line.strip() == "started", f"child did not start: {line!r} {proc.stderr.read()}"
        time.sleep(SIGNAL_AFTER)
        assert proc.poll() is None, f"the job ended before the signal: {proc.communicate()}"
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        try:
            out, err = proc.communicate(timeout=GIVE_UP)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{job} still running {GIVE_UP:.0f} s after SIGINT: the signal was ignored")
        return proc.returncode, line + out, err, time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("job", ["build_semantic_ids", "kmeans", "kmeans_balanced", "rq_fit", "with_progress"])
def test_sigint_raises_keyboard_interrupt(job, tmp_path):
    out = tmp_path / "out"
    rc, stdout, stderr, waited = run_and_interrupt(job, str(out))
    assert "finished" not in stdout, "the job ended before it noticed the signal"
    assert stderr.strip().splitlines()[-1] == "KeyboardInterrupt", stderr
    assert rc == -signal.SIGINT, (rc, stderr)  # an uncaught KeyboardInterrupt ends Python by SIGINT
    assert waited < MAX_STOP, f"{job} took {waited:.1f} s to stop after SIGINT"
    # The save after the job never ran: nothing was written.
    assert not out.exists() or not any(out.iterdir())


def test_sigint_raises_what_the_users_handler_raises(tmp_path):
    out = tmp_path / "out"
    rc, stdout, stderr, waited = run_and_interrupt("custom_handler", str(out))
    assert "finished" not in stdout
    assert "Stop: stopped by the user's handler" in stderr.strip().splitlines()[-1], stderr
    assert rc == 1, (rc, stderr)
    assert waited < MAX_STOP
    assert not out.exists() or not any(out.iterdir())


def test_work_started_from_another_thread_runs_to_the_end():
    # The interrupt check takes the GIL from a worker thread while the main thread runs Python code:
    # neither may wait for the other, and signals (main thread only) are not looked at there.
    x = np.random.default_rng(1).standard_normal((20_000, 16), dtype=np.float32)
    result = {}

    def work():
        result["balanced"] = tessera.kmeans(x, 64, balanced=True, n_init=1, max_iter=20)
        result["plain"] = tessera.kmeans(x, 64, n_init=2, max_iter=20, tol=0.0)

    t = threading.Thread(target=work)
    t.start()
    spins = 0
    while t.is_alive():  # keep the GIL busy with Python bytecode meanwhile
        spins += sum(range(1000)) > 0
    t.join(timeout=120)
    assert not t.is_alive()
    assert result["balanced"].centroids.shape == (64, 16)
    assert result["plain"].centroids.shape == (64, 16)
    assert spins > 0
