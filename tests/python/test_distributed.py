"""tessera.distributed (semantic IDs on Dask) against the single-process build: the same codes and ids with the
same seed and train_sample on a LocalCluster of 2 worker processes; the per-cluster-window restricted solver
against a dense exact reference; a worker killed mid-run; input, scheduler and output-directory errors."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import tessera

dask = pytest.importorskip("dask", reason="tessera.distributed needs dask: pip install -r requirements/distributed.txt")
pytest.importorskip("distributed", reason="tessera.distributed needs distributed: pip install -r "
                    "requirements/distributed.txt")
import dask.array as da  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

import tessera.distributed as td  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _mixture(n, d, modes, seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(modes, d)).astype(np.float32) * 3
    lab = rng.integers(0, modes, size=n)
    return (centers[lab] + rng.normal(size=(n, d)).astype(np.float32)).astype(np.float32)


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                           env=td._worker_env(1))
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def _shards(tmp_path, x, cuts, name="emb"):
    d = tmp_path / name
    d.mkdir()
    edges = [0] + list(cuts) + [len(x)]
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        np.save(d / f"part-{i:03d}.npy", x[a:b])
    return d


def _level_costs(x, codes, model):
    """Per level, Σ ‖residual − codeword‖² of the given codes (the residual of their own earlier levels)."""
    offs = model.codebook_offsets
    cb = np.asarray(model.codebooks)
    r = x.astype(np.float64).copy()
    out = []
    for m in range(codes.shape[1]):
        book = cb[offs[m]:offs[m + 1]].astype(np.float64)
        diff = r - book[codes[:, m]]
        out.append(float((diff ** 2).sum()))
        r = diff
    return out


def _assert_same_optimum(x, got, want, model, K, bounds=None):
    """Equal codes, or (ties) the same objective at the first level that differs, with the bounds held."""
    if np.array_equal(got, want):
        return
    m = int(np.flatnonzero((got != want).any(axis=0))[0])
    lo, hi = bounds or tessera.default_size_bounds(len(x), K)
    sizes = np.bincount(got[:, m], minlength=K)
    assert sizes.min() >= lo and sizes.max() <= hi
    a = _level_costs(x, got[:, :m + 1], model)[m]
    b = _level_costs(x, want[:, :m + 1], model)[m]
    assert a == pytest.approx(b, rel=1e-6)


def test_import_tessera_does_not_import_dask():
    code = "import sys, tessera; assert 'dask' not in sys.modules and 'distributed' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))


@pytest.mark.parametrize("dedup", ["append", "append-all", "reassign", "none"])
def test_same_codes_and_ids_as_single_process(client, dedup):
    x = _mixture(6000, 16, 40, seed=1)
    K, S = 16, 1500
    want = tessera.build_semantic_ids(x, levels=2, codebook_size=K, balance=True, dedup=dedup, seed=5,
                                      train_sample=S)
    res = td.build_semantic_ids(da.from_array(x, chunks=(1100, 16)), client=client, levels=2, codebook_size=K,
                                dedup=dedup, seed=5, train_sample=S)
    np.testing.assert_array_equal(np.asarray(res.model.codebooks), np.asarray(want.model.codebooks))
    got = res.codes.compute()
    assert got.dtype == np.int32 and got.shape == (6000, 2)
    np.testing.assert_array_equal(got, want.codes)  # the optimum is unique on continuous data
    ids = res.ids.compute()
    np.testing.assert_array_equal(ids, want.ids)
    m, w = res.metrics, want.metrics
    for key in ("n_items", "dim", "levels_count", "collision_rate", "unique_ids_before", "largest_collision_group",
                "colliding_items", "final_collisions", "max_id_length"):
        assert m[key] == w[key], key
    assert m["mse"] == pytest.approx(w["mse"], rel=1e-5)
    if dedup == "reassign":
        assert m["reassigned_items"] == w["reassigned_items"]
        assert m["mse_after_resolution"] == pytest.approx(w["mse_after_resolution"], rel=1e-5)
    for a, b in zip(m["levels"], w["levels"]):
        for key in ("unique_codes", "min_cluster_size", "max_cluster_size", "size_min", "size_max"):
            assert a[key] == b[key], key


def test_greedy_levels_match_single_process(client):
    x = _mixture(5000, 12, 30, seed=3)
    want = tessera.build_semantic_ids(x, levels=2, codebook_size=16, balance=False, dedup="none", seed=2,
                                      train_sample=1200)
    res = td.build_semantic_ids(da.from_array(x, chunks=(900, 12)), client=client, levels=2, codebook_size=16,
                                balance=False, dedup="none", seed=2, train_sample=1200)
    np.testing.assert_array_equal(res.codes.compute(), want.codes)
    assert res.metrics["balance"] == "none" and "size_min" not in res.metrics["levels"][0]


def test_three_levels_from_shards_and_save(client, tmp_path):
    x = _mixture(9000, 24, 60, seed=2)
    K, S = 32, 3000
    src = _shards(tmp_path, x, [2500, 2600, 7000])
    want = tessera.build_semantic_ids(x, levels=3, codebook_size=K, seed=11, train_sample=S)
    res = td.build_semantic_ids(str(src), client=client, levels=3, codebook_size=K, seed=11, train_sample=S,
                                chunk_rows=2000)
    got = res.codes.compute()
    _assert_same_optimum(x, got, np.asarray(want.codes), want.model, K)
    st = res.metrics["distributed"]["assignment"]
    assert all(s["certificate_rounds"] >= 1 and s["boundary_rows"] > 0 for s in st)
    out = tmp_path / "out"
    res.save(out, index_json=True)
    assert sorted(p for p in os.listdir(out)) == ["codebooks.npz", "codes", "index.json", "metrics.json",
                                                  "model.tsq"]
    if np.array_equal(got, want.codes):
        assert (out / "index.json").read_text() == want.index_json()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_items"] == 9000 and "seconds_assign" in metrics["distributed"]
    loaded = tessera.ResidualQuantizer.load(str(out / "model.tsq"))
    np.testing.assert_array_equal(np.asarray(loaded.codebooks), np.asarray(want.model.codebooks))
    files = sorted(os.listdir(out / "codes"))
    if files[0].endswith(".parquet"):
        import pyarrow.parquet as pq

        t = pq.read_table(out / "codes").sort_by("item")
        np.testing.assert_array_equal(np.stack(t.column("codes").to_numpy(zero_copy_only=False)), got)
        assert t.column("tokens")[0].as_py() == json.loads(want.index_json())["0"]
    else:
        codes = np.concatenate([np.load(out / "codes" / f) for f in files if f.startswith("codes-")])
        np.testing.assert_array_equal(codes, got)
    npy = res.save(tmp_path / "npy", parquet=False)  # the format without pyarrow
    files = sorted(os.listdir(os.path.join(npy, "codes")))
    np.testing.assert_array_equal(np.concatenate([np.load(os.path.join(npy, "codes", f)) for f in files
                                                  if f.startswith("codes-")]), got)
    with pytest.raises(FileExistsError, match="already exists"):
        res.save(out)
    res.save(out, overwrite=True)
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p or ".old-" in p]


def _lsa_reference(offsets, clusters, costs, k, lo, hi):
    """Optimal total over the listed arcs with per-cluster windows: Hungarian method on replicated slots (the first
    lo[j] slots of cluster j carry a large bonus so that they fill first). inf when infeasible."""
    from scipy.optimize import linear_sum_assignment

    n = len(offsets) - 1
    if sum(lo) > n or sum(min(h, n) for h in hi) < n:
        return np.inf
    slots = [(j, s < lo[j]) for j in range(k) for s in range(min(hi[j], n))]
    big = 1e6
    inf = 1e12
    C = np.full((n, len(slots)), inf)
    for i in range(n):
        for a in range(offsets[i], offsets[i + 1]):
            for t, (j, must) in enumerate(slots):
                if j == clusters[a]:
                    C[i, t] = min(C[i, t], costs[a] - (big if must else 0))
    r, c = linear_sum_assignment(C)
    total = C[r, c].sum()
    if (C[r, c] >= inf / 2).any():
        return np.inf
    filled = sum(1 for t in c if slots[t][1])
    if filled < sum(lo):
        return np.inf
    return float(total + big * sum(lo))


@pytest.mark.parametrize("trial", range(8))
def test_restricted_solver_matches_dense_reference(trial):
    rng = np.random.default_rng(100 + trial)
    n, k = int(rng.integers(5, 30)), int(rng.integers(2, 6))
    per = int(rng.integers(1, k + 1))
    adversarial = trial % 2 == 1
    offsets, clusters, costs = [0], [], []
    for i in range(n):
        ids = rng.permutation(k)[:per] if not adversarial else np.arange(per)  # hub clusters listed by everyone
        for j in ids:
            clusters.append(int(j))
            costs.append(float(np.floor(rng.uniform(0, 3))) if adversarial else float(rng.uniform(0, 10)))
        offsets.append(len(clusters))
    lo = [int(v) for v in rng.integers(0, max(1, n // k), size=k)]
    hi = [lo[j] + int(rng.integers(0, n)) for j in range(k)]
    feasible, lab, prices, total = tessera._tessera.balanced_assign_sparse(
        np.array(offsets, np.int64), np.array(clusters, np.int32), np.array(costs, np.float32), k,
        np.array(lo, np.int64), np.array(hi, np.int64))
    ref = _lsa_reference(offsets, clusters, np.float32(costs).astype(np.float64), k, lo, hi)
    assert feasible == np.isfinite(ref)
    if not feasible:
        return
    assert total == pytest.approx(ref, rel=1e-6, abs=1e-6)
    sizes = np.bincount(lab, minlength=k)
    assert (sizes >= lo).all() and (sizes <= hi).all()
    for j in range(k):  # condition 3
        if prices[j] > 1e-9:
            assert sizes[j] == hi[j]
        if prices[j] < -1e-9:
            assert sizes[j] == lo[j]
    for i in range(n):  # condition 1 on the listed arcs
        a = slice(offsets[i], offsets[i + 1])
        pc = np.float32(costs)[a].astype(np.float64) + prices[np.array(clusters)[a]]
        own = min(pc[t] for t, j in enumerate(np.array(clusters)[a]) if j == lab[i])
        assert own <= pc.min() + 1e-6


def test_restricted_solver_equal_windows_matches_balanced_assign_exact():
    rng = np.random.default_rng(3)
    n, k = 200, 7
    cost = rng.uniform(0, 5, size=(n, k)).astype(np.float32)
    lo, hi = tessera.default_size_bounds(n, k)
    _, want = tessera.balanced_assign_exact(cost, lo, hi)
    feasible, lab, prices, total = tessera._tessera.balanced_assign_sparse(
        np.arange(0, n * k + 1, k, dtype=np.int64), np.tile(np.arange(k, dtype=np.int32), n), cost.ravel(), k,
        np.full(k, lo), np.full(k, hi))
    assert feasible and total == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("S", [2500, 6000])
def test_size_bounds_as_the_single_process_build(client, S):
    # loose bounds over all rows (most prices 0): the same codes as one process, every size within them; a
    # sample of every row trains with the bounds themselves
    x = _mixture(6000, 16, 30, seed=4)
    K, lo, hi = 16, 300, 460
    want = tessera.build_semantic_ids(x, levels=2, codebook_size=K, dedup="none", seed=8, train_sample=S,
                                      size_min=lo, size_max=hi)
    res = td.build_semantic_ids(da.from_array(x, chunks=(1100, 16)), client=client, levels=2, codebook_size=K,
                                dedup="none", seed=8, train_sample=S, size_min=lo, size_max=hi)
    got = res.codes.compute()
    for m in range(2):
        sizes = np.bincount(got[:, m], minlength=K)
        assert sizes.min() >= lo and sizes.max() <= hi
        assert (res.metrics["levels"][m]["size_min"], res.metrics["levels"][m]["size_max"]) == (lo, hi)
    _assert_same_optimum(x, got, want.codes, res.model, K, bounds=(lo, hi))


def test_size_bound_errors(client):
    x = da.from_array(_mixture(3000, 8, 10, seed=1), chunks=(1000, 8))
    with pytest.raises(tessera.InvalidArgument, match="infeasible size bounds.*size_min ≤ 187"):
        td.build_semantic_ids(x, client=client, levels=1, codebook_size=16, size_min=200, train_sample=1000)
    with pytest.raises(tessera.InvalidArgument, match="size_max ≥ 188"):
        td.build_semantic_ids(x, client=client, levels=1, codebook_size=16, size_max=150, train_sample=1000)
    with pytest.raises(tessera.InvalidArgument, match="need balance=True"):
        td.build_semantic_ids(x, client=client, levels=1, codebook_size=16, balance=False, size_max=300)


def test_a_boundary_that_cannot_be_solved_falls_back_to_every_row(client):
    # 5 isolated modes, a small sample and a tiny boundary: the restricted solves cannot meet the windows (a
    # mode's clusters lack rows the boundary does not hold); once the widened boundary passes a quarter of the
    # rows the level is solved on every row's lists, to the same optimum
    x = _mixture(8000, 16, 5, seed=3)
    K, S = 32, 400
    want = tessera.build_semantic_ids(x, levels=1, codebook_size=K, dedup="none", seed=3, train_sample=S)
    res = td.build_semantic_ids(da.from_array(x, chunks=(1500, 16)), client=client, levels=1, codebook_size=K,
                                dedup="none", seed=3, train_sample=S, boundary_fraction=0.001)
    st = res.metrics["distributed"]["assignment"][0]
    assert st["boundary_fraction"] == 1.0 and st["boundary_rows"] == len(x)
    assert not st["restricted_solves"][0]["feasible"]
    _assert_same_optimum(x, res.codes.compute(), want.codes, res.model, K)


@pytest.mark.parametrize("seed", range(4))
def test_adding_arcs_keeps_them_grouped_by_row_without_duplicates(seed):
    rng = np.random.default_rng(seed)
    n, k = 50, 9
    R = rng.integers(0, n, 300)
    Kc = rng.integers(0, k, 300).astype(np.int32)
    C = rng.uniform(0, 1, 300).astype(np.float32)
    add = (rng.integers(0, n, 40), rng.integers(0, k, 40).astype(np.int32), rng.uniform(2, 3, 40).astype(np.float32))

    def reference(r, kk, c):  # the first of every (row, cluster), rows ascending
        seen = {}
        for a, b, v in zip(r.tolist(), kk.tolist(), c.tolist()):
            seen.setdefault((a, b), v)
        return seen

    R0, K0, C0 = td._grouped_arcs(R, Kc, C)
    assert (np.diff(R0) >= 0).all()
    assert {(a, b): v for a, b, v in zip(R0.tolist(), K0.tolist(), C0.tolist())} == reference(R, Kc, C)
    assert len(R0) == len(reference(R, Kc, C))
    assert all(np.array_equal(a, b) for a, b in zip(td._grouped_arcs(R0, K0, C0), (R0, K0, C0)))  # as the scans give
    R1, K1, C1 = td._with_arcs(R0, K0, C0, *([a] for a in add))
    assert all(a is b for a, b in zip(td._with_arcs(R1, K1, C1, [], [], []), (R1, K1, C1)))
    want = reference(np.concatenate([R0, add[0]]), np.concatenate([K0, add[1]]), np.concatenate([C0, add[2]]))
    assert (np.diff(R1) >= 0).all() and len(R1) == len(want)
    assert {(a, b): v for a, b, v in zip(R1.tolist(), K1.tolist(), C1.tolist())} == want
    assert td._rows_in(R1) == len(np.unique(R1)) and td._rows_in(R1[:0]) == 0


def test_worker_killed_mid_run_gives_the_same_result(tmp_path):
    x = _mixture(12000, 16, 50, seed=4)
    K, S = 32, 2000
    want = tessera.build_semantic_ids(x, levels=2, codebook_size=K, seed=3, train_sample=S)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                           env=td._worker_env(1))
    c = Client(cluster)
    try:
        killed = []

        def kill_one(stage, done, total, value):
            # after the first level: the victim holds input chunks and level-0 codes that must be recomputed
            if stage == "assign" and done == 1 and not killed:
                pids = c.run(os.getpid)
                victim = sorted(pids)[0]
                killed.append(victim)
                os.kill(pids[victim], signal.SIGKILL)  # the worker process of this test's own cluster
                time.sleep(0.5)

        res = td.build_semantic_ids(da.from_array(x, chunks=(1500, 16)), client=c, levels=2, codebook_size=K,
                                    seed=3, train_sample=S, progress=kill_one)
        assert killed and killed[0] not in c.scheduler_info()["workers"]  # it died (its nanny started another)
        got = res.codes.compute()
        _assert_same_optimum(x, got, np.asarray(want.codes), want.model, K)
        np.testing.assert_array_equal(res.ids.compute()[:, :2], got)
    finally:
        c.close()
        cluster.close()


def test_shard_errors_name_the_shard(client, tmp_path):
    x = _mixture(600, 8, 4, seed=5)
    d = tmp_path / "widths"
    d.mkdir()
    np.save(d / "a.npy", x[:300])
    np.save(d / "b.npy", x[300:, :6])
    with pytest.raises(tessera.InvalidArgument, match=r"b\.npy has 6 columns but .*a\.npy has 8"):
        td.build_semantic_ids(str(d), client=client, levels=1, codebook_size=4, train_sample=200)
    d = tmp_path / "empty"
    d.mkdir()
    np.save(d / "a.npy", x[:300])
    np.save(d / "b.npy", x[:0])
    with pytest.raises(tessera.InvalidArgument, match=r"b\.npy holds no rows"):
        td.build_semantic_ids(str(d), client=client, levels=1, codebook_size=4, train_sample=200)
    d = tmp_path / "nan"
    d.mkdir()
    bad = x[300:].copy()
    bad[17, 3] = np.nan
    np.save(d / "a.npy", x[:300])
    np.save(d / "b.npy", bad)
    with pytest.raises(tessera.InvalidArgument, match=r"b\.npy row 17: a non-finite value"):
        td.build_semantic_ids(str(d), client=client, levels=1, codebook_size=4, train_sample=200)
    with pytest.raises(tessera.InvalidArgument, match="the pattern matches no file"):
        td.build_semantic_ids(str(tmp_path / "nothing-*.npy"), client=client, levels=1, codebook_size=4)


def _cli(*args, timeout=120):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [os.path.dirname(os.path.dirname(tessera.__file__)),
                                                    env.get("PYTHONPATH", "")] if p)
    return subprocess.run([sys.executable, "-m", "tessera.distributed", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_unreachable_scheduler_is_a_clear_error(tmp_path):
    src = _shards(tmp_path, _mixture(100, 4, 2, seed=6), [])
    t0 = time.perf_counter()
    p = _cli("build", str(src), "--out", str(tmp_path / "o"), "--scheduler", "tcp://127.0.0.1:9",
             "--connect-timeout", "3")
    assert time.perf_counter() - t0 < 30
    assert p.returncode == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in p.stderr
    assert not (tmp_path / "o").exists()


def test_command_line_local_workers_and_existing_output(tmp_path):
    x = _mixture(3000, 16, 20, seed=7)
    src = _shards(tmp_path, x, [1000])
    out = tmp_path / "out"
    p = _cli("build", str(src), "--out", str(out), "--local-workers", "2", "--levels", "2", "--codebook-size", "16",
             "--train-sample", "1000", "--seed", "9", "--index-json", "--chunk-rows", "700")
    assert p.returncode == 0, p.stderr
    want = tessera.build_semantic_ids(x, levels=2, codebook_size=16, seed=9, train_sample=1000)
    assert (out / "index.json").read_text() == want.index_json()
    p = _cli("build", str(src), "--out", str(out), "--local-workers", "1", "--levels", "2", "--codebook-size", "16")
    assert p.returncode == 2 and "already exists" in p.stderr
    p = _cli("build", str(src), "--out", str(tmp_path / "bounded"), "--local-workers", "1", "--levels", "2",
             "--codebook-size", "16", "--train-sample", "1000", "--size-min", "150", "--size-max", "240")
    assert p.returncode == 0, p.stderr
    levels = json.loads((tmp_path / "bounded" / "metrics.json").read_text())["levels"]
    assert all(lv["size_min"] == 150 and lv["size_max"] == 240 and 150 <= lv["min_cluster_size"] and
               lv["max_cluster_size"] <= 240 for lv in levels)
    p = _cli("build", str(src), "--out", str(tmp_path / "bad"), "--local-workers", "1", "--codebook-size", "16",
             "--size-min", "500")
    assert p.returncode == 2 and "infeasible size bounds" in p.stderr and not (tmp_path / "bad").exists()


@pytest.mark.parametrize("case", ["plain", "fallen", "fallen-exact", "keep", "no-join-limit"])
def test_certificate_finds_every_violating_row_or_each_clusters_worst(case):
    # one chunk's certificate against a brute-force check on every row and cluster: the violators (rows with a
    # cluster cheaper than their own under the new prices), each with an arc to its cheapest cluster; with a
    # cap, each cluster's most violating rows and the count of all
    rng = np.random.default_rng(11)
    n, d, K, c = 700, 8, 40, 4
    x = rng.normal(size=(n, d)).astype(np.float32)
    book = rng.normal(size=(K, d)).astype(np.float32)
    codes = np.zeros((n, 0), np.int32)
    p_lists = rng.normal(scale=0.3, size=K)
    limit = None if case == "no-join-limit" else np.full(K, 0.5)
    lists = td._t.candidate_lists(x, book, p_lists, c, limit)
    b_rows = np.sort(rng.choice(n, 60, replace=False))
    b_labels = rng.integers(0, K, 60).astype(np.int32)
    p_new = p_lists + rng.normal(scale=0.05, size=K)
    if case != "plain":
        p_new[rng.choice(K, 5, replace=False)] -= 3.0  # a few clusters far cheaper: most rows want them
    keep = 3 if case == "keep" else None
    labels, v = td._certify_lists(x, codes, [book], 0, lists, lists, p_lists, limit, p_lists, p_new, b_rows,
                                  b_labels, 1e-6, c, 0.0, keep, case == "fallen-exact")
    D = td._t.squared_distances(x, book).astype(np.float64)
    off, ids, costs, _ = lists
    want_labels = np.array([ids[off[i]:off[i + 1]][np.argmin(costs[off[i]:off[i + 1]] + p_lists[ids[off[i]:off[i + 1]]])]
                            for i in range(n)])
    want_labels[b_rows] = b_labels
    assert np.array_equal(labels, want_labels)
    P = D + p_new
    own = P[np.arange(n), labels]
    gain = own - P.min(axis=1)
    dest = P.argmin(axis=1)
    clear = np.abs(gain) > 1e-4  # rows away from float32 rounding
    bad = set(np.flatnonzero((gain > 0) & clear).tolist())
    got = v["rows"].tolist()
    assert len(got) == len(set(got))
    assert len(bad) <= v["found"] <= len(bad) + int((~clear).sum())
    in_b = np.zeros(n, bool)
    in_b[b_rows] = True
    assert np.array_equal(v["labels"], labels[v["rows"]]) and np.array_equal(v["in_b"], in_b[v["rows"]])
    arcs = set(zip(v["arc_rows"].tolist(), v["arc_ids"].tolist()))
    for i in got:
        assert gain[i] > -1e-4 and (i, int(dest[i])) in arcs and (i, int(labels[i])) in arcs
    if keep is None:
        assert bad <= set(got)
    else:
        for k in range(K):
            mine = [i for i in bad if dest[i] == k]
            sent = [i for i in got if dest[i] == k and i in bad]
            assert len(sent) == min(keep, len(mine))
            if sent and len(mine) > len(sent):
                assert min(gain[sent]) >= max(gain[list(set(mine) - set(sent))]) - 1e-4
    if case != "plain":
        assert len(bad) > n // 4  # the case that needs the exact check or the cap
