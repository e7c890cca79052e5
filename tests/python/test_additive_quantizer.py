"""The additive-quantizer base against faiss (faiss-cpu from PyPI): the same codebooks and norm parameters
must give the same packed bytes both ways, the same LUTs and the same decoded norms. Nothing here is a
number copied from an earlier run: every expected value is computed by faiss or numpy in the test."""
import numpy as np
import pytest

import tessera

faiss = pytest.importorskip("faiss")

NAMES = ["ST_decompress", "ST_LUT_nonorm", "ST_norm_from_LUT", "ST_norm_float", "ST_norm_qint8", "ST_norm_qint4",
         "ST_norm_cqint8", "ST_norm_cqint4", "ST_norm_lsq2x4", "ST_norm_rq2x4"]
STORED = [n for n in NAMES if n not in ("ST_decompress", "ST_LUT_nonorm", "ST_norm_from_LUT")]


def mixture(n, d, seed):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(20, d)).astype(np.float32) * 3
    return (c[rng.integers(0, 20, n)] + rng.normal(size=(n, d)).astype(np.float32)).astype(np.float32)


def faiss_twin(ours, st):
    """A faiss.ResidualQuantizer with our codebooks, search type and norm encoder."""
    M, nbits = ours.M, ours.nbits[0]
    rq = faiss.ResidualQuantizer(ours.d, M, nbits)
    faiss.copy_array_to_vector(ours.codebooks.ravel(), rq.codebooks)
    rq.is_trained = True
    rq.search_type = getattr(faiss.AdditiveQuantizer, st)
    rq.set_derived_values()
    rq.norm_min, rq.norm_max = ours.norm_min, ours.norm_max
    table = ours.norm_table
    if len(table):
        rq.qnorm.reset()
        rq.qnorm.add(table.reshape(-1, 1).astype(np.float32))
    if len(ours.norm_tabs):
        faiss.copy_array_to_vector(ours.norm_tabs.astype(np.float32), rq.norm_tabs)
    if st == "ST_norm_from_LUT":
        rq.compute_codebook_tables()
    return rq


def faiss_pack(rq, codes, norms=None):
    n = len(codes)
    out = np.zeros((n, rq.code_size), dtype=np.uint8)
    codes = np.ascontiguousarray(codes, dtype=np.int32)
    if norms is None:
        rq.pack_codes(n, faiss.swig_ptr(codes), faiss.swig_ptr(out))
    else:
        norms = np.ascontiguousarray(norms, dtype=np.float32)
        rq.pack_codes(n, faiss.swig_ptr(codes), faiss.swig_ptr(out), -1, faiss.swig_ptr(norms))
    return out


@pytest.fixture(scope="module")
def data():
    return mixture(3000, 16, 0)


@pytest.fixture(scope="module", params=NAMES)
def trained(request, data):
    q = tessera.ResidualQuantizer(16, 3, 5, search_type=request.param, n_init=1, max_iter=10)
    q.train(data)
    return request.param, q


def test_constants_match_faiss():
    for v, name in enumerate(NAMES):
        assert getattr(tessera, name) == getattr(faiss.AdditiveQuantizer, name) == v
        assert getattr(tessera.ResidualQuantizer, name) == v
        assert getattr(tessera.AdditiveQuantizer, name) == v
    q = tessera.ResidualQuantizer(8, 2, 4, search_type=tessera.ST_norm_qint4)
    assert isinstance(q, tessera.AdditiveQuantizer)
    assert q.search_type == 5 and q.search_type_name == "ST_norm_qint4"
    assert tessera.ResidualQuantizer(8, 2, 4, search_type="ST_norm_cqint8").search_type == 6
    assert tessera.ResidualQuantizer(8, 2, 4, search_type=np.int64(9)).search_type == 9


def test_shapes_match_faiss():
    for name in NAMES:
        ours = tessera.ResidualQuantizer(16, 3, 4, search_type=name)
        rq = faiss.ResidualQuantizer(16, 3, 4)
        rq.search_type = getattr(faiss.AdditiveQuantizer, name)
        rq.set_derived_values()
        assert ours.code_size == rq.code_size, name
        assert ours.norm_bits == rq.norm_bits and ours.tot_bits == rq.tot_bits == 12 + rq.norm_bits
        assert ours.index_bits == 12
        assert ours.codebook_offsets == list(faiss.vector_to_array(rq.codebook_offsets))
        assert ours.total_codebook_size == rq.total_codebook_size == 48
        assert ours.nbits == [4, 4, 4] and ours.M == 3
    assert [tessera.ResidualQuantizer(16, 3, 4, search_type=n).code_size for n in
            ("ST_decompress", "ST_norm_float", "ST_norm_qint8", "ST_norm_qint4")] == [2, 6, 3, 2]


def test_bad_input():
    with pytest.raises(tessera.InvalidArgument, match="1..16"):
        tessera.ResidualQuantizer(8, 2, 17)
    with pytest.raises(tessera.InvalidArgument, match="ST_norm_float"):
        tessera.ResidualQuantizer(8, 2, 4, search_type="ST_norm_floatt")
    with pytest.raises(tessera.InvalidArgument, match="0..9"):
        tessera.ResidualQuantizer(8, 2, 4, search_type=10)
    with pytest.raises(TypeError):
        tessera.ResidualQuantizer(8, 2, 4, search_type=1.5)
    q = tessera.ResidualQuantizer(4, 2, 2, search_type="ST_norm_qint8")
    q.set_codebooks(np.arange(32, dtype=np.float32).reshape(8, 4) / 10)
    with pytest.raises(tessera.InvalidArgument, match="train_norm"):
        q.pack_codes(np.array([[1, 2]], dtype=np.int32))
    q.train_norm(np.array([0.5, 9.0], dtype=np.float32))
    assert q.pack_codes(np.array([[1, 2]], dtype=np.int32)).shape == (1, 2)
    with pytest.raises(tessera.InvalidArgument, match="norms has 3 values"):
        q.pack_codes(np.array([[1, 2]], dtype=np.int32), norms=np.ones(3, dtype=np.float32))
    with pytest.raises(tessera.InvalidArgument):
        q.set_codebooks(np.zeros((7, 4), dtype=np.float32))


def test_qint_encoding_equals_faiss(data):
    norms = (data.astype(np.float64) ** 2).sum(1).astype(np.float32)
    for name in ("ST_norm_qint8", "ST_norm_qint4"):
        ours = tessera.ResidualQuantizer(16, 2, 4, search_type=name)
        ours.train_norm(norms)
        rq = faiss.ResidualQuantizer(16, 2, 4)
        rq.search_type = getattr(faiss.AdditiveQuantizer, name)
        rq.set_derived_values()
        rq.train_norm(len(norms), faiss.swig_ptr(norms))
        assert (ours.norm_min, ours.norm_max) == (rq.norm_min, rq.norm_max)
        probe = np.concatenate([norms[:500], [norms.min() - 10, norms.max() + 10]]).astype(np.float32)
        assert [ours.encode_norm(float(v)) for v in probe] == [rq.encode_norm(float(v)) for v in probe]
        L = 256 if name.endswith("8") else 16
        lo, hi = np.float32(ours.norm_min), np.float32(ours.norm_max)
        expect = (np.arange(L, dtype=np.float32) + np.float32(0.5)) / np.float32(L) * (hi - lo) + lo
        np.testing.assert_array_equal([ours.decode_norm(c) for c in range(L)], expect)


def test_cqint_centres_equal_faiss_exact_kmeans(data):
    # n ≤ 256·k: neither side subsamples, and both solve 1-D k-means exactly.
    norms = (data[:4000].astype(np.float64) ** 2).sum(1).astype(np.float32)
    for name, k in (("ST_norm_cqint4", 16), ("ST_norm_cqint8", 256)):
        ours = tessera.ResidualQuantizer(16, 2, 4, search_type=name)
        ours.train_norm(norms)
        rq = faiss.ResidualQuantizer(16, 2, 4)
        rq.search_type = getattr(faiss.AdditiveQuantizer, name)
        rq.set_derived_values()
        rq.train_norm(len(norms), faiss.swig_ptr(norms))
        theirs = rq.qnorm.reconstruct_n(0, rq.qnorm.ntotal).ravel()
        assert len(ours.norm_table) == len(theirs) == k
        np.testing.assert_allclose(ours.norm_table, np.sort(theirs), rtol=1e-5, atol=1e-3)


def test_2x4_norm_error_not_above_faiss(data):
    norms = (data.astype(np.float64) ** 2).sum(1).astype(np.float32)
    for name in ("ST_norm_lsq2x4", "ST_norm_rq2x4"):
        ours = tessera.ResidualQuantizer(16, 2, 4, search_type=name)
        ours.train_norm(norms)
        rq = faiss.ResidualQuantizer(16, 2, 4)
        rq.search_type = getattr(faiss.AdditiveQuantizer, name)
        rq.set_derived_values()
        rq.train_norm(len(norms), faiss.swig_ptr(norms))
        tabs = ours.norm_tabs
        np.testing.assert_array_equal(ours.norm_table, (tabs[None, :16] + tabs[16:, None]).ravel())
        ours_err = np.mean([(ours.decode_norm(ours.encode_norm(float(v))) - v) ** 2 for v in norms])
        theirs_err = np.mean([(rq.decode_qcint(rq.encode_qcint(float(v))) - v) ** 2 for v in norms])
        assert ours_err <= theirs_err * 1.001, (name, ours_err, theirs_err)


def test_pack_bytes_equal_faiss_both_ways(trained, data):
    name, ours = trained
    rq = faiss_twin(ours, name)
    assert rq.code_size == ours.code_size
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 32, size=(400, 3)).astype(np.int32)
    rec = ours.decode(codes)
    norms = (rec.astype(np.float64) ** 2).sum(1).astype(np.float32)
    # With the same norms, the bytes are identical.
    ours_packed = ours.pack_codes(codes, norms=norms)
    np.testing.assert_array_equal(ours_packed, faiss_pack(rq, codes, norms))
    # Norms computed by each side: the code bits are identical, and the norms agree to rounding.
    a, b = ours.pack_codes(codes), faiss_pack(rq, codes)
    bits = ours.index_bits
    full = bits // 8
    np.testing.assert_array_equal(a[:, :full], b[:, :full])
    if bits % 8:
        mask = np.uint8((1 << (bits % 8)) - 1)
        np.testing.assert_array_equal(a[:, full] & mask, b[:, full] & mask)
    # faiss reads our codes, we read faiss's.
    np.testing.assert_array_equal(ours.unpack_codes(b), codes)
    np.testing.assert_allclose(rq.decode(ours_packed), rec, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.decode(b), rec, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ours.decode(ours_packed), rec)
    # Encoding: our greedy codes packed by faiss give our compute_codes bytes.
    x = data[:300]
    enc = ours.encode(x)
    enc_norms = (ours.decode(enc).astype(np.float64) ** 2).sum(1).astype(np.float32)
    ours_cc = ours.compute_codes(x)
    np.testing.assert_array_equal(ours.unpack_codes(ours_cc), enc)
    if name not in STORED:
        np.testing.assert_array_equal(ours_cc, faiss_pack(rq, enc))
    else:
        np.testing.assert_array_equal(ours.pack_codes(enc, norms=enc_norms)[:, :full], ours_cc[:, :full])


def test_norm_values_equal_faiss_search(trained, data):
    """faiss's flat index over our packed codes returns stored-norm − 2⟨q, x'⟩ + ‖q‖², with the norm it
    decodes; our decode_norm must give the same value."""
    name, ours = trained
    if name == "ST_decompress":
        pytest.skip("faiss decodes; no norm involved")
    rq = faiss_twin(ours, name)
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 32, size=(200, 3)).astype(np.int32)
    rec = ours.decode(codes).astype(np.float64)
    norms = (rec ** 2).sum(1).astype(np.float32)
    packed = ours.pack_codes(codes, norms=norms)
    index = faiss.IndexResidualQuantizer(16, 3, 5, faiss.METRIC_L2, getattr(faiss.AdditiveQuantizer, name))
    index.rq = rq
    index.is_trained = True
    index.code_size = rq.code_size
    index.add_sa_codes(packed)
    xq = data[-5:]
    D, I = index.search(xq, len(codes))
    qn = (xq.astype(np.float64) ** 2).sum(1)
    ip = xq.astype(np.float64) @ rec.T
    if name == "ST_LUT_nonorm":
        expect = qn[:, None] - ip
    elif name == "ST_norm_from_LUT":
        expect = qn[:, None] + (rec ** 2).sum(1)[None, :] - 2 * ip
    else:
        stored = np.array([ours.decode_norm(ours.encode_norm(float(v))) for v in norms])
        expect = qn[:, None] + stored[None, :] - 2 * ip
        assert np.all(np.abs(stored - norms) <= np.abs(norms).max() * 0.2)
    got = np.empty_like(expect)
    got[np.arange(len(xq))[:, None], I] = D
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-2 * (1 + qn.max()) * 1e-2)


def test_lut_equals_faiss(trained, data):
    name, ours = trained
    rq = faiss_twin(ours, name)
    xq = np.ascontiguousarray(data[:7])
    for alpha in (1.0, -2.0):
        lut = np.zeros((7, rq.total_codebook_size), dtype=np.float32)
        rq.compute_LUT(7, faiss.swig_ptr(xq), faiss.swig_ptr(lut), alpha)
        np.testing.assert_allclose(ours.compute_LUT(xq, alpha=alpha), lut, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ours.compute_LUT(xq), xq.astype(np.float64) @ ours.codebooks.T.astype(np.float64),
                               rtol=1e-5, atol=1e-4)


def test_model_file_keeps_search_type_and_norms(tmp_path, trained, data):
    name, ours = trained
    ours.save(tmp_path / "m.tsq")
    back = tessera.load_quantizer(tmp_path / "m.tsq")
    assert back.search_type_name == name and back.code_size == ours.code_size
    np.testing.assert_array_equal(back.norm_table, ours.norm_table)
    np.testing.assert_array_equal(back.compute_codes(data[:300]), ours.compute_codes(data[:300]))
    raw = (tmp_path / "m.tsq").read_bytes()
    (tmp_path / "cut.tsq").write_bytes(raw[:-3])
    with pytest.raises(tessera.FormatError):
        tessera.load_quantizer(tmp_path / "cut.tsq")


def test_search_type_setter_retrains_norms(data):
    q = tessera.ResidualQuantizer(16, 2, 4, n_init=1, max_iter=5)
    q.train(data)
    assert q.search_type == tessera.ST_decompress and q.code_size == 1
    q.search_type = "ST_norm_cqint4"
    assert q.code_size == 2
    with pytest.raises(tessera.InvalidArgument, match="train_norm"):
        q.compute_codes(data[:10])
    rec = q.decode(q.encode(data))
    q.train_norm((rec.astype(np.float64) ** 2).sum(1).astype(np.float32))
    assert q.compute_codes(data[:10]).shape == (10, 2)
    q.search_type = tessera.ST_norm_float
    assert q.code_size == 5
    codes = q.compute_codes(data[:10])
    rec = q.decode(codes)
    stored = codes[:, 1:5].copy().view(np.float32).ravel()  # the norm bits start at byte 1 (8 bits of codes)
    np.testing.assert_allclose(stored, (rec.astype(np.float64) ** 2).sum(1), rtol=1e-5)
