"""tessera.IndexAdditiveQuantizer against faiss's flat additive-quantizer indexes searching the very same codes
(faiss-cpu from PyPI: IndexResidualQuantizer / IndexLocalSearchQuantizer given our codebooks, norm encoder and
packed codes through add_sa_codes), against numpy brute force over the decoded vectors, and its errors."""
import gc

import numpy as np
import pytest

import tessera
from test_additive_quantizer import NAMES, faiss_twin, mixture


def assert_same_topk(D, I, Dref, Iref, tol=1e-4):
    """Same distances rank by rank (relative tol); labels may differ only where distances tie within tol."""
    scale = np.maximum(1.0, np.abs(Dref))
    np.testing.assert_allclose(D, Dref, rtol=0, atol=0 + tol * scale.max())
    diff = I != Iref
    assert np.all(np.abs(D - Dref)[diff] <= tol * scale[diff]), "labels differ away from ties"
    assert diff.mean() < 0.02, f"{diff.mean():.3f} of the labels differ"


def brute_force(xdec, q, k, ip):
    if ip:
        s = q.astype(np.float64) @ xdec.T.astype(np.float64)
        I = np.argsort(-s, axis=1, kind="stable")[:, :k]
    else:
        s = ((q[:, None, :].astype(np.float64) - xdec[None].astype(np.float64)) ** 2).sum(-1)
        I = np.argsort(s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, I, 1), I


@pytest.fixture(scope="module")
def data():
    return mixture(3000, 16, 0), mixture(60, 16, 1)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("st", NAMES)
def test_rq_equals_faiss_index_on_the_same_codes(data, st, metric):
    faiss = pytest.importorskip("faiss")
    x, q = data
    rq = tessera.ResidualQuantizer(16, 4, 5, search_type=st)
    rq.train(x)
    index = tessera.IndexAdditiveQuantizer(rq, metric=metric)
    index.add(x)
    assert index.ntotal == 3000 and index.codes.shape == (3000, rq.code_size)
    np.testing.assert_array_equal(index.codes, rq.compute_codes(x))
    D, I = index.search(q, 10)
    assert D.dtype == np.float32 and I.dtype == np.int64 and D.shape == I.shape == (60, 10)
    fmetric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    fi = faiss.IndexResidualQuantizer(16, 4, 5, fmetric, getattr(faiss.AdditiveQuantizer, st))
    fi.rq = faiss_twin(rq, st)
    fi.is_trained = True
    fi.add_sa_codes(index.codes)
    Df, If = fi.search(q, 10)
    assert_same_topk(D, I, Df, If)


@pytest.mark.parametrize("st", ["ST_decompress", "ST_norm_float"])
def test_lsq_equals_faiss_lsq_index_on_the_same_codes(data, st):
    faiss = pytest.importorskip("faiss")
    x, q = data
    lsq = tessera.LocalSearchQuantizer(16, 4, 4, search_type=st, train_iters=4)
    lsq.train(x)
    index = tessera.IndexAdditiveQuantizer(lsq, tessera.METRIC_L2)
    index.add(x)
    D, I = index.search(q, 20)
    twin = faiss.LocalSearchQuantizer(16, 4, 4, getattr(faiss.AdditiveQuantizer, st))
    faiss.copy_array_to_vector(lsq.codebooks.ravel(), twin.codebooks)
    twin.is_trained = True
    fi = faiss.IndexLocalSearchQuantizer(16, 4, 4, faiss.METRIC_L2, getattr(faiss.AdditiveQuantizer, st))
    fi.lsq = twin
    fi.is_trained = True
    fi.add_sa_codes(index.codes)
    Df, If = fi.search(q, 20)
    assert_same_topk(D, I, Df, If)
    # And exhaustive search over the decoded vectors.
    Db, Ib = brute_force(lsq.decode(index.codes), q, 20, ip=False)
    assert_same_topk(D, I, Db.astype(np.float32), Ib)


def test_inner_product_equals_brute_force(data):
    x, q = data
    rq = tessera.ResidualQuantizer(16, 3, 6, search_type="ST_LUT_nonorm")
    rq.train(x)
    index = tessera.IndexAdditiveQuantizer(rq, metric=tessera.METRIC_INNER_PRODUCT)
    assert index.metric == "ip" and index.metric_type == 0
    index.add(x)
    D, I = index.search(q, 15)
    Db, Ib = brute_force(index.reconstruct_n(0, index.ntotal), q, 15, ip=True)
    assert_same_topk(D, I, Db.astype(np.float32), Ib)


def test_fewer_than_k_empty_reset_and_add_codes(data):
    x, q = data
    rq = tessera.ResidualQuantizer(16, 2, 4, search_type="ST_norm_float")
    rq.train(x)
    index = tessera.IndexAdditiveQuantizer(rq)
    D, I = index.search(q[:2], 3)
    assert (I == -1).all() and np.isposinf(D).all()
    index.add_codes(rq.compute_codes(x[:4]))
    D, I = index.search(q[:2], 6)
    assert sorted(I[0, :4]) == [0, 1, 2, 3] and (I[:, 4:] == -1).all() and np.isposinf(D[:, 4:]).all()
    assert len(index) == 4
    index.reset()
    assert index.ntotal == 0
    ip = tessera.IndexAdditiveQuantizer(rq, "ip")
    assert np.isneginf(ip.search(q[:1], 2)[0]).all()


def test_save_and_read_index(data, tmp_path):
    x, q = data
    for st in ("ST_norm_cqint8", "ST_norm_from_LUT"):
        lsq = tessera.LocalSearchQuantizer(16, 2, 5, search_type=st, train_iters=2)
        lsq.train(x)
        index = tessera.IndexAdditiveQuantizer(lsq, "ip")
        index.add(x)
        path = tmp_path / "index.tsi"
        index.save(path, metadata={"note": 1})
        back = tessera.read_index(path)
        assert isinstance(back.quantizer, tessera.LocalSearchQuantizer)
        assert back.metric == "ip" and back.ntotal == 3000
        assert back.quantizer.search_type_name == st
        for a, b in zip(index.search(q, 7), back.search(q, 7)):
            np.testing.assert_array_equal(a, b)
        tessera.write_index(back, tmp_path / "again.tsi")
        assert tessera.IndexAdditiveQuantizer.load(tmp_path / "again.tsi").ntotal == 3000
    raw = path.read_bytes()
    (tmp_path / "cut.tsi").write_bytes(raw[:-7])
    with pytest.raises(tessera.FormatError, match="cut.tsi"):
        tessera.read_index(tmp_path / "cut.tsi")
    lsq.save(tmp_path / "model.tsq")
    with pytest.raises(tessera.FormatError, match="not an index"):
        tessera.read_index(tmp_path / "model.tsq")
    with pytest.raises(tessera.FormatError):
        tessera.load_quantizer(path)
    with pytest.raises(tessera.IOError):
        tessera.read_index(tmp_path / "missing.tsi")


def test_errors_and_model_lifetime(data):
    x, q = data
    with pytest.raises(tessera.InvalidArgument, match="trained"):
        tessera.IndexAdditiveQuantizer(tessera.ResidualQuantizer(16, 2, 4))
    with pytest.raises(TypeError):
        tessera.IndexAdditiveQuantizer(np.zeros(3))
    rq = tessera.ResidualQuantizer(16, 2, 4, search_type="ST_norm_float")
    rq.train(x)
    for bad in ("cosine", 2):
        with pytest.raises(tessera.InvalidArgument):
            tessera.IndexAdditiveQuantizer(rq, bad)
    with pytest.raises(TypeError):
        tessera.IndexAdditiveQuantizer(rq, True)
    index = tessera.IndexAdditiveQuantizer(rq, 1)
    assert index.quantizer is rq
    with pytest.raises(tessera.InvalidArgument, match="dimension mismatch"):
        index.add(x[:, :8])
    bad = x[:5].copy()
    bad[3, 2] = np.nan
    with pytest.raises(tessera.InvalidArgument, match="row 3"):
        index.add(bad)
    assert index.ntotal == 0
    index.add(x)
    with pytest.raises(tessera.InvalidArgument):
        index.search(q, 0)
    with pytest.raises(tessera.InvalidArgument, match="dimension mismatch"):
        index.search(q[:, :3], 2)
    with pytest.raises(tessera.InvalidArgument, match="bytes per row"):
        index.add_codes(np.zeros((2, rq.code_size + 1), np.uint8))
    # The index keeps the model alive.
    expected = index.search(q, 5)
    del rq
    gc.collect()
    for a, b in zip(expected, index.search(q, 5)):
        np.testing.assert_array_equal(a, b)
    # A search type changed under the index: its codes no longer fit, and it says so.
    index.quantizer.search_type = "ST_decompress"
    with pytest.raises(tessera.InvalidArgument, match="changed"):
        index.search(q, 5)


def test_refused_from_the_quantizers_own_training_callback(data):
    x, _ = data
    lsq = tessera.LocalSearchQuantizer(16, 2, 4, train_iters=2)

    def progress(stage, done, total, value):
        tessera.IndexAdditiveQuantizer(lsq)

    lsq.progress = progress
    with pytest.raises(RuntimeError, match="being modified"):
        lsq.train(x)
