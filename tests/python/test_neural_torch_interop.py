"""tessera's RQ-VAE / RQ-KMeans+ state_dict files against the current PyTorch from PyPI (issue 17, interop).

Needs torch in the Python running the tests (`.venv/bin/pip install -r requirements/bench-neural.txt`; CI's
.venv has none, so these tests skip there with a message) and the neural CLI, `tessera-neural` next to
`tessera` in the build directory (build/, or the folder named by $TESSERA_BUILD_DIR). The PyTorch model is
bench/torch_rqvae.py, the one bench/bench_neural.py times.

- tessera → PyTorch: `torch.load(state_dict.pt, weights_only=True)` gives the expected names and shapes; the
  dict loads strictly into the PyTorch model, whose greedy codes equal `tessera rqvae generate`'s codes.npy.
- PyTorch → tessera: `torch.save(dict(model.state_dict()), p)` next to the config.json of a tessera run of
  the same configuration; `tessera ... generate` with it gives the PyTorch model's greedy codes.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
torch = pytest.importorskip(
    "torch", reason=f"torch is not installed for {sys.executable} (CI's .venv has none); to run these tests: "
                    ".venv/bin/pip install -r requirements/bench-neural.txt")
sys.path.insert(0, str(REPO / "bench"))
import torch_rqvae  # noqa: E402

BUILD = Path(os.environ.get("TESSERA_BUILD_DIR") or REPO / "build")
CLI = BUILD / "tessera"
if not (BUILD / "tessera-neural").exists() or not CLI.exists():
    pytest.skip(f"{BUILD / 'tessera-neural'} is absent (tessera built without libtorch, or not built; set "
                "TESSERA_BUILD_DIR to another build)", allow_module_level=True)

LAYERS = [24, 12]
SIZES = [8, 8, 4]
E_DIM = 6


def run(*args):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    p = subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, f"tessera {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}"
    return p


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("neural-interop")
    rng = np.random.default_rng(17)
    centres = rng.standard_normal((12, 16)).astype(np.float32)
    x = centres[rng.integers(0, 12, 400)] + 0.3 * rng.standard_normal((400, 16)).astype(np.float32)
    np.save(d / "x.npy", x.astype(np.float32))
    return d, x.astype(np.float32)


def expected_names(residual: bool, in_dim: int, e_dim: int) -> dict[str, tuple]:
    """MiniOneRec's names: Linears at Sequential indices 1, 4, 7, ... (Dropout, Linear, ReLU per pair); with
    `residual` (RQ-KMeans+: residual encoder and tessera's residual decoder) under encoder.mlp / decoder.mlp."""
    out = {}
    enc = "encoder.mlp.mlp_layers" if residual else "encoder.mlp_layers"
    dims = [in_dim] + LAYERS + [e_dim]
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        out[f"{enc}.{3 * i + 1}.weight"] = (b, a)
        out[f"{enc}.{3 * i + 1}.bias"] = (b,)
    for l, K in enumerate(SIZES):
        out[f"rq.vq_layers.{l}.embedding.weight"] = (K, e_dim)
    dims = [e_dim] + LAYERS[::-1] + [in_dim]
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        dec = "decoder.mlp.mlp_layers" if residual else "decoder.mlp_layers"
        out[f"{dec}.{3 * i + 1}.weight"] = (b, a)
        out[f"{dec}.{3 * i + 1}.bias"] = (b,)
    return out


def train_tessera(d: Path, method: str) -> Path:
    """One epoch of `tessera <method> train` on the fixture; returns the output folder."""
    out = d / f"{method}-model"
    if (out / "config.json").exists():
        return out
    args = [method, "train", "--data", d / "x.npy", "--out", out, "--epochs", 1, "--batch-size", 128,
            "--layers", ",".join(map(str, LAYERS)), "--threads", 1, "-q"]
    if method == "rqvae":
        args += ["--codebook-sizes", ",".join(map(str, SIZES)), "--e-dim", E_DIM, "--kmeans-iters", 10]
    else:
        run("sid", "build", d / "x.npy", "--out", d / "sid", "--codebook-sizes", ",".join(map(str, SIZES)),
            "--threads", 1, "-q")
        args += ["--codebooks", d / "sid" / "codebooks.npz"]
    run(*args)
    return out


def generate(method: str, checkpoint: Path, data_path: Path, out: Path) -> np.ndarray:
    run(method, "generate", "--checkpoint", checkpoint, "--data", data_path, "--out", out, "--dedup", "none",
        "--threads", 1, "-q")
    return np.load(out / "codes.npy")


@pytest.mark.parametrize("method", ["rqvae", "rqkmeans-plus"])
def test_torch_loads_tessera_state_dict(data, method):
    d, x = data
    out = train_tessera(d, method)
    sd = torch.load(out / "state_dict.pt", weights_only=True)
    assert isinstance(sd, dict)
    residual = method == "rqkmeans-plus"
    e_dim = x.shape[1] if residual else E_DIM
    want = expected_names(residual, x.shape[1], e_dim)
    assert list(sd) == list(want), f"names differ:\n{list(sd)}\n{list(want)}"
    for k, shape in want.items():
        assert tuple(sd[k].shape) == shape, f"{k}: {tuple(sd[k].shape)}, expected {shape}"
        assert sd[k].dtype == torch.float32, f"{k}: {sd[k].dtype}"

    cfg = json.loads((out / "config.json").read_text())["model"]
    model = torch_rqvae.RQVAE.from_config(cfg)
    model.load_state_dict(sd, strict=True)
    ours = model.codes(x)
    theirs = generate(method, out / "state_dict.pt", d / "x.npy", d / f"{method}-gen")
    assert theirs.shape == ours.shape == (x.shape[0], len(SIZES))
    diff = np.flatnonzero(np.any(ours != theirs, axis=1))
    assert diff.size == 0, f"{diff.size} of {x.shape[0]} rows' codes differ, first {diff[:5]}: " \
                           f"PyTorch {ours[diff[:3]].tolist()}, tessera {theirs[diff[:3]].tolist()}"
    # Not a degenerate check: the trained model uses several codes at the first level.
    assert np.unique(ours[:, 0]).size > 1


@pytest.mark.parametrize("method", ["rqvae", "rqkmeans-plus"])
def test_tessera_generates_with_torch_state_dict(data, tmp_path, method):
    d, x = data
    ref = train_tessera(d, method)
    cfg = json.loads((ref / "config.json").read_text())["model"]
    torch.manual_seed(5)
    model = torch_rqvae.RQVAE.from_config(cfg)
    # A model of PyTorch's own: its own initial weights, codebooks from data rows, two epochs of training.
    model.init_codebooks_from_rows(x, seed=3)
    torch_rqvae.train(model, x, epochs=2, batch_size=128, lr=1e-3, seed=3)
    model_dir = tmp_path / "torch-model"
    model_dir.mkdir()
    shutil.copy(ref / "config.json", model_dir / "config.json")
    torch.save(dict(model.state_dict()), model_dir / "state_dict.pt")
    codes = generate(method, model_dir / "state_dict.pt", d / "x.npy", tmp_path / "gen")
    ours = model.codes(x)
    diff = np.flatnonzero(np.any(ours != codes, axis=1))
    assert diff.size == 0, f"{diff.size} of {x.shape[0]} rows' codes differ, first {diff[:5]}: " \
                           f"PyTorch {ours[diff[:3]].tolist()}, tessera {codes[diff[:3]].tolist()}"
    assert np.unique(ours[:, 0]).size > 1
    # and the codes are not those of tessera's own model
    tess = generate(method, ref / "state_dict.pt", d / "x.npy", tmp_path / "gen-ref")
    assert not np.array_equal(tess, codes)
