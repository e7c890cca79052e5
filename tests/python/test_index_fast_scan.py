"""tessera.IndexAdditiveQuantizerFastScan against the flat index on the same quantizer, and against faiss's
IndexResidualQuantizerFastScan / IndexLocalSearchQuantizerFastScan (faiss-cpu from PyPI) trained with the same
parameters on the same data: recall@10 against the exact neighbours must be at least faiss's − 0.02. Speeds
are printed, not asserted."""
import time

import numpy as np
import pytest

import tessera
from test_additive_quantizer import mixture


def exact_knn(x, q, k, ip=False):
    if ip:
        s = -(q.astype(np.float64) @ x.T.astype(np.float64))
    else:
        s = ((q.astype(np.float64) ** 2).sum(1)[:, None] - 2 * q.astype(np.float64) @ x.T.astype(np.float64)
             + (x.astype(np.float64) ** 2).sum(1)[None])
    return np.argsort(s, axis=1, kind="stable")[:, :k]


def recall(I, gt):
    k = gt.shape[1]
    return np.mean([len(set(a[:k]) & set(b)) / k for a, b in zip(I, gt)])


def timed(f, reps=3):
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return out, best


@pytest.fixture(scope="module")
def data():
    return mixture(5000, 32, 0), mixture(200, 32, 1)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_close_to_the_flat_index(data, metric):
    x, q = data
    st = "ST_norm_rq2x4" if metric == "l2" else "ST_LUT_nonorm"
    rq = tessera.ResidualQuantizer(32, 8, 4, search_type=st)
    rq.train(x)
    flat = tessera.IndexAdditiveQuantizer(rq, metric)
    flat.add(x)
    fs = tessera.IndexAdditiveQuantizerFastScan(rq, metric)
    fs.add(x)
    assert fs.ntotal == 5000 and fs.bbs == 32 and fs.nsq == (10 if metric == "l2" else 8)
    np.testing.assert_array_equal(fs.codes, flat.codes)
    Df, If = flat.search(q, 10)
    D, I = fs.search(q, 10)
    assert D.dtype == np.float32 and I.dtype == np.int64 and I.shape == (200, 10)
    assert recall(I, If) >= 0.99
    same = I == If
    np.testing.assert_array_equal(D[same], Df[same])
    fs.rerank_factor = 0
    D0, I0 = fs.search(q, 10)
    assert recall(I0, If) >= 0.9
    np.testing.assert_allclose(D0, Df, rtol=0.1, atol=1.0 + 0.05 * np.abs(Df).max())


def test_errors(data):
    x, _ = data
    rq5 = tessera.ResidualQuantizer(32, 2, 5, search_type="ST_norm_rq2x4")
    rq5.train(x[:1000])
    with pytest.raises(tessera.InvalidArgument, match="nbits = 4"):
        tessera.IndexAdditiveQuantizerFastScan(rq5)
    rqf = tessera.ResidualQuantizer(32, 2, 4, search_type="ST_norm_float")
    rqf.train(x[:1000])
    with pytest.raises(tessera.InvalidArgument, match="ST_norm_lsq2x4"):
        tessera.IndexAdditiveQuantizerFastScan(rqf, "l2")
    with pytest.raises(tessera.InvalidArgument, match="ST_LUT_nonorm"):
        tessera.IndexAdditiveQuantizerFastScan(rqf, "ip")
    with pytest.raises(tessera.InvalidArgument, match="bbs"):
        tessera.IndexAdditiveQuantizerFastScan(rq5, "l2", bbs=40)
    with pytest.raises(tessera.InvalidArgument, match="trained"):
        tessera.IndexAdditiveQuantizerFastScan(tessera.ResidualQuantizer(32, 2, 4, search_type="ST_norm_rq2x4"))


def test_files_and_reset(tmp_path, data):
    x, q = data
    rq = tessera.ResidualQuantizer(32, 6, 4, search_type="ST_norm_lsq2x4")
    rq.train(x)
    fs = tessera.IndexAdditiveQuantizerFastScan(rq, tessera.METRIC_L2, bbs=64)
    fs.add(x[:777])
    fs.rerank_factor = 3
    fs.save(tmp_path / "fs.tsi", metadata={"name": "fs"})
    back = tessera.read_index(tmp_path / "fs.tsi")
    assert isinstance(back, tessera.IndexAdditiveQuantizerFastScan)
    assert back.bbs == 64 and back.rerank_factor == 3 and back.norm_scale == fs.norm_scale and back.ntotal == 777
    for a, b in zip(fs.search(q, 5), back.search(q, 5)):
        np.testing.assert_array_equal(a, b)
    tessera.write_index(fs, tmp_path / "fs2.tsi")
    assert isinstance(tessera.IndexAdditiveQuantizerFastScan.load(tmp_path / "fs2.tsi"),
                      tessera.IndexAdditiveQuantizerFastScan)
    flat = tessera.IndexAdditiveQuantizer(rq)
    flat.save(tmp_path / "flat.tsi")
    assert isinstance(tessera.read_index(tmp_path / "flat.tsi"), tessera.IndexAdditiveQuantizer)
    with pytest.raises(tessera.FormatError, match="flat index file"):
        tessera.IndexAdditiveQuantizerFastScan.load(tmp_path / "flat.tsi")
    fs.reset()
    assert fs.ntotal == 0 and len(fs) == 0
    D, I = fs.search(q[:2], 3)
    assert (I == -1).all() and np.isinf(D).all()


def compare_with_faiss(faiss, ours_q, theirs, x, q, k, label):
    ours = tessera.IndexAdditiveQuantizerFastScan(ours_q, "l2")
    ours.add(x)
    theirs.add(x)
    gt = exact_knn(x, q, k)
    (_, I), t_ours = timed(lambda: ours.search(q, k))
    ours.rerank_factor = 0
    (_, I0), t_ours0 = timed(lambda: ours.search(q, k))
    (_, If), t_faiss = timed(lambda: theirs.search(q, k))
    r, r0, rf = recall(I, gt), recall(I0, gt), recall(If, gt)
    print(f"\n{label}: recall@{k} ours {r:.3f} (no re-rank {r0:.3f}), faiss {rf:.3f}; search "
          f"ours {t_ours * 1e3:.1f} ms (no re-rank {t_ours0 * 1e3:.1f} ms), faiss {t_faiss * 1e3:.1f} ms")
    assert r >= rf - 0.02
    return r, r0, rf


def test_recall_vs_faiss_rq_fast_scan_siftsmall(data_file):
    faiss = pytest.importorskip("faiss")
    x = tessera.read_fvecs(data_file("siftsmall/siftsmall_base.fvecs"))
    q = tessera.read_fvecs(data_file("siftsmall/siftsmall_query.fvecs"))
    M = 16
    rq = tessera.ResidualQuantizer(128, M, 4, search_type="ST_norm_rq2x4")
    rq.train(x)
    theirs = faiss.IndexResidualQuantizerFastScan(128, M, 4, faiss.METRIC_L2, faiss.AdditiveQuantizer.ST_norm_rq2x4)
    theirs.train(x)
    compare_with_faiss(faiss, rq, theirs, x, q, 10, f"siftsmall RQ{M}x4 fast-scan")


def test_recall_vs_faiss_lsq_fast_scan_mixture(data):
    faiss = pytest.importorskip("faiss")
    x, q = data
    lsq = tessera.LocalSearchQuantizer(32, 8, 4, search_type="ST_norm_lsq2x4")
    lsq.train(x)
    theirs = faiss.IndexLocalSearchQuantizerFastScan(32, 8, 4, faiss.METRIC_L2, faiss.AdditiveQuantizer.ST_norm_lsq2x4)
    theirs.train(x)
    compare_with_faiss(faiss, lsq, theirs, x, q, 10, "mixture LSQ8x4 fast-scan")
