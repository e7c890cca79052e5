"""k-means and size-constrained assignment against numpy, faiss, k-means-constrained and scipy."""
import os
import subprocess
import sys


import numpy as np
import pytest

import tessera

SIFT = "siftsmall/siftsmall_base.fvecs"  # in the real data sets (conftest.py)


def sqdist(x, c):
    x = x.astype(np.float64)
    c = c.astype(np.float64)
    return (x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]


def objective(x, c, labels):
    d = x.astype(np.float64) - c.astype(np.float64)[labels]
    return float((d * d).sum())


def blobs(n, k, d, seed, spread=3.0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)) * spread
    lab = rng.integers(0, k, size=n)
    return (centres[lab] + rng.standard_normal((n, d))).astype(np.float32)


def test_kmeans_matches_numpy_reference():
    x = blobs(3000, 12, 8, seed=0)
    r = tessera.kmeans(x, 12, seed=1)
    assert r.centroids.shape == (12, 8) and r.centroids.dtype == np.float32
    assert r.labels.shape == (3000,) and r.labels.dtype == np.int32
    # Labels are the nearest centroids, and the objective is their squared distance (numpy, float64).
    nearest = sqdist(x, r.centroids).argmin(1)
    assert (nearest == r.labels).mean() > 0.999
    assert r.objective == pytest.approx(objective(x, r.centroids, r.labels), rel=1e-4)
    # Centroids are the means of their clusters (one more Lloyd step would not move them much).
    means = np.stack([x[r.labels == j].mean(0) for j in range(12)])
    assert np.abs(means - r.centroids).max() < 0.05
    assert 1 <= r.iterations <= 100


def test_kmeans_deterministic_and_input_dtypes():
    x = blobs(1500, 8, 6, seed=1)
    a = tessera.kmeans(x, 8, seed=3, n_init=2)
    b = tessera.kmeans(x.astype(np.float64), 8, seed=3, n_init=2)  # converted with a copy
    c = tessera.kmeans(np.asfortranarray(x), 8, seed=3, n_init=2)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centroids, c.centroids)
    r = tessera.kmeans(x, 8, init="random", max_train_points=500)
    assert r.sample_rows is not None and len(r.sample_rows) == 500 and len(r.labels) == 500


def test_kmeans_objective_close_to_faiss(data_file):
    faiss = pytest.importorskip("faiss")
    x = tessera.read_fvecs(data_file(SIFT))
    k, niter, nredo = 64, 20, 2
    ours = tessera.kmeans(x, k, max_iter=niter, tol=0.0, n_init=nredo, seed=123)
    assert ours.iterations == niter
    km = faiss.Kmeans(x.shape[1], k, niter=niter, nredo=nredo, seed=123, max_points_per_centroid=10**6)
    km.train(x)
    _, lab = km.index.search(x, 1)
    theirs = objective(x, km.centroids, lab[:, 0])
    assert objective(x, ours.centroids, ours.labels) == pytest.approx(ours.objective, rel=1e-4)
    assert ours.objective <= theirs * 1.03, (ours.objective, theirs)


def test_sample_warm_start_close_to_lloyd_on_all_rows(data_file):
    """From 1024·k rows on, restarts run on 256·k rows and the winner's last iterations on all rows."""
    faiss = pytest.importorskip("faiss")
    x = tessera.read_fvecs(data_file(SIFT))  # 10,000 rows ≥ 1024 · 8
    k, niter = 8, 24
    warm = tessera.kmeans(x, k, max_iter=niter, tol=0.0, n_init=2, seed=5)
    cold = tessera.kmeans(x, k, max_iter=niter, tol=0.0, n_init=2, seed=5, sample_warm_start=False)
    assert warm.warm_start_rows == 256 * k and cold.warm_start_rows == 0
    # (tol = 0 still stops a stage whose centroids no longer move at all)
    assert 4 <= warm.iterations <= niter and len(warm.labels) == len(x)
    # Labels and objective describe all rows under the final centroids.
    assert (sqdist(x, warm.centroids).argmin(1) == warm.labels).mean() > 0.999
    assert warm.objective == pytest.approx(objective(x, warm.centroids, warm.labels), rel=1e-4)
    assert warm.objective <= cold.objective * 1.02, (warm.objective, cold.objective)
    km = faiss.Kmeans(x.shape[1], k, niter=niter, nredo=2, seed=5, max_points_per_centroid=10**6)
    km.train(x)
    _, lab = km.index.search(x, 1)
    assert warm.objective <= objective(x, km.centroids, lab[:, 0]) * 1.03
    # Balanced: the bounds hold for every row.
    b = tessera.kmeans(x, k, max_iter=niter, n_init=1, seed=5, balanced=True)
    lo, hi = tessera.default_size_bounds(len(x), k)
    sizes = np.bincount(b.labels, minlength=k)
    assert b.warm_start_rows == 256 * k and sizes.min() >= lo and sizes.max() <= hi


def _balanced_kmeans_in_subprocess(tmp_path, x, k, timeout=30, **kw):
    """Run tessera.kmeans(balanced) in a child process so that a solver hang fails the test instead of the suite."""
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys, numpy as np, tessera\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"r = tessera.kmeans(x, {k}, balanced=True, **{kw!r})\n"
        f"np.save({str(tmp_path / 'c.npy')!r}, r.centroids)\n"
        f"np.save({str(tmp_path / 'l.npy')!r}, r.labels)\n"
        "print(repr(r.objective))\n"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    except subprocess.TimeoutExpired:
        pytest.fail(f"balanced k-means (n={len(x)}, k={k}) did not finish within {timeout} s")
    assert out.returncode == 0, out.stderr
    return float(out.stdout.strip()), np.load(tmp_path / "c.npy"), np.load(tmp_path / "l.npy")


def test_balanced_kmeans_vs_k_means_constrained(tmp_path):
    kmc = pytest.importorskip("k_means_constrained")
    n, k, d = 2000, 20, 16
    x = blobs(n, k, d, seed=5, spread=1.0)
    lo, hi = max(1, n // k - 1), n // k + 1
    assert tessera.default_size_bounds(n, k) == (lo, hi)
    obj, cent, labels = _balanced_kmeans_in_subprocess(tmp_path, x, k, n_init=3, seed=0)
    sizes = np.bincount(labels, minlength=k)
    assert sizes.min() >= lo and sizes.max() <= hi
    assert obj == pytest.approx(objective(x, cent, labels), rel=1e-4)
    ref = kmc.KMeansConstrained(n_clusters=k, size_min=lo, size_max=hi, n_init=3, max_iter=100, random_state=0)
    ref.fit(x)
    theirs = objective(x, ref.cluster_centers_, ref.labels_)
    assert obj <= theirs * 1.01, (obj, theirs)
    # Explicit bounds.
    _, _, labels = _balanced_kmeans_in_subprocess(tmp_path, x, k, size_min=90, size_max=110, n_init=1)
    s = np.bincount(labels, minlength=k)
    assert s.min() >= 90 and s.max() <= 110


def test_balanced_assign_against_exact_and_scipy():
    linear_sum_assignment = pytest.importorskip("scipy.optimize").linear_sum_assignment
    rng = np.random.default_rng(7)
    n, k = 60, 6
    cost = rng.random((n, k)).astype(np.float32) * 10
    size = n // k
    # Exact sizes: the replicated-slot assignment problem (each cluster has `size` slots).
    rows, cols = linear_sum_assignment(np.repeat(cost.astype(np.float64), size, axis=1))
    ref_total = float(cost.astype(np.float64)[rows, cols // size].sum())
    la, ta = tessera.balanced_assign(cost, size, size)
    le, te = tessera.balanced_assign_exact(cost, size, size)
    for lab, tot in ((la, ta), (le, te)):
        assert lab.shape == (n,) and lab.dtype == np.int32
        np.testing.assert_array_equal(np.bincount(lab, minlength=k), np.full(k, size))
        assert tot == pytest.approx(float(cost.astype(np.float64)[np.arange(n), lab].sum()), rel=1e-5)
    assert te == pytest.approx(ref_total, rel=1e-5)
    assert ta == pytest.approx(ref_total, rel=1e-4)
    # Ranges: the scalable solver matches the exact one.
    cost2 = rng.random((300, 7)).astype(np.float32)
    l1, t1 = tessera.balanced_assign(cost2, 35, 50)
    l2, t2 = tessera.balanced_assign_exact(cost2, 35, 50)
    for lab in (l1, l2):
        s = np.bincount(lab, minlength=7)
        assert s.min() >= 35 and s.max() <= 50
    assert t1 == pytest.approx(t2, rel=1e-4)


def test_kmeans_errors():
    x = blobs(100, 4, 3, seed=2)
    with pytest.raises(tessera.InvalidArgument):
        tessera.kmeans(x, 101)  # N < K
    with pytest.raises(ValueError):
        tessera.kmeans(x[0], 2)  # 1-D
    bad = x.copy()
    bad[17, 1] = np.nan
    with pytest.raises(tessera.InvalidArgument, match="row 17"):
        tessera.kmeans(bad, 3)
    with pytest.raises(tessera.InvalidArgument):
        tessera.kmeans(x, 10, size_min=20, size_max=30)  # 10 × 20 > 100: infeasible
    with pytest.raises(tessera.InvalidArgument):
        tessera.kmeans(x, 3, init="bogus")
    with pytest.raises(TypeError):
        tessera.kmeans(np.array([["a", "b"]]), 1)
    with pytest.raises(tessera.InvalidArgument):
        tessera.balanced_assign(np.ones((10, 3), dtype=np.float32), 4, 5)


@pytest.mark.parametrize("init", ["auto", "k-means++", "progressive", "random"])
def test_every_init_gives_nearest_labels_and_its_objective(init):
    x = blobs(3000, 24, 16, seed=8)
    r = tessera.kmeans(x, 24, init=init, n_init=1, max_iter=30, seed=2)
    assert (sqdist(x, r.centroids).argmin(1) == r.labels).mean() > 0.999
    assert r.objective == pytest.approx(objective(x, r.centroids, r.labels), rel=1e-4)
    s = tessera.build_semantic_ids(x, levels=2, codebook_size=8, balance=False, init=init, n_init=1, max_iter=10)
    assert s.codes.shape == (3000, 2)


def test_bad_init_is_refused():
    x = blobs(200, 4, 4, seed=9)
    with pytest.raises(ValueError, match="init must be"):
        tessera.kmeans(x, 4, init="kmeans||")
    with pytest.raises(ValueError, match="init must be"):
        tessera.build_semantic_ids(x, levels=1, codebook_size=4, init="nope")
