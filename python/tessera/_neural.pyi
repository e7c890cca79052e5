"""Type stubs of tessera._neural (RQ-VAE, RQ-KMeans+ on libtorch), used through tessera.neural."""
from os import PathLike as _PathLike
from typing import Callable, Dict, List, Literal, Optional, Sequence, Tuple, TypedDict, Union

import numpy as np
import numpy.typing as npt

from ._tessera import SemanticIds

ArrayLike = npt.ArrayLike
PathLike = Union[str, "_PathLike[str]"]
ProgressFn = Callable[[str, int, int, float], object]

__version__: str

class _EpochReportBase(TypedDict):
    epoch: int
    loss: float
    reconstruction: float
    quantization: float
    seconds: float

class EpochReport(_EpochReportBase, total=False):
    collision_rate: float  # after an evaluation (eval_every, the last epoch with checkpoints)
    codes_used: List[int]

class RQVAEConfigDict(TypedDict):
    in_dim: int
    e_dim: int
    layers: Tuple[int, ...]
    codebook_sizes: Tuple[int, ...]
    dropout: float
    batch_norm: bool
    beta: float
    quant_weight: float
    residual_encoder: bool
    residual_decoder: bool
    partial_sum_commitment: bool
    sk_epsilons: Optional[Tuple[float, ...]]
    sk_iters: int
    seed: int

class RQVAE:
    """RQ-VAE: MLP encoder, residual vector quantizer of L levels, MLP decoder (MiniOneRec's layout and names)."""

    def __init__(
        self,
        in_dim: int,
        *,
        e_dim: int = 32,
        layers: Sequence[int] = (2048, 1024, 512, 256, 128, 64),
        codebook_sizes: Sequence[int] = (256, 256, 256),
        decoder: Literal["mlp", "residual"] = "mlp",
        commitment: Literal["per-level", "partial-sums"] = "per-level",
        dropout: float = 0.0,
        batch_norm: bool = False,
        beta: float = 0.25,
        quant_weight: float = 1.0,
        sk_epsilons: Optional[Sequence[float]] = None,
        sk_iters: int = 50,
        seed: int = 42,
    ) -> None: ...
    @staticmethod
    def rqkmeans_plus(
        codebooks_npz: PathLike,
        *,
        in_dim: Optional[int] = None,
        layers: Sequence[int] = (2048, 1024, 512, 256, 128, 64),
        decoder: Literal["mlp", "residual"] = "residual",
        commitment: Literal["per-level", "partial-sums"] = "partial-sums",
        dropout: float = 0.0,
        batch_norm: bool = False,
        beta: float = 0.25,
        quant_weight: float = 1.0,
        sk_epsilons: Optional[Sequence[float]] = None,
        sk_iters: int = 50,
        seed: int = 42,
    ) -> "RQVAE":
        """RQ-KMeans+ warm-started from a codebooks.npz (codebook_0, ...): e_dim = in_dim = the codebooks' width."""
    @staticmethod
    def from_checkpoint(path: PathLike) -> "RQVAE":
        """The model (configuration and weights) of a training checkpoint."""
    def init_codebooks_kmeans(
        self,
        x: ArrayLike,
        *,
        rows_per_centroid: int = 64,
        sample: int = 0,
        max_iter: int = 100,
        n_init: int = 1,
        seed: int = 42,
        batch_size: int = 4096,
    ) -> None:
        """k-means of every level on the latents' residuals of a sample of x: n × in_dim."""
    def fit(
        self,
        x: ArrayLike,
        epochs: int,
        *,
        lr: Optional[float] = None,
        batch_size: int = 2048,
        weight_decay: float = 0.0,
        warmup_epochs: int = 0,
        schedule: str = "constant",
        clip_grad_norm: float = 1.0,
        seed: int = 42,
        eval_every: int = 0,
        checkpoint_dir: Optional[PathLike] = None,
        keep_last: int = 5,
        resume: Optional[PathLike] = None,
        on_epoch: Optional[Callable[[EpochReport], object]] = None,
        progress: Optional[ProgressFn] = None,
    ) -> List[EpochReport]:
        """Train on x: n × in_dim (AdamW; lr None: 1e-4 for RQ-KMeans+, 1e-3 for RQ-VAE); one dict per epoch.
        checkpoint_dir: epoch_{e}.ckpt (keep_last newest), best_loss.ckpt, best_collision.ckpt after every
        evaluation; resume: continue from such a checkpoint, bit for bit."""
    def codes(self, x: ArrayLike, *, batch_size: int = 4096) -> npt.NDArray[np.int32]:
        """Greedy codes: x: n × in_dim → n × L int32 (0-based)."""
    def code_stats(self, x: ArrayLike, *, batch_size: int = 4096) -> Dict[str, object]:
        """collision_rate, codes_used (per level), unique_ids, largest_group, colliding_items."""
    def collision_rate(self, x: ArrayLike, *, batch_size: int = 4096) -> float: ...
    def latent(self, x: ArrayLike, *, batch_size: int = 4096) -> npt.NDArray[np.float32]:
        """Encoder output: n × in_dim → n × e_dim."""
    def reconstruct(self, x: ArrayLike, *, batch_size: int = 4096) -> npt.NDArray[np.float32]:
        """Decoder's reconstruction: n × in_dim → n × in_dim."""
    def decode(self, codes: ArrayLike, *, batch_size: int = 4096) -> npt.NDArray[np.float32]:
        """The decoder's output for codes: n × L → n × in_dim."""
    def codebook(self, level: int) -> npt.NDArray[np.float32]:
        """K_l × e_dim (a copy)."""
    @property
    def codebooks(self) -> List[npt.NDArray[np.float32]]: ...
    @property
    def config(self) -> RQVAEConfigDict: ...
    @property
    def in_dim(self) -> int: ...
    @property
    def e_dim(self) -> int: ...
    @property
    def num_levels(self) -> int: ...
    @property
    def codebook_sizes(self) -> Tuple[int, ...]: ...
    @property
    def is_rqkmeans_plus(self) -> bool: ...
    def save_state_dict(self, path: PathLike) -> None:
        """A PyTorch state_dict file (MiniOneRec's names), written atomically."""
    def load_state_dict(self, path: PathLike) -> None:
        """Strict: a missing, unexpected or misshapen entry is an error; the model is then unchanged."""
    def semantic_ids(
        self,
        x: ArrayLike,
        *,
        dedup: str = "append",
        token_base: Optional[int] = None,
        balance: str = "none",
        labels: Optional[Sequence[object]] = None,
        batch_size: int = 4096,
    ) -> SemanticIds:
        """The model's codes of x resolved by the semantic-ID module (as `tessera rqvae|rqkmeans-plus generate`)."""

def set_torch_threads(n: int) -> None:
    """Threads of libtorch's element-wise work (n <= 0: torch's default)."""
