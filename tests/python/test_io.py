"""tessera's readers and writers against numpy's own (de)serialisation."""
import gzip

import numpy as np
import pytest

import tessera


def texmex_numpy(path, dtype):
    """Reference texmex parser: int32 dim then dim values per row."""
    raw = np.fromfile(path, dtype=np.uint8)
    d = int(raw[:4].view(np.int32)[0])
    item = np.dtype(dtype).itemsize
    row = 4 + d * item
    rows = raw.reshape(-1, row)
    return rows[:, 4:].copy().view(dtype).reshape(len(rows), d)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_npy_float_roundtrip(tmp_path, dtype):
    x = np.random.default_rng(0).standard_normal((37, 11)).astype(dtype)
    p = tmp_path / "x.npy"
    np.save(p, x)
    y = tessera.read_npy(p)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(y, x.astype(np.float32))
    q = tmp_path / "y.npy"
    tessera.write_npy(q, x)
    z = np.load(q)
    assert z.dtype == np.float32
    np.testing.assert_array_equal(z, x.astype(np.float32))


def test_npy_is_memory_mapped_not_copied(tmp_path):
    x = np.arange(64 * 8, dtype=np.float32).reshape(64, 8)
    np.save(tmp_path / "x.npy", x)
    y = tessera.read_npy(str(tmp_path / "x.npy"))
    assert not y.flags.owndata  # a capsule owns the mapping
    y[0, 0] = -1  # copy-on-write: the file is untouched
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), x)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_npy_int_roundtrip(tmp_path, dtype):
    c = np.random.default_rng(1).integers(-5, 1000, size=(20, 4)).astype(dtype)
    p = tmp_path / "c.npy"
    tessera.write_npy(p, c)
    z = np.load(p)
    assert z.dtype == dtype
    np.testing.assert_array_equal(z, c)
    r = tessera.read_npy(p)
    assert r.dtype == np.int32
    np.testing.assert_array_equal(r, c)


def test_npy_errors(tmp_path):
    x = np.ones((100, 10), dtype=np.float32)
    p = tmp_path / "x.npy"
    np.save(p, x)
    data = p.read_bytes()
    (tmp_path / "trunc.npy").write_bytes(data[: len(data) - 7])
    with pytest.raises(tessera.FormatError):
        tessera.read_npy(tmp_path / "trunc.npy")
    (tmp_path / "junk.npy").write_bytes(b"hello world, not numpy")
    with pytest.raises(tessera.FormatError) as e:
        tessera.read_npy(tmp_path / "junk.npy")
    assert isinstance(e.value, ValueError) and isinstance(e.value, tessera.Error)
    np.save(tmp_path / "f.npy", np.asfortranarray(np.ones((5, 3), dtype=np.float32) * np.arange(3)))
    with pytest.raises(tessera.FormatError):
        tessera.read_npy(tmp_path / "f.npy")
    with pytest.raises(tessera.IOError) as e:
        tessera.read_npy(tmp_path / "missing.npy")
    assert isinstance(e.value, OSError)
    with pytest.raises(ValueError):
        tessera.write_npy(tmp_path / "v.npy", np.ones(5, dtype=np.float32))  # 1-D
    with pytest.raises(OSError):
        tessera.write_npy(tmp_path / "no" / "such" / "dir" / "x.npy", x)


def test_npz_roundtrip(tmp_path):
    rng = np.random.default_rng(2)
    arrays = {"codebook_0": rng.standard_normal((8, 5)).astype(np.float32),
              "codebook_1": rng.standard_normal((3, 5))}
    for compress in (True, False):
        p = tmp_path / f"a{int(compress)}.npz"
        tessera.write_npz(p, arrays, compress=compress)
        with np.load(p) as z:
            assert sorted(z.files) == sorted(arrays)
            for k, v in arrays.items():
                np.testing.assert_array_equal(z[k], v.astype(np.float32))
    np.savez_compressed(tmp_path / "np.npz", **arrays)
    back = tessera.read_npz(tmp_path / "np.npz")
    assert list(back) == list(arrays)
    for k, v in arrays.items():
        np.testing.assert_array_equal(back[k], v.astype(np.float32))
    data = (tmp_path / "np.npz").read_bytes()
    (tmp_path / "bad.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(tessera.FormatError):
        tessera.read_npz(tmp_path / "bad.npz")


def test_texmex_against_numpy(tmp_path, data_file):
    base = data_file("siftsmall/siftsmall_base.fvecs")
    x = tessera.read_fvecs(base)
    ref = texmex_numpy(base, np.float32)
    assert x.shape == (10000, 128)
    np.testing.assert_array_equal(x, ref)
    np.testing.assert_array_equal(tessera.read_vectors(base), ref)
    gt = data_file("siftsmall/siftsmall_groundtruth.ivecs")
    g = tessera.read_ivecs(gt)
    assert g.dtype == np.int32
    np.testing.assert_array_equal(g, texmex_numpy(gt, np.int32))
    # bvecs written by hand: int32 dim, then uint8 values.
    b = np.random.default_rng(3).integers(0, 256, size=(9, 6), dtype=np.uint8)
    rows = np.concatenate([np.full((9, 1), 6, dtype=np.int32).view(np.uint8), b], axis=1)
    (tmp_path / "x.bvecs").write_bytes(rows.tobytes())
    np.testing.assert_array_equal(tessera.read_bvecs(tmp_path / "x.bvecs"), b.astype(np.float32))
    (tmp_path / "t.fvecs").write_bytes(open(base, "rb").read()[:1000])
    with pytest.raises(tessera.FormatError):
        tessera.read_fvecs(tmp_path / "t.fvecs")


def test_idx(tmp_path):
    imgs = np.random.default_rng(4).integers(0, 256, size=(7, 4, 3), dtype=np.uint8)
    header = np.array([0x00000803, 7, 4, 3], dtype=">i4").tobytes()
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + imgs.tobytes())
    x = tessera.read_idx(tmp_path / "t10k-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(x, imgs.reshape(7, 12).astype(np.float32))
    np.testing.assert_array_equal(tessera.read_vectors(tmp_path / "t10k-images-idx3-ubyte.gz"), x)


def test_read_vectors_unknown_extension(tmp_path):
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(tessera.InvalidArgument):
        tessera.read_vectors(tmp_path / "x.csv")
