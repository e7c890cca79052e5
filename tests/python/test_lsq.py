"""tessera.LocalSearchQuantizer against faiss-cpu's LocalSearchQuantizer and numpy references."""
from __future__ import annotations

import numpy as np
import pytest

import tessera

faiss = pytest.importorskip("faiss")


def _mixture(n=2000, d=16, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(20, d)).astype(np.float32)
    return (c[rng.integers(0, 20, n)] + 0.3 * rng.normal(size=(n, d))).astype(np.float32)


def _small(**kw):
    kw.setdefault("train_iters", 4)
    kw.setdefault("train_ils_iters", 4)
    kw.setdefault("encode_ils_iters", 4)
    return kw


def test_parameters_and_defaults_are_faiss_s():
    ours, theirs = tessera.LocalSearchQuantizer(32, 4, 6), faiss.LocalSearchQuantizer(32, 4, 6)
    for name in ("K", "train_iters", "encode_ils_iters", "train_ils_iters", "icm_iters", "chunk_size", "random_seed",
                 "nperts", "update_codebooks_with_double", "M", "d", "code_size"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.p == pytest.approx(theirs.p) and ours.lambd == pytest.approx(theirs.lambd)
    assert ours.search_type == theirs.search_type == tessera.ST_decompress
    assert isinstance(ours, tessera.AdditiveQuantizer)
    ours.train_iters = 7
    assert ours.train_iters == 7


def test_error_on_siftsmall_matches_faiss(data_file):
    """Same data, same parameters (faiss's defaults, fewer iterations to keep the suite short): tessera's
    MSE per vector at most 1% above faiss's."""
    x = tessera.read_fvecs(data_file("siftsmall/siftsmall_base.fvecs"))
    train = x[:5000]
    params = dict(train_iters=5, encode_ils_iters=8)
    ours = tessera.LocalSearchQuantizer(128, 8, 8, **params)
    ours.train(train)
    theirs = faiss.LocalSearchQuantizer(128, 8, 8)
    for k, v in params.items():
        setattr(theirs, k, v)
    theirs.train(train)
    mse = {}
    for name, q in (("tessera", ours), ("faiss", theirs)):
        rec = q.decode(q.compute_codes(x))
        mse[name] = float(((x - rec) ** 2).sum(1).mean())
    assert mse["tessera"] <= 1.01 * mse["faiss"], mse


def test_faiss_decodes_our_packed_codes():
    x = _mixture(1500, 16)
    ours = tessera.LocalSearchQuantizer(16, 4, 5, **_small())
    ours.train(x)
    codes = ours.compute_codes(x)
    theirs = faiss.LocalSearchQuantizer(16, 4, 5)
    faiss.copy_array_to_vector(ours.codebooks.ravel(), theirs.codebooks)
    theirs.is_trained = True
    np.testing.assert_allclose(theirs.decode(codes), ours.decode(codes), rtol=1e-5, atol=1e-5)
    assert codes.shape == (1500, theirs.code_size)


def test_update_codebooks_is_the_ridge_solution():
    x = _mixture(800, 8, seed=2)
    M, K, lam = 3, 8, 0.01
    q = tessera.LocalSearchQuantizer(8, M, 3)
    codes = np.random.default_rng(4).integers(0, K, size=(800, M)).astype(np.int32)
    q.update_codebooks(x, codes)
    B = np.zeros((800, M * K))
    for m in range(M):
        B[np.arange(800), m * K + codes[:, m]] = 1
    ref = np.linalg.solve(B.T @ B + lam * np.eye(M * K), B.T @ x.astype(np.float64))
    np.testing.assert_allclose(q.codebooks, ref, rtol=1e-3, atol=1e-3)


def test_icm_steps_never_raise_the_error_and_ils_improves_on_them():
    x = _mixture(600, 12, seed=3)
    q = tessera.LocalSearchQuantizer(12, 4, 4, **_small())
    q.train(x)
    u, b = q.compute_unary_terms(x), q.compute_binary_terms()
    assert u.shape == (4, 600, 16) and b.shape == (4, 4, 16, 16)
    # the energy decomposition: ‖x − x'‖² = ‖x‖² + Σ U + Σ_{m<m'} B
    codes = np.random.default_rng(1).integers(0, 16, size=(600, 4)).astype(np.int32)
    err = ((x - q.decode(codes)) ** 2).sum(1)
    energy = (x * x).sum(1) + sum(u[m, np.arange(600), codes[:, m]] for m in range(4))
    energy += sum(b[m, m2, codes[:, m], codes[:, m2]] for m in range(4) for m2 in range(m + 1, 4))
    np.testing.assert_allclose(energy, err, rtol=1e-3, atol=1e-2)
    prev = err
    for _ in range(4):
        codes = q.icm_encode_step(codes, u, b, 1)
        cur = ((x - q.decode(codes)) ** 2).sum(1)
        assert np.all(cur <= prev * (1 + 1e-5) + 1e-4)
        prev = cur
    better = q.icm_encode(x, codes, 8, seed=5)
    final = ((x - q.decode(better)) ** 2).sum(1)
    assert np.all(final <= prev * (1 + 1e-6) + 1e-6)
    assert q.evaluate(better, x) == pytest.approx(final.mean(), rel=1e-4)


def test_norm_search_types_pack_like_faiss_and_models_round_trip(tmp_path):
    x = _mixture(1200, 16, seed=5)
    q = tessera.LocalSearchQuantizer(16, 3, 4, "ST_norm_qint8", **_small())
    q.train(x)
    assert q.code_size == 3 and q.code_size == faiss.LocalSearchQuantizer(16, 3, 4, faiss.AdditiveQuantizer.ST_norm_qint8).code_size
    codes = q.compute_codes(x)
    path = tmp_path / "lsq.tsq"
    q.save(path, metadata={"note": "x"})
    back = tessera.load_quantizer(path)
    assert isinstance(back, tessera.LocalSearchQuantizer) and back.metadata == {"note": "x"}
    assert back.train_iters == 4 and back.search_type == tessera.ST_norm_qint8
    np.testing.assert_array_equal(back.compute_codes(x), codes)


def test_training_is_deterministic_and_thread_independent():
    x = _mixture(1500, 16, seed=6)
    runs = []
    for threads in (1, 2):
        tessera.set_num_threads(threads)
        q = tessera.LocalSearchQuantizer(16, 4, 4, **_small())
        q.train(x)
        runs.append((q.codebooks, q.compute_codes(x)))
    tessera.set_num_threads(0)
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_bad_input_is_a_clear_error():
    with pytest.raises(tessera.InvalidArgument, match="nbits"):
        tessera.LocalSearchQuantizer(8, 2, 0)
    with pytest.raises(tessera.InvalidArgument, match="GiB"):
        tessera.LocalSearchQuantizer(8, 16, 12)
    q = tessera.LocalSearchQuantizer(8, 2, 3)
    with pytest.raises(tessera.InvalidArgument, match="trained"):
        q.compute_codes(np.zeros((4, 8), np.float32))
    with pytest.raises(tessera.InvalidArgument, match="dimension"):
        q.train(np.zeros((10, 9), np.float32))
    bad = np.zeros((10, 8), np.float32)
    bad[2, 3] = np.nan
    with pytest.raises(tessera.InvalidArgument):
        q.train(bad)
    with pytest.raises(tessera.InvalidArgument, match="init"):
        tessera.LocalSearchQuantizer(8, 2, 3, init="pca")


def test_cg_codebook_updates_are_thread_independent_and_round_trip(tmp_path):
    """8-bit codebooks on few vectors: training's codebook updates go by conjugate gradients (the default
    codebook_cg_tol); the result does not depend on the thread count, and the setting is saved."""
    x = _mixture(1200, 8, seed=7)
    runs = []
    for threads in (1, 2):
        tessera.set_num_threads(threads)
        q = tessera.LocalSearchQuantizer(8, 3, 8, **_small())
        assert q.codebook_cg_tol == pytest.approx(1e-5)
        q.train(x)
        runs.append(q.codebooks)
    tessera.set_num_threads(0)
    np.testing.assert_array_equal(runs[0], runs[1])
    q.codebook_cg_tol = 1e-7
    q.save(tmp_path / "q.tsq")
    assert tessera.load_quantizer(tmp_path / "q.tsq").codebook_cg_tol == pytest.approx(1e-7)
    with pytest.raises(tessera.InvalidArgument, match="codebook_cg_tol"):
        tessera.LocalSearchQuantizer(8, 3, 8, codebook_cg_tol=-1.0, **_small()).train(x)
