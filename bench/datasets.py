"""Datasets for the tessera benchmarks.

Every dataset is materialised once as a float32 C-contiguous .npy file in a cache directory, so that every
contender (our CLI, our Python module, faiss, k-means-constrained) reads exactly the same bytes.

Real sets come from the folder named by the environment variable TESSERA_DATA, else from ../shared/data
relative to the repository root (the same rule as the tests); synthetic sets are anisotropic Gaussian
mixtures made with a fixed seed (deterministic: the same file for the same name, whatever the machine).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
DATA_ROOT = Path(os.environ.get("TESSERA_DATA") or DEFAULT_DATA_ROOT)


def data_file(rel: str) -> Path:
    """A file of the real data sets, e.g. data_file("siftsmall/siftsmall_base.fvecs"); an error naming it
    when it is absent."""
    p = DATA_ROOT / rel
    if not p.is_file():
        env = os.environ.get("TESSERA_DATA")
        if env:
            raise FileNotFoundError(f"{p} is absent (TESSERA_DATA={env}): point TESSERA_DATA at the folder "
                                    f"holding the real data sets, or unset it to use {DEFAULT_DATA_ROOT}")
        raise FileNotFoundError(f"{p} is absent: put the real data sets at {DEFAULT_DATA_ROOT}, or set "
                                "TESSERA_DATA to the folder holding them")
    return p


# ----------------------------------------------------------------------------------------------- readers
def read_fvecs(path: str | Path) -> np.ndarray:
    """texmex .fvecs: each row is an int32 dimension d followed by d float32 values (little-endian)."""
    raw = np.fromfile(path, dtype="<i4")
    if raw.size == 0:
        raise ValueError(f"{path}: empty file")
    d = int(raw[0])
    if d <= 0 or raw.size % (d + 1):
        raise ValueError(f"{path}: not an .fvecs file (first dimension {d}, {raw.size} words)")
    rows = raw.reshape(-1, d + 1)
    if not np.all(rows[:, 0] == d):
        raise ValueError(f"{path}: rows of different dimensions")
    return rows[:, 1:].view("<f4").astype(np.float32)


def read_bvecs(path: str | Path) -> np.ndarray:
    """texmex .bvecs: each row is an int32 dimension d followed by d uint8 values. Returned as float32."""
    raw = np.fromfile(path, dtype=np.uint8)
    d = int(raw[:4].view("<i4")[0])
    if d <= 0 or raw.size % (d + 4):
        raise ValueError(f"{path}: not a .bvecs file (first dimension {d}, {raw.size} bytes)")
    rows = raw.reshape(-1, d + 4)
    if not np.all(rows[:, :4].copy().view("<i4")[:, 0] == d):
        raise ValueError(f"{path}: rows of different dimensions")
    return rows[:, 4:].astype(np.float32)


def read_ivecs(path: str | Path) -> np.ndarray:
    """texmex .ivecs (ground truth): each row is an int32 count k followed by k int32 values."""
    raw = np.fromfile(path, dtype="<i4")
    return raw.reshape(-1, raw[0] + 1)[:, 1:]


def texmex_queries(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """siftsmall or bigann10k: (base, queries, self_idx), self_idx[i] the base row query i is (bigann10k's
    queries are base rows, its ground truth's first column; −1 for siftsmall's separate queries)."""
    if name == "siftsmall":
        base = read_fvecs(data_file("siftsmall/siftsmall_base.fvecs"))
        q = read_fvecs(data_file("siftsmall/siftsmall_query.fvecs"))
        return base, q, np.full(len(q), -1, dtype=np.int64)
    if name == "bigann10k":
        base = read_bvecs(data_file("bigann10k/bigann10k_base.bvecs"))
        q = read_bvecs(data_file("bigann10k/bigann10k_query.bvecs"))
        self_idx = read_ivecs(data_file("bigann10k/bigann10k_groundtruth.ivecs"))[:, 0].astype(np.int64)
        if not np.array_equal(base[self_idx], q):
            raise SystemExit("bigann10k: the queries are expected to be base rows (gt[:, 0])")
        return base, q, self_idx
    raise ValueError(f"{name}: not a texmex set with queries (siftsmall, bigann10k)")


# ----------------------------------------------------------------------------------------------- synthetic
def _zipf_weights(rng: np.random.Generator, components: int, exponent: float) -> np.ndarray:
    """Component weights w_c ∝ (c+1)^-exponent in a random order, summing to 1."""
    w = (np.arange(components) + 1.0) ** -exponent
    rng.shuffle(w)
    return w / w.sum()


def _component_chunks(n: int, seeds: np.random.SeedSequence, chunk: int, w: np.ndarray):
    """(start, stop, rng, components) for consecutive chunks of n rows: each chunk has a generator of its own
    seed (so the rows do not depend on the chunk held in memory) and its rows' components drawn with weights w."""
    chunk_seeds = seeds.spawn((n + chunk - 1) // chunk)
    for ci, start in enumerate(range(0, n, chunk)):
        stop = min(n, start + chunk)
        r = np.random.default_rng(chunk_seeds[ci])
        yield start, stop, r, r.choice(len(w), size=stop - start, p=w)


def gaussian_mixture(n: int, d: int = 128, components: int = 512, seed: int = 20240601,
                     normalize: bool = False, chunk: int = 100_000) -> np.ndarray:
    """n × d float32 rows from an anisotropic Gaussian mixture.

    - `components` centres drawn N(0, I/d)·3 (so centres are ~3 apart, clusters overlap a little);
    - component weights follow a Zipf-like law (w_c ∝ (c+1)^-0.7): cluster sizes are unequal, as in real
      catalogues, so balancing has work to do;
    - each component has its own random rotation Q_c and a decaying spectrum s_j ∝ (j+1)^-0.6 with a
      random per-component scale: anisotropic, with correlated dimensions;
    - normalize=True L2-normalises every row (the "embedding-like" variant: cosine embeddings).

    Generated chunk by chunk from seeds derived from `seed`, so the result does not depend on memory.
    """
    root = np.random.SeedSequence(seed)
    s_model, s_rows = root.spawn(2)
    rng = np.random.default_rng(s_model)
    means = (rng.standard_normal((components, d)) * (3.0 / np.sqrt(d))).astype(np.float32)
    w = _zipf_weights(rng, components, 0.7)
    spectrum = (np.arange(d) + 1.0) ** -0.6
    spectrum /= np.sqrt(np.sum(spectrum ** 2))  # total variance 1 before the per-component scale
    scales = rng.uniform(0.5, 1.5, components)
    factors = np.empty((components, d, d), dtype=np.float32)  # x = mean + g @ factors[c]
    for c in range(components):
        q, r = np.linalg.qr(rng.standard_normal((d, d)))
        q *= np.sign(np.diag(r))  # a uniformly random rotation
        factors[c] = (spectrum[:, None] * scales[c]) * q.T
    out = np.empty((n, d), dtype=np.float32)
    for start, stop, r, z in _component_chunks(n, s_rows, chunk, w):
        g = r.standard_normal((stop - start, d)).astype(np.float32)
        block = out[start:stop]
        order = np.argsort(z, kind="stable")
        zs = z[order]
        bounds = np.flatnonzero(np.diff(zs)) + 1
        for grp in np.split(order, bounds):
            if grp.size:
                c = z[grp[0]]
                block[grp] = means[c] + g[grp] @ factors[c]
    if normalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


def heavy_tail_mixture(n: int, d: int = 128, components: int = 4000, seed: int = 20241114, zipf: float = 1.0,
                       centre_sd: float = 6.0, noise: float = 0.9, scale_sigma: float = 0.5, df: float = 3.0,
                       spectrum_decay: float = 0.5, chunk: int = 100_000) -> np.ndarray:
    """n × d float32 rows from a heavy-tailed mixture (not normalised): the data of rq_heavy_tail.

    - `components` centres drawn N(0, centre_sd² I): many more than K = 256, so every level-1 cell holds
      several components and levels 2 and 3 still have structure to find;
    - Zipf-sized components: weight w_c ∝ (c+1)^-zipf (shuffled), so a few components hold most rows;
    - a log-normal scale per component, s_c = exp(N(0, scale_sigma²)) (the spread of component widths);
    - Student-t noise with `df` degrees of freedom (df = 3: finite variance, infinite 4th moment), drawn as a
      multivariate t: a Gaussian g times sqrt(df / χ²_df) per row, so some rows lie far out in every
      direction; g has an axis-aligned decaying spectrum (per-dimension sd ∝ (j+1)^-spectrum_decay, scaled to a
      mean variance of 1 per dimension); a row of component c is centre_c + noise · s_c · t · g.

    With the defaults, 3 × 256 unbalanced RQ k-means leaves an MSE of ~9.6 per coordinate (input ~39), and
    tessera's levels 2 and 3 collapse into a few giant clusters (perplexity ~20-26 of 256, the largest cluster
    ~20-24% of the rows), the behaviour a user reported on their data. Generated chunk by chunk from seeds
    derived from `seed`: the first m rows are the same whatever n when m is a multiple of `chunk`
    (heavy-200k = the first 200,000 rows of heavy-1m).
    """
    root = np.random.SeedSequence(seed)
    s_model, s_rows = root.spawn(2)
    rng = np.random.default_rng(s_model)
    centres = rng.standard_normal((components, d)) * centre_sd
    w = _zipf_weights(rng, components, zipf)
    comp_scale = rng.lognormal(0.0, scale_sigma, components)
    sd = (np.arange(d) + 1.0) ** -spectrum_decay
    sd *= np.sqrt(d / np.sum(sd ** 2))
    out = np.empty((n, d), dtype=np.float32)
    for start, stop, r, z in _component_chunks(n, s_rows, chunk, w):
        t = np.sqrt(df / r.chisquare(df, stop - start))
        g = r.standard_normal((stop - start, d)) * sd
        out[start:stop] = centres[z] + g * (noise * comp_scale[z] * t)[:, None]
    return out


# ----------------------------------------------------------------------------------------------- registry
def _debian() -> np.ndarray:
    return np.load(data_file("debian-packages/embeddings.npy")).astype(np.float32)


def _subset(x: np.ndarray, n: int, seed: int = 7) -> np.ndarray:
    """A uniform random subset of n rows (kept in file order), so a subset is not one alphabetical slice."""
    if n >= x.shape[0]:
        return x
    idx = np.sort(np.random.default_rng(seed).choice(x.shape[0], n, replace=False))
    return np.ascontiguousarray(x[idx])


DATASETS = {
    # name: (description, loader)
    "siftsmall": ("texmex ANN_SIFT10K base, 10000×128 float32",
                  lambda: read_fvecs(data_file("siftsmall/siftsmall_base.fvecs"))),
    "bigann10k": ("first 10k of texmex BIGANN, 10000×128 uint8 → float32",
                  lambda: read_bvecs(data_file("bigann10k/bigann10k_base.bvecs"))),
    "debian": ("Debian 12 package embeddings (LSA), 63440×256 float16 → float32, rows L2-normalised",
               _debian),
    "debian-20k": ("random 20000-row subset (seed 7) of debian", lambda: _subset(_debian(), 20_000)),
    "debian-5k": ("random 5000-row subset (seed 7) of debian", lambda: _subset(_debian(), 5_000)),
    "debian-3k": ("random 3000-row subset (seed 7) of debian", lambda: _subset(_debian(), 3_000)),
    "gmm-20k": ("synthetic anisotropic Gaussian mixture, 20000×128, L2-normalised rows (embedding-like)",
                lambda: gaussian_mixture(20_000, 128, normalize=True)),
    "gmm-5k": ("first 5000 rows of gmm-20k", lambda: gaussian_mixture(20_000, 128, normalize=True)[:5_000]),
    "gmm-3k": ("first 3000 rows of gmm-20k", lambda: gaussian_mixture(20_000, 128, normalize=True)[:3_000]),
    "gmm-1m": ("synthetic anisotropic Gaussian mixture, 1000000×128 (raw, not normalised)",
               lambda: gaussian_mixture(1_000_000, 128, normalize=False)),
    "heavy-1m": ("synthetic heavy-tailed mixture, 1000000×128 (not normalised): 4000 Zipf-sized components, "
                 "log-normal widths, Student-t (df=3) noise",
                 lambda: heavy_tail_mixture(1_000_000)),
    "heavy-200k": ("first 200000 rows of heavy-1m", lambda: heavy_tail_mixture(200_000)),
    "gmm-100k": ("first 100000 rows of gmm-1m",
                 lambda: gaussian_mixture(100_000, 128, normalize=False)),
}


def describe(name: str) -> str:
    return DATASETS[name][0]


def path(name: str, cache_dir: str | Path) -> Path:
    """The cached float32 .npy file of dataset `name`, created if missing."""
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    p = cache / f"{name}.npy"
    if not p.exists():
        x = np.ascontiguousarray(DATASETS[name][1](), dtype=np.float32)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"dataset {name} has non-finite values")
        tmp = p.with_suffix(".tmp.npy")
        np.save(tmp, x)
        os.replace(tmp, p)
    return p


def load(name: str, cache_dir: str | Path, mmap: bool = False) -> np.ndarray:
    return np.load(path(name, cache_dir), mmap_mode="r" if mmap else None)
