"""tessera: vector quantization and semantic IDs (C++ core, numpy in and out).

Semantic IDs in three lines::

    import numpy as np, tessera
    x = np.load("embeddings.npy")                      # n × d (any float dtype; float32 is used in place)
    sids = tessera.build_semantic_ids(x, levels=3, codebook_size=256)
    sids.save("out/")                                  # index.json, codes.npy, codebooks.npz, metrics.json, model.tsq

Arrays: inputs are 2-D (``x: n × d``); C-contiguous float32 is used without a copy, other real dtypes
and layouts are converted once. Outputs are numpy arrays (int32 codes, float32 vectors).

Errors (all derive from :class:`tessera.Error`, itself an ``Exception``):

* :class:`tessera.InvalidArgument` (also a ``ValueError``): bad shape or ndim, NaN/Inf (the row is named),
  N < K, infeasible size bounds, dimension mismatch, unknown option.
* :class:`tessera.FormatError` (also a ``ValueError``): a truncated, corrupted or foreign file.
* :class:`tessera.IOError` (also an ``OSError``): a file or directory cannot be opened, read or written.

``str(e)`` is the message for users; ``e.location`` says where the error was detected, for bug reports
(``"src/cluster/kmeans.cpp:120"``; ``""`` when unknown). A non-numeric array or a wrong Python type raises
``TypeError``.

Progress: functions taking ``progress`` call ``progress(stage: str, done: int, total: int, value: float)``
with the GIL held; an exception raised there (KeyboardInterrupt included) stops the work and propagates.
Heavy work runs with the GIL released, so other Python threads keep running.

Ctrl-C: long work (k-means, quantizer training, semantic IDs) looks at pending signals about every 20 ms
and stops with ``KeyboardInterrupt`` (or whatever a SIGINT handler of yours raises), writing nothing.
"""
import abc as _abc
import os as _os

# OpenMP workers that spin while they wait steal the cores BLAS and other processes need on small or
# shared machines; a passive wait costs nothing measurable here. Must be set before libgomp loads.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._tessera import __version__  # noqa: F401,E402
from ._tessera import (
    Error,
    FormatError,
    InvalidArgument,
    IOError,
    IndexAdditiveQuantizer,
    IndexAdditiveQuantizerFastScan,
    IndexIVFAdditiveQuantizer,
    IVFRaBitQ,
    KMeansResult,
    RaBitQuantizer,
    LocalSearchQuantizer,
    METRIC_INNER_PRODUCT,
    METRIC_L2,
    ResidualQuantizer,
    ST_decompress,
    ST_LUT_nonorm,
    ST_norm_from_LUT,
    ST_norm_float,
    ST_norm_qint8,
    ST_norm_qint4,
    ST_norm_cqint8,
    ST_norm_cqint4,
    ST_norm_lsq2x4,
    ST_norm_rq2x4,
    SemanticIds,
    balanced_assign,
    balanced_assign_exact,
    build_info,
    build_semantic_ids,
    collision_stats,
    default_size_bounds,
    encode_semantic_ids,
    kmeans,
    load_quantizer,
    mean_squared_error,
    num_threads,
    read_bvecs,
    read_fvecs,
    read_idx,
    read_index,
    read_ivecs,
    read_npy,
    read_npz,
    read_shards,
    read_vectors,
    set_num_threads,
    write_index,
    write_npy,
    write_npz,
)


class AdditiveQuantizer(_abc.ABC):
    """The additive quantizers (x ≈ Σ_m C_m[code_m]): ResidualQuantizer and LocalSearchQuantizer.

    ``isinstance(q, tessera.AdditiveQuantizer)`` holds for each of them; the search-type constants are here
    as on ``faiss.AdditiveQuantizer`` (``tessera.AdditiveQuantizer.ST_norm_float == 3``), and also on
    each class and at module level.
    """

    ST_decompress = ST_decompress
    ST_LUT_nonorm = ST_LUT_nonorm
    ST_norm_from_LUT = ST_norm_from_LUT
    ST_norm_float = ST_norm_float
    ST_norm_qint8 = ST_norm_qint8
    ST_norm_qint4 = ST_norm_qint4
    ST_norm_cqint8 = ST_norm_cqint8
    ST_norm_cqint4 = ST_norm_cqint4
    ST_norm_lsq2x4 = ST_norm_lsq2x4
    ST_norm_rq2x4 = ST_norm_rq2x4


AdditiveQuantizer.register(ResidualQuantizer)
AdditiveQuantizer.register(LocalSearchQuantizer)


def IndexIVFResidualQuantizer(d, nlist, M, nbits, metric="l2", search_type=ST_decompress, **rq_params):
    """An IVF index over a new residual quantizer (faiss's IndexIVFResidualQuantizer, without its coarse-quantizer
    argument: the coarse lists are tessera's k-means). ``rq_params`` go to :class:`ResidualQuantizer`
    (e.g. ``max_beam_size``). Call ``train(x)``, ``add(x)``, then ``search(q, k, nprobe)``."""
    return IndexIVFAdditiveQuantizer(ResidualQuantizer(d, M, nbits, search_type=search_type, **rq_params), nlist, metric)


def IndexIVFLocalSearchQuantizer(d, nlist, M, nbits, metric="l2", search_type=ST_decompress, **lsq_params):
    """An IVF index over a new LSQ++ quantizer (faiss's IndexIVFLocalSearchQuantizer, without its coarse-quantizer
    argument). ``lsq_params`` go to :class:`LocalSearchQuantizer` (e.g. ``train_iters``)."""
    return IndexIVFAdditiveQuantizer(LocalSearchQuantizer(d, M, nbits, search_type, **lsq_params), nlist, metric)

def _input_files(paths, suffix):
    """A path (file, directory of ``*suffix`` files, or glob; sorted) or a list of paths (kept in order)."""
    import glob

    if isinstance(paths, (str, _os.PathLike)):
        p = _os.fspath(paths)
        if _os.path.isdir(p):
            files = sorted(_os.path.join(p, f) for f in _os.listdir(p) if f.endswith(suffix))
            if not files:
                raise InvalidArgument(f"{p}: the directory holds no {suffix} files")
            return files
        if any(c in p for c in "*?[") and not _os.path.exists(p):
            files = sorted(f for f in glob.glob(p) if not _os.path.isdir(f))
            if not files:
                raise InvalidArgument(f"{p}: the pattern matches no file")
            return files
        return [p]
    files = [_os.fspath(f) for f in paths]
    if not files:
        raise InvalidArgument("no files given")
    return files


def read_parquet(paths, column="embedding"):
    """Embeddings from Parquet files: the list or fixed-size-list column ``column`` of every row, as one
    n × d float32 array. ``paths``: a file, a directory (its ``*.parquet`` files), a glob (sorted path order),
    or a list of paths (in that order). Needs ``pyarrow`` (``pip install pyarrow``; ImportError otherwise).
    Rows of another length than the first, null rows, NaN/Inf and files without rows raise
    :class:`InvalidArgument` naming the file and the row within it."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("tessera.read_parquet needs pyarrow: pip install pyarrow") from e
    import numpy as np

    blocks, width = [], None
    for f in _input_files(paths, ".parquet"):
        pf = pq.ParquetFile(f)
        names = pf.schema_arrow.names
        if column not in names:
            raise InvalidArgument(f"{f}: no column {column!r} (the columns are {', '.join(names)})")
        row0 = 0
        for batch in pf.iter_batches(columns=[column]):
            arr = batch.column(0)
            t = arr.type
            if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
                raise InvalidArgument(f"{f}: column {column!r} is {t}, expected a list or fixed-size list of floats")
            if not (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
                raise InvalidArgument(f"{f}: column {column!r} holds {t.value_type}, expected floats")
            if arr.null_count:
                bad = int(np.flatnonzero(np.asarray(arr.is_null()))[0])
                raise InvalidArgument(f"{f} row {row0 + bad}: the embedding is null")
            if pa.types.is_fixed_size_list(t):
                lengths = np.full(len(arr), t.list_size)
                values = arr.flatten()
            else:
                lengths = np.asarray(arr.value_lengths())
                values = arr.flatten()
            if width is None and len(arr):
                width = int(lengths[0])
            wrong = np.flatnonzero(lengths != width)
            if wrong.size:
                r = int(wrong[0])
                raise InvalidArgument(f"{f} row {row0 + r}: an embedding of {int(lengths[r])} values, "
                                      f"expected {width} (the first row's)")
            x = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(arr), width)
            finite = np.isfinite(x).all(axis=1)
            if not finite.all():
                r = int(np.flatnonzero(~finite)[0])
                raise InvalidArgument(f"{f} row {row0 + r}: a non-finite value (NaN or Inf): every value must be "
                                      "a finite number")
            blocks.append(x)
            row0 += len(arr)
        if row0 == 0:
            raise InvalidArgument(f"{f} holds no rows: every file must hold at least one")
    if width == 0:
        raise InvalidArgument("the embeddings are empty (0 values per row)")
    return np.concatenate(blocks) if len(blocks) > 1 else blocks[0]


__all__ = [
    "__version__",
    "AdditiveQuantizer",
    "Error",
    "FormatError",
    "InvalidArgument",
    "IOError",
    "IndexAdditiveQuantizer",
    "IndexAdditiveQuantizerFastScan",
    "IndexIVFAdditiveQuantizer",
    "IndexIVFLocalSearchQuantizer",
    "IndexIVFResidualQuantizer",
    "IVFRaBitQ",
    "KMeansResult",
    "LocalSearchQuantizer",
    "METRIC_INNER_PRODUCT",
    "METRIC_L2",
    "RaBitQuantizer",
    "ResidualQuantizer",
    "ST_decompress",
    "ST_LUT_nonorm",
    "ST_norm_from_LUT",
    "ST_norm_float",
    "ST_norm_qint8",
    "ST_norm_qint4",
    "ST_norm_cqint8",
    "ST_norm_cqint4",
    "ST_norm_lsq2x4",
    "ST_norm_rq2x4",
    "SemanticIds",
    "balanced_assign",
    "balanced_assign_exact",
    "build_info",
    "build_semantic_ids",
    "collision_stats",
    "default_size_bounds",
    "encode_semantic_ids",
    "kmeans",
    "load_quantizer",
    "mean_squared_error",
    "num_threads",
    "read_bvecs",
    "read_fvecs",
    "read_idx",
    "read_index",
    "read_ivecs",
    "read_npy",
    "read_npz",
    "read_parquet",
    "read_shards",
    "read_vectors",
    "set_num_threads",
    "write_index",
    "write_npy",
    "write_npz",
]
