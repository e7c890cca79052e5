"""The semantic-ID pipeline from Python on real embeddings (Debian package descriptions)."""
import json
import os
import threading
import time


import numpy as np
import pytest

import tessera

EMB = "debian-packages/embeddings.npy"  # in the real data sets (conftest.py)
N, K, L = 5000, 32, 3


@pytest.fixture(scope="module")
def x(data_file):
    e = np.load(data_file(EMB), mmap_mode="r")
    assert e.dtype == np.float16 and e.shape[1] == 256
    return np.asarray(e[:N])  # float16: tessera converts with one copy


@pytest.fixture(scope="module", params=["append", "append-all", "reassign"])
def sids(request, x):
    return tessera.build_semantic_ids(x, levels=L, codebook_size=K, dedup=request.param, n_init=1, max_iter=15, seed=7)


def id_tuples(ids):
    return [tuple(int(v) for v in row if v >= 0) for row in ids]


def test_ids_unique_prefix_free_and_balanced(sids, x):
    assert sids.codes.shape == (N, L) and sids.codes.dtype == np.int32
    assert sids.ids.dtype == np.int32 and sids.ids.shape[0] == N and sids.ids.shape[1] in (L, L + 1)
    assert len(sids) == N
    tuples = id_tuples(sids.ids)
    assert len(set(tuples)) == N
    prefixes = {t[:j] for t in tuples for j in range(1, len(t))}
    assert not prefixes & set(tuples), "an ID is a prefix of another"
    lo, hi = tessera.default_size_bounds(N, K)
    for m in range(L):
        s = np.bincount(sids.codes[:, m], minlength=K)
        assert s.min() >= lo and s.max() <= hi, (m, s.min(), s.max())
    met = sids.metrics
    assert met["n_items"] == N and met["dim"] == 256 and met["codebook_sizes"] == [K] * L
    assert met["final_collisions"] == 0 and met["dedup"] == sids.dedup
    for lv in met["levels"]:  # N ≥ 64·K: each level warm-starts on min(256·K, N/2) rows
        assert 1 <= lv["iterations"] <= 15 and lv["warm_start_rows"] == min(256 * K, N // 2)
    # The reported MSE is the reconstruction MSE of the codes, computed in numpy.
    books = [sids.model.codebook(m) for m in range(L)]
    rec = sum(books[m].astype(np.float64)[sids.codes[:, m]] for m in range(L))
    assert met["mse"] == pytest.approx(float(np.mean((x.astype(np.float64) - rec) ** 2)), rel=1e-4)
    assert tessera.collision_stats(sids.ids)["collision_rate"] == 0.0
    cs = tessera.collision_stats(sids.codes)
    assert cs["unique_ids"] == len(set(map(tuple, sids.codes.tolist())))
    if sids.dedup != "reassign":
        np.testing.assert_array_equal(sids.ids[:, :L], sids.codes)
    if sids.dedup == "append-all":
        assert sids.ids.shape[1] == L + 1 and (sids.ids[:, L] >= 0).all()


def test_tokens_miniOneRec_format(sids):
    tok = sids.tokens()
    assert list(tok) == [str(i) for i in range(N)]
    for i in (0, 1, N // 2, N - 1):
        row = sids.ids[i]
        expect = [f"<{chr(ord('a') + j)}_{int(row[j]) + 1}>" for j in range(L)]
        if len(row) > L and row[L] >= 0:
            expect.append(f"<d_{int(row[L])}>")
        assert tok[str(i)] == expect
    assert json.loads(sids.index_json()) == tok
    keys = [f"pkg{i}" for i in range(N)]
    assert list(sids.tokens(keys))[:2] == ["pkg0", "pkg1"]
    with pytest.raises(tessera.InvalidArgument):
        sids.tokens(keys[:-1])


def test_save_five_files(tmp_path, sids, x):
    out = tmp_path / "out"
    sids.save(out)
    assert sorted(os.listdir(out)) == ["codebooks.npz", "codes.npy", "index.json", "metrics.json", "model.tsq"]
    with open(out / "index.json") as f:
        assert json.load(f) == sids.tokens()
    np.testing.assert_array_equal(np.load(out / "codes.npy"), sids.codes)
    with np.load(out / "codebooks.npz") as z:
        assert sorted(z.files) == [f"codebook_{m}" for m in range(L)]
        for m in range(L):
            np.testing.assert_array_equal(z[f"codebook_{m}"], sids.model.codebook(m))
    with open(out / "metrics.json") as f:
        assert json.load(f)["mse"] == sids.metrics["mse"]
    # The saved model encodes new items with the stored dedup.
    enc = tessera.encode_semantic_ids(out / "model.tsq", x[:500])
    assert enc.dedup == sids.dedup
    np.testing.assert_array_equal(enc.codes, sids.model.encode(x[:500]))
    assert len(set(id_tuples(enc.ids))) == 500


def test_encode_with_model_object(x, sids):
    e = tessera.encode_semantic_ids(sids.model, x[:300], dedup="none", zero_based=True)
    assert e.model is sids.model
    np.testing.assert_array_equal(e.ids, e.codes)
    assert e.tokens()["0"] == [f"<{c}_{int(v)}>" for c, v in zip("abc", e.codes[0])]
    with pytest.raises(tessera.InvalidArgument, match="dimension mismatch"):
        tessera.encode_semantic_ids(sids.model, x[:10, :100])


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(11)
    return (rng.standard_normal((2000, 32)) @ rng.standard_normal((32, 32))).astype(np.float32)


def test_same_codes_at_1_and_2_threads(small):
    a = tessera.build_semantic_ids(small, levels=2, codebook_size=16, seed=3, n_init=2, threads=1)
    b = tessera.build_semantic_ids(small, levels=2, codebook_size=16, seed=3, n_init=2, threads=2)
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.ids, b.ids)
    for ca, cb in ((a.model.codebooks, b.model.codebooks),):  # flat (total_codebook_size, d)
        np.testing.assert_array_equal(ca, cb)
    prev = tessera.num_threads()
    tessera.set_num_threads(1)
    try:
        assert tessera.num_threads() == 1
        c = tessera.build_semantic_ids(small, levels=2, codebook_size=16, seed=3, n_init=2)
    finally:
        tessera.set_num_threads(0)
    assert tessera.num_threads() == prev
    np.testing.assert_array_equal(a.codes, c.codes)


def test_bad_input(tmp_path, small):
    bad = small.copy()
    bad[123, 4] = np.nan
    with pytest.raises(tessera.InvalidArgument, match="row 123"):
        tessera.build_semantic_ids(bad, levels=2, codebook_size=8)
    with pytest.raises(ValueError):
        tessera.build_semantic_ids(small[0], levels=2, codebook_size=8)  # 1-D
    with pytest.raises(ValueError):
        tessera.build_semantic_ids(small[None], levels=2, codebook_size=8)  # 3-D
    with pytest.raises(tessera.InvalidArgument):
        tessera.build_semantic_ids(small[:20], levels=2, codebook_size=32)  # N < K
    with pytest.raises(tessera.InvalidArgument):
        tessera.build_semantic_ids(small, levels=2, codebook_size=16, size_min=200, size_max=300)  # infeasible
    with pytest.raises(tessera.InvalidArgument):
        tessera.build_semantic_ids(small, levels=2, codebook_size=8, dedup="bogus")
    s = tessera.build_semantic_ids(small[:400], levels=2, codebook_size=8, n_init=1, balance=False)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(tessera.IOError) as e:
        s.save(blocker / "out")
    assert isinstance(e.value, OSError)
    keys = [f"item{i}" for i in range(400)]
    keys[399] = "item7"
    with pytest.raises(tessera.InvalidArgument, match='"item7" is given twice'):
        s.save(tmp_path / "dup", keys=keys)
    with pytest.raises(tessera.InvalidArgument, match="given twice"):
        s.index_json(keys)
    assert not (tmp_path / "dup").exists()
    s.save(tmp_path / "ok")
    raw = (tmp_path / "ok" / "model.tsq").read_bytes()
    (tmp_path / "trunc.tsq").write_bytes(raw[:40])
    with pytest.raises(tessera.FormatError):
        tessera.encode_semantic_ids(tmp_path / "trunc.tsq", small)
    with pytest.raises(tessera.InvalidArgument):
        tessera.encode_semantic_ids(tmp_path / "ok" / "model.tsq", small[:, :31])


def test_progress_and_gil_release(small):
    events = []

    def progress(stage, done, total, value):
        events.append((stage, done, total, value))

    q = tessera.ResidualQuantizer(32, [64, 64], progress=progress, n_init=2, max_iter=40, tol=0.0)
    q.fit(small)
    assert events and all(isinstance(e[0], str) and e[1] <= e[2] for e in events)
    assert any("level 2" in e[0] for e in events)

    # A second Python thread keeps running while fit() works without the GIL.
    q.progress = None
    big = np.tile(small, (4, 1)) + np.random.default_rng(0).standard_normal((8000, 32)).astype(np.float32)
    counter = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            counter[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.05)
        before = counter[0]
        t0 = time.perf_counter()
        tessera.ResidualQuantizer(32, [64, 64], n_init=1, max_iter=25, tol=0.0).fit(big)
        elapsed = time.perf_counter() - t0
        during = counter[0] - before
    finally:
        stop.set()
        t.join()
    assert elapsed > 0.02
    assert during > 1000, (during, elapsed)


def test_progress_exception_propagates(small):
    def boom(stage, done, total, value):
        raise KeyError("stop here")

    with pytest.raises(KeyError, match="stop here"):
        tessera.build_semantic_ids(small, levels=2, codebook_size=8, progress=boom)
    with pytest.raises(TypeError):
        tessera.build_semantic_ids(small, levels=2, codebook_size=8, progress=42)
