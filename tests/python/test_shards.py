"""Large inputs from Python: .npy shards (tessera.read_shards) and Parquet embedding columns (tessera.read_parquet)."""
import importlib.util

import numpy as np
import pytest

import tessera

HAVE_PYARROW = importlib.util.find_spec("pyarrow") is not None


def _shards(tmp_path, x, cuts, name="part"):
    d = tmp_path / "shards"
    d.mkdir()
    for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
        np.save(d / f"{name}-{k:03d}.npy", x[a:b])
    return d


def test_read_shards_equals_the_concatenation(tmp_path):
    x = np.random.default_rng(0).standard_normal((100, 7)).astype(np.float32)
    d = _shards(tmp_path, x, [0, 30, 31, 100])
    for spec in (d, str(d / "part-*.npy"), sorted(d.iterdir())):
        np.testing.assert_array_equal(tessera.read_shards(spec), x)
    # a list is taken in its own order
    files = sorted(d.iterdir())
    got = tessera.read_shards([files[2], files[0], files[1]])
    np.testing.assert_array_equal(got, np.concatenate([x[31:], x[:30], x[30:31]]))
    # the semantic IDs of the shards are those of the matrix
    a = tessera.build_semantic_ids(tessera.read_shards(d), levels=2, codebook_size=4, n_init=1, max_iter=5)
    b = tessera.build_semantic_ids(x, levels=2, codebook_size=4, n_init=1, max_iter=5)
    np.testing.assert_array_equal(a.codes, b.codes)


def test_read_shards_errors_name_the_shard(tmp_path):
    x = np.ones((10, 4), np.float32)
    d = _shards(tmp_path, x, [0, 5, 10])
    np.save(d / "part-009.npy", np.ones((3, 5), np.float32))
    with pytest.raises(tessera.InvalidArgument, match=r"part-009.npy has 5 columns"):
        tessera.read_shards(d)
    np.save(d / "part-009.npy", np.ones((0, 4), np.float32))
    with pytest.raises(tessera.InvalidArgument, match=r"part-009.npy is empty"):
        tessera.read_shards(d)
    bad = np.ones((3, 4), np.float32)
    bad[2, 1] = np.nan
    np.save(d / "part-009.npy", bad)
    with pytest.raises(tessera.InvalidArgument, match=r"part-009.npy row 2 \(row 12 of the input\)"):
        tessera.read_shards(d)
    with pytest.raises(tessera.InvalidArgument, match="matches no file"):
        tessera.read_shards(str(tmp_path / "nothing-*.npy"))


@pytest.mark.skipif(not HAVE_PYARROW, reason="pyarrow is not installed")
def test_read_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = np.random.default_rng(1).standard_normal((50, 6)).astype(np.float32)
    d = tmp_path / "pq"
    d.mkdir()
    # a variable-size list column in one file, a fixed-size list in the other
    pq.write_table(pa.table({"id": np.arange(20), "embedding": [list(r) for r in x[:20]]}), d / "a.parquet")
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(x[20:].ravel()), 6)
    pq.write_table(pa.table({"id": np.arange(20, 50), "embedding": fixed}), d / "b.parquet")
    np.testing.assert_array_equal(tessera.read_parquet(d), x)
    np.testing.assert_array_equal(tessera.read_parquet(str(d / "*.parquet"), column="embedding"), x)
    with pytest.raises(tessera.InvalidArgument, match="no column 'emb'"):
        tessera.read_parquet(d, column="emb")
    rows = [list(r) for r in x[:5]]
    rows[3] = rows[3][:4]
    pq.write_table(pa.table({"embedding": rows}), d / "c.parquet")
    with pytest.raises(tessera.InvalidArgument, match=r"c.parquet row 3: an embedding of 4 values, expected 6"):
        tessera.read_parquet(d)
    rows = [list(r) for r in x[:5]]
    rows[4][0] = float("nan")
    pq.write_table(pa.table({"embedding": rows}), d / "c.parquet")
    with pytest.raises(tessera.InvalidArgument, match=r"c.parquet row 4: a non-finite value"):
        tessera.read_parquet(d)
    pq.write_table(pa.table({"embedding": pa.array([], pa.list_(pa.float32()))}), d / "c.parquet")
    with pytest.raises(tessera.InvalidArgument, match=r"c.parquet holds no rows"):
        tessera.read_parquet(d)


def test_read_parquet_without_pyarrow_says_so(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_pyarrow(name, *a, **k):
        if name.startswith("pyarrow"):
            raise ImportError("No module named 'pyarrow'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(ImportError, match="pip install pyarrow"):
        tessera.read_parquet("x.parquet")
