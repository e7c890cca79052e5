"""tessera.IndexIVFAdditiveQuantizer (and the faiss-named IndexIVFResidualQuantizer / IndexIVFLocalSearchQuantizer):
exhaustive search over its own reconstructions (numpy) when every list is scanned, recall against faiss-cpu's
IVF residual quantizer at the same nlist / M / nbits / nprobe on siftsmall, files, bad input."""
import numpy as np
import pytest

import tessera
from test_additive_quantizer import mixture


def numpy_top(rec, q, k, ip):
    s = q @ rec.T if ip else ((q[:, None, :].astype(np.float64) - rec[None, :, :]) ** 2).sum(-1)
    order = np.argsort(-s if ip else s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, axis=1), order


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("st", [tessera.ST_norm_float, tessera.ST_decompress])
def test_all_lists_is_exhaustive_search_over_the_reconstructions(metric, st):
    x, q = mixture(1500, 16, 3), mixture(20, 16, 4)
    index = tessera.IndexIVFResidualQuantizer(16, 6, 3, 4, metric=metric, search_type=st)
    assert not index.is_trained
    index.train(x)
    assert index.is_trained and index.quantizer.is_trained
    index.add(x)
    assert index.ntotal == len(x) == sum(index.list_sizes())
    rec = np.stack([index.reconstruct(i) for i in range(index.ntotal)])
    D, I = index.search(q, 8, nprobe=6)
    want_d, want_i = numpy_top(rec.astype(np.float64), q.astype(np.float64), 8, metric == "ip")
    np.testing.assert_allclose(D, want_d, rtol=1e-4, atol=1e-3)
    assert (I == want_i).mean() > 0.98  # labels differ only on near-ties


def test_nprobe_attribute_and_files(tmp_path):
    x, q = mixture(1200, 8, 5), mixture(10, 8, 6)
    index = tessera.IndexIVFLocalSearchQuantizer(8, 4, 2, 4, search_type=tessera.ST_norm_qint8, train_iters=3)
    index.train(x)
    index.add(x)
    index.nprobe = 2
    D1, I1 = index.search(q, 5)
    D2, I2 = index.search(q, 5, nprobe=2)
    np.testing.assert_array_equal(I1, I2)
    index.save(tmp_path / "ivf.tsq", metadata={"who": "test"})
    back = tessera.read_index(tmp_path / "ivf.tsq")
    assert isinstance(back, tessera.IndexIVFAdditiveQuantizer)
    assert back.nlist == 4 and back.ntotal == index.ntotal
    Db, Ib = back.search(q, 5, nprobe=2)
    np.testing.assert_array_equal(Ib, I1)
    np.testing.assert_array_equal(Db, D1)
    np.testing.assert_array_equal(back.centroids, index.centroids)
    (tmp_path / "cut.tsq").write_bytes((tmp_path / "ivf.tsq").read_bytes()[:-9])
    with pytest.raises(tessera.FormatError):
        tessera.IndexIVFAdditiveQuantizer.load(tmp_path / "cut.tsq")


def test_bad_input_is_a_clear_error():
    x = mixture(300, 8, 1)
    rq = tessera.ResidualQuantizer(8, 2, 4)
    index = tessera.IndexIVFAdditiveQuantizer(rq, 4)
    with pytest.raises(tessera.InvalidArgument, match="train"):
        index.search(x[:2], 3)
    with pytest.raises(tessera.InvalidArgument):
        index.train(x[:, :5])
    bad = x.copy()
    bad[7, 2] = np.nan
    with pytest.raises(tessera.InvalidArgument, match="row 7"):
        index.train(bad)
    index.train(x)
    index.add(x)
    with pytest.raises(tessera.InvalidArgument):
        index.search(x[:2], 0)
    with pytest.raises(tessera.InvalidArgument):
        index.search(x[:2], 3, nprobe=0)
    with pytest.raises(tessera.InvalidArgument):
        index.reconstruct(10**6)


def test_recall_not_below_faiss_ivf_rq_on_siftsmall(data_file):
    faiss = pytest.importorskip("faiss")
    xb = tessera.read_fvecs(data_file("siftsmall/siftsmall_base.fvecs"))
    xq = tessera.read_fvecs(data_file("siftsmall/siftsmall_query.fvecs"))
    gt = tessera.read_ivecs(data_file("siftsmall/siftsmall_groundtruth.ivecs"))
    nlist, M, nbits, k, nprobe = 32, 4, 6, 10, 8

    def recall(I):
        return np.mean([len(set(I[i, :k]) & set(gt[i, :k])) / k for i in range(len(I))])

    ours = tessera.IndexIVFResidualQuantizer(128, nlist, M, nbits, search_type=tessera.ST_norm_float)
    ours.train(xb)
    ours.add(xb)
    _, I = ours.search(xq, k, nprobe=nprobe)
    coarse = faiss.IndexFlatL2(128)
    theirs = faiss.IndexIVFResidualQuantizer(coarse, 128, nlist, M, nbits, faiss.METRIC_L2,
                                             faiss.AdditiveQuantizer.ST_norm_float)
    theirs.train(xb)
    theirs.add(xb)
    theirs.nprobe = nprobe
    _, If = theirs.search(xq, k)
    assert recall(I) >= recall(If) - 0.02, (recall(I), recall(If))
