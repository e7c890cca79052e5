"""Type stubs of tessera's C++ extension. Shapes: n rows, d dimensions, M (= L) levels, K_m codes at level m."""
import os
from typing import Any, Callable, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

PathLike = Union[str, "os.PathLike[str]"]
ArrayLike = npt.ArrayLike
#: progress(stage, done, total, value); called with the GIL held.
ProgressFn = Callable[[str, int, int, float], object]

class Error(Exception):
    """Base of every error tessera raises. str(e) is the message alone."""

    location: str
    """Where the error was detected, e.g. "src/cluster/kmeans.cpp:120" ("" when unknown)."""

class InvalidArgument(Error, ValueError):
    """An unusable argument: wrong shape or ndim, NaN/Inf, N < K, infeasible bounds, dimension mismatch."""

class FormatError(Error, ValueError):
    """A file is truncated, corrupted, foreign or of an unsupported layout."""

class IOError(Error, OSError):
    """The operating system refused to open, read, write or rename a file."""

def set_num_threads(n: int) -> None:
    """Threads for tessera's parallel loops (n <= 0: all cores). Results do not depend on it."""

def num_threads() -> int: ...
def build_info() -> dict[str, str | int]: ...

# --- I/O ----------------------------------------------------------------------------------------
def read_vectors(path: PathLike) -> npt.NDArray[np.float32]:
    """.npy / .fvecs / .bvecs / .ivecs / idx(.gz) by extension → x: n × d float32."""

def read_shards(paths: Union[PathLike, Sequence[PathLike]]) -> npt.NDArray[np.float32]:
    """.npy shards (a file, a directory, a glob — sorted — or a list, in order) → one n × d float32 matrix."""

def read_npy(path: PathLike) -> Union[npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    """2-D .npy: floats (and int8/uint8) → n × d float32; wider integers → n × m int32."""

def write_npy(path: PathLike, array: ArrayLike) -> None:
    """Atomic write of a 2-D array: floats as float32, int64/uint32/uint64 as int64, other ints as int32."""

def read_npz(path: PathLike) -> Dict[str, npt.NDArray[np.float32]]:
    """{member name: n × d float32} of a .npz of 2-D float arrays, in archive order."""

def write_npz(path: PathLike, arrays: Mapping[str, ArrayLike], compress: bool = True) -> None:
    """Atomic write of {name: 2-D array} (stored as float32); deflated when compress."""

def read_fvecs(path: PathLike) -> npt.NDArray[np.float32]:
    """texmex .fvecs → n × d float32."""

def read_bvecs(path: PathLike) -> npt.NDArray[np.float32]:
    """texmex .bvecs (uint8 values) → n × d float32."""

def read_ivecs(path: PathLike) -> npt.NDArray[np.int32]:
    """texmex .ivecs → n × d int32."""

def read_idx(path: PathLike) -> npt.NDArray[np.float32]:
    """MNIST idx uint8 (gzipped or not) → n × (product of other dims) float32."""

# --- clustering ---------------------------------------------------------------------------------
class KMeansResult:
    @property
    def centroids(self) -> npt.NDArray[np.float32]:
        """k × d float32 (read-only view)."""
    @property
    def labels(self) -> npt.NDArray[np.int32]:
        """Cluster of every training row: n, or len(sample_rows) when subsampled."""
    @property
    def sample_rows(self) -> Optional[npt.NDArray[np.int64]]:
        """Rows of x used for training when max_train_points subsampled, else None."""
    objective: float
    """Σ squared distance of the training rows to their centroid."""
    iterations: int
    """Lloyd iterations of the winning restart (on the warm-start sample and on all rows)."""
    warm_start_rows: int
    """Rows of the sample the restarts ran on (0: every iteration on all rows)."""
    best_init: int

def kmeans(
    x: ArrayLike,
    k: int,
    *,
    max_iter: int = 100,
    tol: float = 1e-4,
    n_init: int = 3,
    init: str = "auto",
    seed: int = 42,
    max_train_points: int = 0,
    size_min: Optional[int] = None,
    size_max: Optional[int] = None,
    balanced: bool = False,
    sample_warm_start: bool = True,
    progress: Optional[ProgressFn] = None,
) -> KMeansResult:
    """k-means of x: n × d into k clusters; size-constrained with balanced=True or size_min/size_max."""

def default_size_bounds(n: int, k: int) -> Tuple[int, int]:
    """(max(1, n//k - 1), n//k + 1): MiniOneRec's bounds."""

def balanced_assign(cost: ArrayLike, size_min: int, size_max: int) -> Tuple[npt.NDArray[np.int32], float]:
    """Min-cost assignment of n points to k clusters (cost: n × k) with sizes in bounds → (labels: n, total)."""

def balanced_assign_exact(cost: ArrayLike, size_min: int, size_max: int) -> Tuple[npt.NDArray[np.int32], float]:
    """The exact min-cost-flow reference of balanced_assign (small problems) → (labels: n, total)."""

# --- quantizer ----------------------------------------------------------------------------------
# faiss's AdditiveQuantizer search types (also class attributes of every additive quantizer).
ST_decompress: int  # 0
ST_LUT_nonorm: int  # 1
ST_norm_from_LUT: int  # 2
ST_norm_float: int  # 3
ST_norm_qint8: int  # 4
ST_norm_qint4: int  # 5
ST_norm_cqint8: int  # 6
ST_norm_cqint4: int  # 7
ST_norm_lsq2x4: int  # 8
ST_norm_rq2x4: int  # 9

class ResidualQuantizer:
    """Residual quantization (RQ-KMeans): x ≈ Σ_m C_m[i_m], C_m: K_m × d."""

    def __init__(
        self,
        d: int,
        codebook_sizes: Union[Sequence[int], int],
        nbits: Optional[int] = None,
        *,
        search_type: Union[int, str] = 0,
        balance: bool = False,
        max_iter: int = 100,
        tol: float = 1e-4,
        n_init: int = 3,
        init: str = "auto",
        seed: int = 42,
        size_min: Optional[int] = None,
        size_max: Optional[int] = None,
        train_sample: int = 0,
        sample_warm_start: bool = True,
        progress: Optional[ProgressFn] = None,
    ) -> None: ...
    def fit(self, x: ArrayLike) -> npt.NDArray[np.int32]:
        """Train on x: n × d; returns codes: n × M int32 (balanced levels respect their bounds)."""
    def train(self, x: ArrayLike) -> None:
        """Train on x: n × d."""
    def encode(self, x: ArrayLike) -> npt.NDArray[np.int32]:
        """Greedy residual codes: x: n × d → n × M int32."""
    def assign_balanced(
        self, x: ArrayLike, *, size_min: Optional[int] = None, size_max: Optional[int] = None
    ) -> npt.NDArray[np.int32]:
        """Size-constrained codes with the trained codebooks: x: n × d → n × M int32."""
    # --- the additive-quantizer base (faiss's AdditiveQuantizer surface) ---
    ST_decompress: int
    ST_LUT_nonorm: int
    ST_norm_from_LUT: int
    ST_norm_float: int
    ST_norm_qint8: int
    ST_norm_qint4: int
    ST_norm_cqint8: int
    ST_norm_cqint4: int
    ST_norm_lsq2x4: int
    ST_norm_rq2x4: int
    def decode(self, codes: ArrayLike) -> npt.NDArray[np.float32]:
        """Packed uint8 n × code_size, or unpacked ints n × M → Σ_m C_m[code_m]: n × d float32."""
    def compute_codes(self, x: ArrayLike) -> npt.NDArray[np.uint8]:
        """Encode and pack with the search type's norm: x: n × d → n × code_size uint8 (faiss's layout)."""
    def pack_codes(self, codes: ArrayLike, norms: Optional[ArrayLike] = None) -> npt.NDArray[np.uint8]:
        """codes: n × M int32 (+ n squared norms; default: those of the reconstructions) → n × code_size uint8."""
    def unpack_codes(self, packed: ArrayLike) -> npt.NDArray[np.int32]:
        """packed: n × code_size uint8 → n × M int32 (norm bits skipped)."""
    def compute_LUT(self, xq: ArrayLike, alpha: float = 1.0) -> npt.NDArray[np.float32]:
        """alpha · ⟨xq_i, every codeword⟩: n × total_codebook_size float32."""
    def train_norm(self, norms: ArrayLike) -> None:
        """Learn the norm encoding from squared norms of reconstructions."""
    def encode_norm(self, norm: float) -> int: ...
    def decode_norm(self, code: int) -> float: ...
    def compute_codebook_tables(self) -> None:
        """Codeword norms and codebook cross products (for ST_norm_from_LUT)."""
    @property
    def codebooks(self) -> npt.NDArray[np.float32]:
        """Every codebook in one (total_codebook_size, d) float32 array, faiss's layout."""
    def codebook(self, m: int) -> npt.NDArray[np.float32]:
        """A copy of C_m: K_m × d float32."""
    def set_codebooks(self, codebooks: Union[ArrayLike, Sequence[ArrayLike]]) -> None:
        """One (total_codebook_size, d) array or a list of K_m × d arrays; marks the model trained."""
    search_type: int
    @property
    def search_type_name(self) -> str: ...
    @property
    def d(self) -> int: ...
    @property
    def M(self) -> int: ...
    @property
    def nbits(self) -> List[int]: ...
    @property
    def codebook_offsets(self) -> List[int]: ...
    @property
    def total_codebook_size(self) -> int: ...
    @property
    def tot_bits(self) -> int:
        """Σ nbits + norm_bits, as faiss."""
    @property
    def index_bits(self) -> int: ...
    @property
    def norm_bits(self) -> int: ...
    @property
    def norm_min(self) -> float: ...
    @property
    def norm_max(self) -> float: ...
    @property
    def norm_table(self) -> npt.NDArray[np.float32]: ...
    @property
    def norm_tabs(self) -> npt.NDArray[np.float32]: ...
    def export_npz(self, path: PathLike) -> None:
        """Codebooks → .npz with keys codebook_0 .. codebook_{M-1}."""
    def import_npz(self, path: PathLike) -> None:
        """Codebooks ← .npz with keys codebook_0 ..; marks the model trained."""
    def save(self, path: PathLike, metadata: Optional[Mapping[str, object]] = None) -> None:
        """Write a checked binary model file (.tsq) atomically."""
    @staticmethod
    def load(path: PathLike) -> "ResidualQuantizer":
        """Read a .tsq model file."""
    @property
    def metadata(self) -> Optional[Dict[str, object]]: ...
    @property
    def last_fit_report(self) -> Optional[List[Dict[str, object]]]:
        """Per level: level, codebook_size, mse_before, mse_after, seconds, iterations, size_min, size_max."""
    @property
    def dim(self) -> int: ...
    @property
    def codebook_sizes(self) -> List[int]: ...
    @property
    def num_codebooks(self) -> int: ...
    @property
    def code_size(self) -> int: ...
    @property
    def is_trained(self) -> bool: ...
    progress: Optional[ProgressFn]
    @property
    def params(self) -> Dict[str, object]: ...

class LocalSearchQuantizer:
    """LSQ / LSQ++ with faiss's LocalSearchQuantizer surface (docs/lsq.md)."""

    def __init__(
        self, d: int, M: int, nbits: int, search_type: int | str = 0, *, train_iters: int = 25,
        encode_ils_iters: int = 16, train_ils_iters: int = 8, icm_iters: int = 4, p: float = 0.5,
        lambd: float = 1e-2, chunk_size: int = 10000, random_seed: int = 0x12345, nperts: int = 4,
        update_codebooks_with_double: bool = True, init: str = "residual", annealing: str = "codebooks",
        final_refit: bool = False, encode_greedy_init: bool = True, codebook_cg_tol: float = 1e-5,
        progress: Callable[..., Any] | None = None,
    ) -> None: ...
    train_iters: int
    encode_ils_iters: int
    train_ils_iters: int
    icm_iters: int
    p: float
    lambd: float
    chunk_size: int
    random_seed: int
    nperts: int
    update_codebooks_with_double: bool
    codebook_cg_tol: float
    init: str
    annealing: str
    final_refit: bool
    encode_greedy_init: bool
    progress: Callable[..., Any] | None
    @property
    def K(self) -> int: ...
    @property
    def d(self) -> int: ...
    @property
    def M(self) -> int: ...
    @property
    def code_size(self) -> int: ...
    @property
    def search_type(self) -> int: ...
    @property
    def codebooks(self) -> npt.NDArray[np.float32]: ...
    @property
    def training_errors(self) -> list[float]: ...
    @property
    def metadata(self) -> dict[str, Any] | None: ...
    def train(self, x: ArrayLike) -> None: ...
    def encode(self, x: ArrayLike) -> npt.NDArray[np.int32]: ...
    def compute_codes(self, x: ArrayLike) -> npt.NDArray[np.uint8]: ...
    def decode(self, codes: ArrayLike) -> npt.NDArray[np.float32]: ...
    def update_codebooks(self, x: ArrayLike, codes: ArrayLike) -> None: ...
    def icm_encode(self, x: ArrayLike, codes: ArrayLike, ils_iters: int, seed: int = 0) -> npt.NDArray[np.int32]: ...
    def icm_encode_step(self, codes: ArrayLike, unaries: ArrayLike, binaries: ArrayLike, n_iters: int) -> npt.NDArray[np.int32]: ...
    def perturb_codes(self, codes: ArrayLike, seed: int = 0) -> npt.NDArray[np.int32]: ...
    def perturb_codebooks(self, T: float, stddev: ArrayLike, seed: int = 0) -> None: ...
    def compute_binary_terms(self) -> npt.NDArray[np.float32]: ...
    def compute_unary_terms(self, x: ArrayLike) -> npt.NDArray[np.float32]: ...
    def evaluate(self, codes: ArrayLike, x: ArrayLike) -> float: ...
    def compute_LUT(self, xq: ArrayLike, alpha: float = 1.0) -> npt.NDArray[np.float32]: ...
    def save(self, path: PathLike, metadata: dict[str, Any] | None = None) -> None: ...

def load_quantizer(path: PathLike) -> ResidualQuantizer | LocalSearchQuantizer:
    """Read a .tsq model file."""

METRIC_INNER_PRODUCT: int  # 0 (faiss's value)
METRIC_L2: int  # 1

class IndexAdditiveQuantizer:
    """Flat index over the packed codes of a trained ResidualQuantizer or LocalSearchQuantizer (faiss's
    IndexAdditiveQuantizer). The quantizer is shared and kept alive, not copied."""

    def __init__(self, quantizer: ResidualQuantizer | LocalSearchQuantizer, metric: int | str = "l2") -> None: ...
    @property
    def ntotal(self) -> int: ...
    def __len__(self) -> int: ...
    @property
    def d(self) -> int: ...
    @property
    def code_size(self) -> int: ...
    @property
    def is_trained(self) -> bool: ...
    @property
    def metric_type(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def quantizer(self) -> ResidualQuantizer | LocalSearchQuantizer: ...
    @property
    def aq(self) -> ResidualQuantizer | LocalSearchQuantizer: ...
    @property
    def codes(self) -> npt.NDArray[np.uint8]: ...
    def add(self, x: ArrayLike) -> None: ...
    def add_codes(self, codes: ArrayLike) -> None: ...
    def search(self, q: ArrayLike, k: int) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
    def reset(self) -> None: ...
    def reconstruct_n(self, i0: int, n: int) -> npt.NDArray[np.float32]: ...
    def save(self, path: PathLike, metadata: Mapping[str, Any] | None = None) -> None: ...
    @staticmethod
    def load(path: PathLike) -> IndexAdditiveQuantizer: ...

class IVFRaBitQ:
    """IVF index of Extended RaBitQ codes (nlist=1: flat): coarse k-means lists, codes against each list's
    centroid, unbiased distance estimates over the nprobe nearest lists."""

    def __init__(
        self,
        d: int,
        nlist: int,
        bits: int = 4,
        metric: str = "l2",
        rotation: str = "hadamard",
        fast_quantization: bool = False,
        epsilon0: float = 1.9,
        seed: int = 0x12345,
        keep_vectors: bool = True,
    ) -> None: ...
    def train(self, x: ArrayLike) -> None: ...
    def set_centroids(self, centroids: ArrayLike) -> None: ...
    def add(self, x: ArrayLike, lists: Optional[ArrayLike] = None, ids: Optional[ArrayLike] = None) -> None: ...
    def assign(self, x: ArrayLike) -> npt.NDArray[np.int64]: ...
    def search(
        self, q: ArrayLike, k: int, nprobe: int = 1, rerank: Union[int, Literal["auto"]] = 0, single_stage: bool = False
    ) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
    def save(self, path: PathLike) -> None: ...
    @staticmethod
    def load(path: PathLike) -> IVFRaBitQ: ...
    @property
    def d(self) -> int: ...
    @property
    def nlist(self) -> int: ...
    @property
    def ntotal(self) -> int: ...
    @property
    def bits(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def keep_vectors(self) -> bool: ...
    @property
    def is_trained(self) -> bool: ...
    @property
    def centroids(self) -> npt.NDArray[np.float32]: ...
    @property
    def list_sizes(self) -> List[int]: ...

class IndexAdditiveQuantizerFastScan:
    """4-bit fast-scan flat index (faiss's IndexAdditiveQuantizerFastScan) over a trained ResidualQuantizer or
    LocalSearchQuantizer with nbits = 4: search type ST_norm_lsq2x4 / ST_norm_rq2x4 for L2, ST_LUT_nonorm for
    inner product. Scans uint8 tables with byte shuffles; the best rerank_factor·k are re-scored exactly."""

    def __init__(
        self, quantizer: ResidualQuantizer | LocalSearchQuantizer, metric: int | str = "l2", bbs: int = 32
    ) -> None: ...
    @property
    def ntotal(self) -> int: ...
    def __len__(self) -> int: ...
    @property
    def d(self) -> int: ...
    @property
    def code_size(self) -> int: ...
    @property
    def is_trained(self) -> bool: ...
    @property
    def metric_type(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def quantizer(self) -> ResidualQuantizer | LocalSearchQuantizer: ...
    @property
    def aq(self) -> ResidualQuantizer | LocalSearchQuantizer: ...
    @property
    def codes(self) -> npt.NDArray[np.uint8]: ...
    @property
    def bbs(self) -> int: ...
    @property
    def nsq(self) -> int: ...
    @property
    def norm_scale(self) -> int: ...
    rerank_factor: int
    def add(self, x: ArrayLike) -> None: ...
    def add_codes(self, codes: ArrayLike) -> None: ...
    def search(self, q: ArrayLike, k: int) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
    def reset(self) -> None: ...
    def save(self, path: PathLike, metadata: Mapping[str, Any] | None = None) -> None: ...
    @staticmethod
    def load(path: PathLike) -> IndexAdditiveQuantizerFastScan: ...

class RaBitQuantizer:
    """The Extended RaBitQ codec on its own: a random rotation, `bits` bits per coordinate of each residual from
    the training mean (Algorithm 1, exact), and the unbiased estimators. metric: 'l2', 'ip' or 'cosine'."""

    def __init__(
        self, d: int, bits: int = 4, metric: str = "l2", rotation: str = "hadamard",
        fast_quantization: bool = False, epsilon0: float = 1.9, seed: int = 0x12345,
    ) -> None: ...
    @property
    def d(self) -> int: ...
    @property
    def bits(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def code_size(self) -> int: ...
    @property
    def is_trained(self) -> bool: ...
    @property
    def centroid(self) -> npt.NDArray[np.float32]: ...
    def train(self, x: ArrayLike) -> None: ...
    def compute_codes(self, x: ArrayLike) -> npt.NDArray[np.uint8]: ...
    def decode(self, codes: ArrayLike) -> npt.NDArray[np.float32]: ...
    def estimate(
        self, q: ArrayLike, codes: ArrayLike, query_bits: int | None = None, msb_only: bool = False, seed: int = 0
    ) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
    def estimate_between(
        self, codes_x: ArrayLike, codes_y: ArrayLike, msb_only: bool = False
    ) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...

class IndexIVFAdditiveQuantizer:
    """Inverted-file index over an additive quantizer (faiss's IndexIVFAdditiveQuantizer): coarse k-means lists,
    residuals coded by the quantizer, the nprobe nearest lists scanned with one lookup table per query."""

    def __init__(
        self, quantizer: ResidualQuantizer | LocalSearchQuantizer, nlist: int, metric: int | str = "l2"
    ) -> None: ...
    @property
    def ntotal(self) -> int: ...
    def __len__(self) -> int: ...
    @property
    def d(self) -> int: ...
    @property
    def nlist(self) -> int: ...
    nprobe: int
    @property
    def code_size(self) -> int: ...
    @property
    def is_trained(self) -> bool: ...
    @property
    def metric_type(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def quantizer(self) -> ResidualQuantizer | LocalSearchQuantizer: ...
    @property
    def aq(self) -> ResidualQuantizer | LocalSearchQuantizer: ...
    @property
    def centroids(self) -> npt.NDArray[np.float32]: ...
    def list_sizes(self) -> List[int]: ...
    def train(self, x: ArrayLike) -> None: ...
    def set_centroids(self, centroids: ArrayLike) -> None: ...
    def add(self, x: ArrayLike) -> None: ...
    def search(
        self, q: ArrayLike, k: int, nprobe: int | None = None
    ) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
    def reconstruct(self, key: int) -> npt.NDArray[np.float32]: ...
    def save(self, path: PathLike, metadata: Mapping[str, Any] | None = None) -> None: ...
    @staticmethod
    def load(path: PathLike) -> IndexIVFAdditiveQuantizer: ...

def read_index(
    path: PathLike,
) -> IndexAdditiveQuantizer | IndexAdditiveQuantizerFastScan | IndexIVFAdditiveQuantizer:
    """Read an index file written by save() of any of the additive-quantizer indexes."""

def write_index(
    index: IndexAdditiveQuantizer | IndexAdditiveQuantizerFastScan | IndexIVFAdditiveQuantizer, path: PathLike
) -> None: ...

def mean_squared_error(x: ArrayLike, y: ArrayLike) -> float:
    """Σ‖x_i − y_i‖² / (n·d) for x, y: n × d."""

# --- semantic IDs -------------------------------------------------------------------------------
def collision_stats(codes: ArrayLike) -> Dict[str, float]:
    """unique_ids, collision_rate, largest_group, colliding_items of the rows of codes: n × L (-1 = no token)."""

class SemanticIds:
    @property
    def codes(self) -> npt.NDArray[np.int32]:
        """n × L level codes (0-based) before collision resolution; read-only."""
    @property
    def ids(self) -> npt.NDArray[np.int32]:
        """n × W resolved ids (W = L or L + 1); -1 = no token; read-only."""
    @property
    def model(self) -> ResidualQuantizer: ...
    @property
    def metrics(self) -> Dict[str, object]:
        """The content of metrics.json."""
    @property
    def dedup(self) -> str: ...
    @property
    def zero_based(self) -> bool: ...
    def index_json(self, keys: Optional[Sequence[str]] = None) -> str:
        """MiniOneRec's index.json text."""
    def tokens(self, keys: Optional[Sequence[str]] = None) -> Dict[str, List[str]]:
        """{key: ["<a_N>", "<b_N>", ...]}: exactly what index.json holds."""
    def save(self, out_dir: PathLike, keys: Optional[Sequence[str]] = None, with_model: bool = True) -> None:
        """index.json, codes.npy, metrics.json (+ codebooks.npz, model.tsq) into out_dir."""
    def __len__(self) -> int: ...

def build_semantic_ids(
    x: ArrayLike,
    *,
    levels: int = 3,
    codebook_size: int = 256,
    codebook_sizes: Optional[Sequence[int]] = None,
    balance: bool = True,
    dedup: str = "append",
    seed: int = 42,
    n_init: int = 3,
    init: str = "auto",
    max_iter: int = 100,
    tol: float = 1e-4,
    size_min: Optional[int] = None,
    size_max: Optional[int] = None,
    train_sample: int = 0,
    sample_warm_start: bool = True,
    zero_based: bool = False,
    labels: Optional[Sequence[object]] = None,
    progress: Optional[ProgressFn] = None,
    threads: Optional[int] = None,
) -> SemanticIds:
    """(Balanced) RQ-KMeans semantic IDs for x: n × d; dedup: 'append' | 'append-all' | 'reassign' | 'none'."""

def encode_semantic_ids(
    model: Union[ResidualQuantizer, PathLike],
    x: ArrayLike,
    *,
    dedup: Optional[str] = None,
    zero_based: Optional[bool] = None,
    labels: Optional[Sequence[object]] = None,
    threads: Optional[int] = None,
) -> SemanticIds:
    """Semantic IDs of new items x: n × d with a trained model (or a model.tsq path)."""

# --- distributed chunk kernels (tessera.distributed) ------------------------------------------------
def sid_training_rows(n: int, train_sample: int, seed: int) -> npt.NDArray[np.int64]:
    """The ascending rows build_semantic_ids(..., train_sample=S, seed=seed) trains on for n items."""

def squared_distances(x: ArrayLike, centroids: ArrayLike) -> npt.NDArray[np.float32]:
    """x: n × d, centroids: k × d → n × k squared L2 distances, as the balanced assignment computes them."""

def candidate_lists(
    x: ArrayLike, centroids: ArrayLike, prices: ArrayLike, width: int, join_limit: Optional[ArrayLike] = None
) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Candidate lists in compressed rows → (offsets n + 1, clusters, costs, theta n): each row's `width` cheapest
    clusters under prices, then its joiners (within join_limit[j] of its cheapest); theta bounds the unlisted."""

def scan_candidate_lists(
    offsets: ArrayLike, clusters: ArrayLike, costs: ArrayLike, k: int, prices: ArrayLike,
    top: int, margin: float, own_margin: Optional[ArrayLike] = None, join_margin: Optional[ArrayLike] = None
) -> Dict[str, npt.NDArray[Any]]:
    """One pass over candidate lists under prices → counts, fixed, gaps, joins, join_rows, join_cost, join_own,
    join_ownd (k × top) and boundary (rows)."""

def balanced_assign_with_prices(
    x: ArrayLike, centroids: ArrayLike, size_min: int, size_max: int
) -> Tuple[npt.NDArray[np.int32], npt.NDArray[np.float64]]:
    """Exact balanced assignment of x to centroids → (labels: n, certifying cluster prices: k)."""

def balanced_assign_sparse(
    offsets: ArrayLike, clusters: ArrayLike, costs: ArrayLike, k: int, size_min: ArrayLike, size_max: ArrayLike
) -> Union[
    Tuple[Literal[True], npt.NDArray[np.int32], npt.NDArray[np.float64], float], Tuple[Literal[False], None, None, None]
]:
    """Exact assignment over CSR candidate arcs (offsets n + 1, clusters/costs per arc) with per-cluster windows
    [size_min[j], size_max[j]] → (feasible, labels: n, prices: k, total) or (False, None, None, None)."""

def reassign_last_level(
    codes: ArrayLike, residual: ArrayLike, last_codebook: ArrayLike
) -> Tuple[npt.NDArray[np.int32], int, int]:
    """The `reassign` collision strategy on whole prefix groups → (codes n × L, moved, unresolved)."""

def index_json_fragment(ids: ArrayLike, levels: int, zero_based: bool, first_row: int) -> bytes:
    """index.json entries for rows first_row.. (no braces); pieces join with b',\\n' inside b'{\\n' .. b'\\n}'."""
