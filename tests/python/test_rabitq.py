"""tessera.IVFRaBitQ against rabitqlib (RaBitQ-Library) on the same partition, exact distances and numpy."""
import numpy as np
import pytest

import tessera


def read_fvecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    d = raw[0]
    return raw.reshape(-1, d + 1)[:, 1:].view(np.float32).copy()


def recall_at(labels, truth, k):
    return float(np.mean([len(set(labels[i, :k]) & set(truth[i, :k])) / k for i in range(len(truth))]))


@pytest.fixture(scope="module")
def sift(data_file):
    x = read_fvecs(data_file("siftsmall/siftsmall_base.fvecs"))
    q = read_fvecs(data_file("siftsmall/siftsmall_query.fvecs"))
    gt = np.fromfile(data_file("siftsmall/siftsmall_groundtruth.ivecs"), dtype=np.int32).reshape(len(q), -1)[:, 1:]
    return x, q, gt


def test_recall_matches_rabitqlib_on_the_same_lists(sift):
    """Same coarse centroids and list assignments, same bits: recall@10 at least rabitqlib's, averaged over
    five rotations each, and ≥ 0.90 at 4 bits without re-ranking on siftsmall's own queries. rabitqlib draws its
    rotation from std::random_device, so the comparison is statistical: with siftsmall's 100 queries one run's
    recall@10 spreads by about 0.011 at 1 bit (the margin was 2 standard errors: it failed now and then), so 900
    more queries (midpoints of random base pairs, exact neighbours by numpy) bring the standard error of the
    difference of the means to about 0.003, and 0.015 is five of them."""
    rabitqlib = pytest.importorskip("rabitqlib")
    x, q_own, gt_own = sift
    rng = np.random.default_rng(11)
    a, b = rng.integers(0, len(x), 900), rng.integers(0, len(x), 900)
    extra = (0.5 * (x[a].astype(np.float64) + x[b])).astype(np.float32)
    d2 = (extra.astype(np.float64) ** 2).sum(1)[:, None] - 2 * extra.astype(np.float64) @ x.T.astype(np.float64) \
        + (x.astype(np.float64) ** 2).sum(1)[None]
    q = np.concatenate([q_own, extra])
    gt = np.concatenate([gt_own[:, :10], np.argsort(d2, axis=1, kind="stable")[:, :10]])
    for bits in (1, 4):
        ours, theirs, ours_own = [], [], []
        for seed in range(5):
            ix = tessera.IVFRaBitQ(128, 32, bits=bits, seed=seed)
            ix.train(x)
            ix.add(x)
            c = ix.centroids
            lists = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(-1), axis=1).astype(np.uint32)
            assert np.array_equal(np.bincount(lists, minlength=32), ix.list_sizes)
            ref = rabitqlib.IvfIndex(128, len(x), 32, bits, "l2")
            ref.build(x, c, lists)
            _, labels = ix.search(q, 10, nprobe=16)
            _, single = ix.search(q, 10, nprobe=16, single_stage=True)
            assert np.mean(labels == single) > 0.97
            out = ref.search(q, 10, 16)
            ref_labels = np.asarray(out[0] if np.asarray(out[0]).dtype.kind in "iu" else out[1]).reshape(len(q), -1)
            ours.append(recall_at(labels, gt, 10))
            theirs.append(recall_at(ref_labels.astype(np.int64), gt, 10))
            ours_own.append(recall_at(labels[:len(q_own)], gt_own, 10))
        assert np.mean(ours) >= np.mean(theirs) - 0.015, (bits, ours, theirs)
        if bits == 4:
            assert min(ours_own) >= 0.90, ours_own


def test_add_with_given_lists():
    """assign() is add()'s coarse assignment (numpy's nearest centroid); add(x, lists=assign(x)) builds the same
    index as add(x); other lists are taken as given; ids outside [0, nlist), wrong lengths and non-integers are
    refused with nothing added."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((500, 20)).astype(np.float32)
    q = rng.standard_normal((6, 20)).astype(np.float32)
    a = tessera.IVFRaBitQ(20, 5, bits=3)
    a.train(x)
    c = a.centroids.astype(np.float64)
    lists = a.assign(x)
    assert lists.dtype == np.int64 and lists.shape == (500,)
    np.testing.assert_array_equal(lists, np.argmin(((x[:, None, :] - c[None]) ** 2).sum(-1), axis=1))
    a.add(x)
    b = tessera.IVFRaBitQ(20, 5, bits=3)
    b.set_centroids(a.centroids)
    b.add(x, lists=lists.astype(np.uint32))
    assert a.list_sizes == b.list_sizes
    for ra, rb in zip(a.search(q, 10, nprobe=2), b.search(q, 10, nprobe=2)):
        np.testing.assert_array_equal(ra, rb)
    mine = np.arange(500) % 5
    e = tessera.IVFRaBitQ(20, 5, bits=3)
    e.set_centroids(a.centroids)
    for bad in (np.where(mine == 4, 5, mine), mine - 1, mine[:-1], mine.astype(np.float32), mine.reshape(-1, 1)):
        with pytest.raises(ValueError):
            e.add(x, lists=bad)
    assert e.ntotal == 0
    e.add(x, lists=mine)
    assert e.list_sizes == [100] * 5
    D, I = e.search(x[:4], 1, nprobe=5, rerank=500)
    np.testing.assert_array_equal(I[:, 0], np.arange(4))


def test_estimates_are_unbiased_and_shrink_with_bits():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 64)).astype(np.float32)
    q = x[:50] + 0.5 * rng.standard_normal((50, 64)).astype(np.float32)
    exact = ((q[:, None, :] - x[None]) ** 2).sum(-1)
    spread = []
    for bits in (1, 3, 5):
        ix = tessera.IVFRaBitQ(64, 1, bits=bits)
        ix.train(x)
        ix.add(x)
        dist, labels = ix.search(q, len(x))
        est = np.take_along_axis(dist, np.argsort(labels, axis=1), axis=1)  # back to label order
        rel = (est - exact) / exact
        assert abs(rel.mean()) < 0.01, (bits, rel.mean())
        spread.append(rel.std())
    assert spread[1] < 0.35 * spread[0] and spread[2] < 0.35 * spread[1], spread


def test_inner_product_ranks_by_estimated_products():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, 32)).astype(np.float32)
    q = rng.standard_normal((5, 32)).astype(np.float32)
    ix = tessera.IVFRaBitQ(32, 4, bits=6, metric="ip")
    ix.train(x)
    ix.add(x)
    dist, labels = ix.search(q, 20, nprobe=4)
    assert np.all(np.diff(dist, axis=1) <= 0), "inner products come in descending order"
    exact = np.einsum("qd,qkd->qk", q, x[labels])
    assert np.allclose(dist, exact, atol=0.05 * np.abs(exact).max())
    assert ix.metric == "ip"


def test_files_round_trip_and_bad_input(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((500, 24)).astype(np.float32)
    ix = tessera.IVFRaBitQ(24, 4, bits=3)
    with pytest.raises(tessera.InvalidArgument):
        ix.add(x)  # not trained
    ix.set_centroids(x[:4])
    with pytest.raises(tessera.InvalidArgument, match="no vectors"):
        ix.search(x[:2], 5)  # nothing added yet
    ix.add(x)
    with pytest.raises(tessera.InvalidArgument, match="k = 501"):
        ix.search(x[:2], 501)
    q = x[:3].copy()
    q[2, 5] = np.inf
    with pytest.raises(tessera.InvalidArgument, match="row 2"):
        ix.search(q, 5)
    path = tmp_path / "index.tsi"
    ix.save(path)
    back = tessera.IVFRaBitQ.load(path)
    assert back.ntotal == 500 and back.nlist == 4 and back.bits == 3
    a, b = ix.search(x[:7], 5, nprobe=2), back.search(x[:7], 5, nprobe=2)
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[0], b[0])
    data = path.read_bytes()
    (tmp_path / "cut.tsi").write_bytes(data[:-10])
    with pytest.raises(tessera.FormatError):
        tessera.IVFRaBitQ.load(tmp_path / "cut.tsi")
    for bad in (dict(bits=0), dict(bits=10), dict(metric="hamming"), dict(rotation="fft")):
        with pytest.raises(tessera.InvalidArgument):
            tessera.IVFRaBitQ(24, 4, **bad)
    with pytest.raises(tessera.InvalidArgument):
        ix.search(x[:2, :10], 5)
    with pytest.raises(tessera.InvalidArgument):
        ix.search(x[:2], 5, rerank=-1)
    with pytest.raises(tessera.InvalidArgument):
        ix.search(np.full((1, 24), np.nan, dtype=np.float32), 5)
    with pytest.raises(tessera.InvalidArgument):
        ix.train(x)  # the lists are fixed once vectors are in


def test_rerank_with_raw_vectors(tmp_path):
    """rerank=R: the R best by estimate get exact distances (the raw vectors are kept by default). R = n is brute
    force; a modest R lifts recall; keep_vectors=False refuses rerank; the vectors travel in the index file."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2000, 40)).astype(np.float32)
    q = rng.standard_normal((20, 40)).astype(np.float32)
    exact = ((q[:, None, :].astype(np.float64) - x[None].astype(np.float64)) ** 2).sum(-1)
    truth = np.argsort(exact, axis=1)[:, :10]
    ix = tessera.IVFRaBitQ(40, 8, bits=2)
    assert ix.keep_vectors
    ix.train(x)
    ix.add(x)
    dist, labels = ix.search(q, 10, nprobe=8, rerank=len(x))
    assert np.array_equal(labels, truth)
    assert np.allclose(dist, np.take_along_axis(exact, truth, axis=1), rtol=1e-5)
    plain = recall_at(ix.search(q, 10, nprobe=8)[1], truth, 10)
    reranked = recall_at(ix.search(q, 10, nprobe=8, rerank=60)[1], truth, 10)
    assert reranked > plain + 0.1 and reranked >= 0.95, (plain, reranked)
    assert np.array_equal(ix.search(q, 10, nprobe=3, rerank=2)[1], ix.search(q, 10, nprobe=3, rerank=10)[1])
    # inner product: exact products, descending
    ipx = tessera.IVFRaBitQ(40, 4, bits=3, metric="ip")
    ipx.train(x)
    ipx.add(x)
    d_ip, l_ip = ipx.search(q, 5, nprobe=4, rerank=len(x))
    assert np.array_equal(l_ip, np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :5])
    assert np.allclose(d_ip, np.einsum("qd,qkd->qk", q, x[l_ip]), rtol=1e-5, atol=1e-5)
    # files
    path = tmp_path / "rr.tsi"
    ix.save(path)
    back = tessera.IVFRaBitQ.load(path)
    assert back.keep_vectors
    a, b = ix.search(q, 10, nprobe=4, rerank=30), back.search(q, 10, nprobe=4, rerank=30)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    bare = tessera.IVFRaBitQ(40, 8, bits=2, keep_vectors=False)
    bare.set_centroids(ix.centroids)
    bare.add(x)
    assert not bare.keep_vectors
    assert np.array_equal(bare.search(q, 10, nprobe=8)[1], ix.search(q, 10, nprobe=8)[1])
    with pytest.raises(tessera.InvalidArgument, match="keep_vectors"):
        bare.search(q, 10, rerank=20)
    bare.save(tmp_path / "bare.tsi")
    assert (tmp_path / "bare.tsi").stat().st_size < path.stat().st_size - len(x) * 40 * 4 + 1000


def test_add_with_ids(tmp_path):
    """add(x, ids=...): search returns the given labels (also with lists=, rerank and after save/load); rows
    added without ids keep their row numbers; bad ids are refused."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((600, 24)).astype(np.float32)
    q = rng.standard_normal((8, 24)).astype(np.float32)
    ref = tessera.IVFRaBitQ(24, 4, bits=2)
    ref.train(x)
    ref.add(x)
    ids = np.concatenate([10**12 - 3 * np.arange(200),
                          np.arange(200, 400), 7 * np.arange(400, 600)]).astype(np.int64)
    ix = tessera.IVFRaBitQ(24, 4, bits=2)
    ix.set_centroids(ref.centroids)
    ix.add(x[:200], ids=ids[:200])
    ix.add(x[200:400])
    ix.add(x[400:], lists=ix.assign(x[400:]), ids=ids[400:].astype(np.uint32))
    for rr in (0, 30, "auto"):
        d0, l0 = ref.search(q, 6, nprobe=2, rerank=rr)
        d1, l1 = ix.search(q, 6, nprobe=2, rerank=rr)
        assert np.array_equal(d0, d1) and np.array_equal(l1, ids[l0]), rr
    ix.save(tmp_path / "ids.tsi")
    back = tessera.IVFRaBitQ.load(tmp_path / "ids.tsi")
    assert np.array_equal(back.search(q, 6, nprobe=2)[1], ix.search(q, 6, nprobe=2)[1])
    with pytest.raises(tessera.InvalidArgument, match="negative"):
        ix.add(x[:2], ids=np.array([3, -1]))
    with pytest.raises(tessera.InvalidArgument, match="ids must"):
        ix.add(x[:2], ids=np.array([1.0, 2.0]))
    with pytest.raises(tessera.InvalidArgument, match="ids must"):
        ix.add(x[:2], ids=np.arange(3))
    assert ix.ntotal == 600


def test_rerank_auto_by_error_bound():
    """rerank="auto": the RaBitQ paper's re-ranking by the error bound. Every distance returned is exact (numpy);
    with an interval wider than any error (epsilon0=50) the labels are brute force's; with the default bound
    recall is near 1 and, at 1 bit, above a fixed rerank=50; wrong values are refused."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 32)).astype(np.float32)
    q = rng.standard_normal((25, 32)).astype(np.float32)
    exact = ((q[:, None, :].astype(np.float64) - x[None].astype(np.float64)) ** 2).sum(-1)
    truth = np.argsort(exact, axis=1, kind="stable")[:, :10]
    ix = tessera.IVFRaBitQ(32, 8, bits=1)
    ix.train(x)
    ix.add(x)
    dist, labels = ix.search(q, 10, nprobe=8, rerank="auto")
    assert np.allclose(dist, np.take_along_axis(exact, labels, axis=1), rtol=1e-5, atol=1e-5)
    auto, fixed = recall_at(labels, truth, 10), recall_at(ix.search(q, 10, nprobe=8, rerank=50)[1], truth, 10)
    assert auto >= 0.98 and auto >= fixed, (auto, fixed)
    wide = tessera.IVFRaBitQ(32, 8, bits=1, epsilon0=50.0)
    wide.set_centroids(ix.centroids)
    wide.add(x)
    assert np.array_equal(wide.search(q, 10, nprobe=8, rerank="auto")[1], truth)
    assert np.array_equal(ix.search(q, 10, nprobe=8, rerank=np.int64(50))[1], ix.search(q, 10, nprobe=8, rerank=50)[1])
    for bad in ("all", True, 1.5, -1):
        with pytest.raises(tessera.InvalidArgument, match="rerank"):
            ix.search(q, 10, rerank=bad)
    bare = tessera.IVFRaBitQ(32, 8, bits=1, keep_vectors=False)
    bare.set_centroids(ix.centroids)
    bare.add(x)
    with pytest.raises(tessera.InvalidArgument, match="keep_vectors"):
        bare.search(q, 10, rerank="auto")


def exact_cosine(q, x):
    """Cosine similarities (nq × n, float64); a zero vector or query has cosine 0."""
    qn, xn = np.linalg.norm(q.astype(np.float64), axis=1), np.linalg.norm(x.astype(np.float64), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = (q.astype(np.float64) @ x.astype(np.float64).T) / np.outer(qn, xn)
    return np.nan_to_num(s, nan=0.0)


def test_cosine_recall_against_numpy(sift, tmp_path):
    """metric="cosine": recall@10 against numpy's exact cosine search (the vectors' scale is irrelevant), rerank
    returns the exact cosines, the same answers as "ip" on vectors normalised beforehand, and the file keeps
    the metric."""
    x, q, _ = sift
    rng = np.random.default_rng(5)
    x = x * rng.uniform(0.01, 100.0, (len(x), 1)).astype(np.float32)  # norms over four decades
    sim = exact_cosine(q, x)
    truth = np.argsort(-sim, axis=1, kind="stable")[:, :10]
    ix = tessera.IVFRaBitQ(128, 32, bits=4, metric="cosine")
    assert ix.metric == "cosine" and "cosine" in repr(ix)
    ix.train(x)
    ix.add(x)
    dist, labels = ix.search(q, 10, nprobe=16)
    assert np.all(np.diff(dist, axis=1) <= 0) and np.all(np.abs(dist) <= 1), "cosines, descending"
    plain = recall_at(labels, truth, 10)
    dist_rr, labels_rr = ix.search(q, 10, nprobe=16, rerank=50)
    reranked = recall_at(labels_rr, truth, 10)
    assert plain >= 0.90 and reranked >= 0.99, (plain, reranked)
    assert np.allclose(dist_rr, np.take_along_axis(sim, labels_rr, axis=1), atol=1e-5)
    assert np.allclose(dist, np.take_along_axis(sim, labels, axis=1), atol=0.05)
    # "ip" on unit vectors (normalised by numpy: the last bit may differ from the index's own scaling)
    unit = lambda v: (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    ip = tessera.IVFRaBitQ(128, 32, bits=4, metric="ip")
    ip.train(unit(x))
    ip.add(unit(x))
    for kw in (dict(), dict(rerank=50), dict(single_stage=True)):
        d_ip, l_ip = ip.search(unit(q), 10, nprobe=16, **kw)
        d_cos, l_cos = ix.search(q, 10, nprobe=16, **kw)
        assert np.mean(l_ip == l_cos) >= 0.99, kw
        same = l_ip == l_cos
        assert np.allclose(d_cos[same], np.clip(d_ip[same], -1, 1), atol=1e-5), kw
    # files
    path = tmp_path / "cos.tsi"
    ix.save(path)
    back = tessera.IVFRaBitQ.load(path)
    assert back.metric == "cosine"
    for kw in (dict(), dict(rerank=20)):
        a, b = ix.search(q, 10, nprobe=8, **kw), back.search(q, 10, nprobe=8, **kw)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_cosine_zero_vectors_and_queries():
    """A zero vector has cosine 0 with every query, a zero query with every vector: exactly 0, never NaN."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((800, 32)).astype(np.float32)
    x[:, 0] = -20 - np.abs(x[:, 0])  # every nonzero vector points away from the query e₀
    zeros = [7, 8, 300, 799]
    x[zeros] = 0
    q = np.zeros((2, 32), dtype=np.float32)
    q[0, 0] = 3  # q[1] stays zero
    for bits in (1, 4):
        ix = tessera.IVFRaBitQ(32, 8, bits=bits, metric="cosine")
        ix.train(x)  # zero rows are left out of the k-means
        ix.add(x)
        for kw in (dict(), dict(rerank=40), dict(single_stage=True)):
            dist, labels = ix.search(q, 5, nprobe=8, **kw)
            assert np.isfinite(dist).all()
            assert list(labels[0, :4]) == zeros and (dist[0, :4] == 0).all() and dist[0, 4] < -0.5, (bits, kw)
            assert list(labels[1]) == [0, 1, 2, 3, 4] and (dist[1] == 0).all(), "a zero query ties everywhere"
    with pytest.raises(tessera.InvalidArgument, match="nonzero"):
        tessera.IVFRaBitQ(32, 8, metric="cosine").train(np.zeros((100, 32), dtype=np.float32))
    with pytest.raises(tessera.InvalidArgument):
        ix.search(np.full((1, 32), np.inf, dtype=np.float32), 5)
