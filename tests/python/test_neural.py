"""tessera.neural: RQ-VAE and RQ-KMeans+ through the extension tessera._neural (built only with libtorch).

A tiny RQ-VAE (in_dim 16, layers (32,), e_dim 8, codebooks 8 × 8) on 500 random rows: training lowers the loss,
codes are n × L int32 in range, a seed gives the same model, a state_dict round trip gives the same codes and
reconstruction; RQ-KMeans+ from the codebooks.npz of build_semantic_ids gives, before training, exactly the
greedy codes of its ResidualQuantizer and the same semantic IDs; bad input raises tessera's exception types.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tessera


def _other_torch() -> str:
    """Why this process must not load tessera.neural ("" if it may): a torch of another version than the libtorch
    tessera._neural is linked with is importable here, and another test module (test_neural_torch_interop.py)
    imports it; two libtorch versions crash a process."""
    if os.environ.get("TESSERA_NEURAL_CHILD"):
        return ""
    try:
        from tessera._neural_build import torch_version
    except ImportError:
        return ""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return ""
    version = "?"
    try:
        text = (Path(list(spec.submodule_search_locations)[0]) / "version.py").read_text()
        version = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text).group(1)
    except (OSError, AttributeError):
        pass
    if version.split(".")[:2] == torch_version.split(".")[:2]:
        return ""
    return f"torch {version} is importable here and tessera._neural uses libtorch {torch_version}"


OTHER_TORCH = _other_torch()
if OTHER_TORCH:
    tn = None
else:
    try:
        import tessera.neural as tn
    except ImportError as e:  # a build without libtorch
        pytest.skip(f"tessera.neural is unavailable: {e}", allow_module_level=True)


@pytest.fixture(autouse=True)
def _in_this_process(request):
    if OTHER_TORCH and request.node.name != "test_all_in_a_fresh_process":
        pytest.skip(f"{OTHER_TORCH}: run in a fresh process by test_all_in_a_fresh_process")


def test_all_in_a_fresh_process():
    """With a torch of another version importable, every test of this file runs in a child pytest (this process
    may load that torch for other test modules)."""
    if not OTHER_TORCH:
        pytest.skip("not needed: the tests run in this process")
    env = dict(os.environ, TESSERA_NEURAL_CHILD="1")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                          "-k", "not test_all_in_a_fresh_process"],
                         capture_output=True, text=True, env=env, timeout=1200)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and " skipped" not in out.stdout, out.stdout[-3000:]

N, D = 500, 16
SMALL = dict(e_dim=8, layers=(32,), codebook_sizes=(8, 8))


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((N, D), dtype=np.float32)


def small_model(x: np.ndarray, seed: int = 42) -> "tn.RQVAE":
    m = tn.RQVAE(D, seed=seed, **SMALL)
    m.init_codebooks_kmeans(x, seed=seed)
    return m


@pytest.fixture(scope="module")
def sid_dir(x, tmp_path_factory):
    """A build_semantic_ids run (greedy-encodable codebooks 8 × 8) saved with its codebooks.npz."""
    sids = tessera.build_semantic_ids(x, codebook_sizes=[8, 8], seed=3)
    out = tmp_path_factory.mktemp("sid")
    sids.save(str(out))
    return sids, out


# --- import ----------------------------------------------------------------------------------------------


def test_import_tessera_does_not_load_libtorch():
    code = (
        "import sys, tessera\n"
        "maps = open('/proc/self/maps').read()\n"
        "print('tessera._neural' in sys.modules, 'libtorch' in maps)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), check=True)
    assert out.stdout.split() == ["False", "False"]


def test_missing_extension_is_a_clear_import_error():
    # A child in which tessera._neural cannot be found (as in a build without libtorch).
    code = (
        "import importlib.machinery as m\n"
        "find = m.PathFinder.find_spec\n"
        "m.PathFinder.find_spec = staticmethod(\n"
        "    lambda name, path=None, target=None: None if name == 'tessera._neural' else find(name, path, target))\n"
        "import tessera\n"
        "try:\n"
        "    import tessera.neural\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), check=True)
    assert out.stdout.startswith("built without libtorch:"), out.stdout + out.stderr


def test_refuses_a_torch_of_another_version_already_imported():
    # Two libtorch versions in one process crash it: a clear ImportError instead (a stand-in torch 0.1 here).
    code = (
        "import sys, types\n"
        "sys.modules['torch'] = types.SimpleNamespace(__version__='0.1.0', __file__='/elsewhere/torch/__init__.py')\n"
        "try:\n"
        "    import tessera.neural\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), check=True)
    assert "cannot share a process" in out.stdout, out.stdout + out.stderr


# --- RQ-VAE ------------------------------------------------------------------------------------------------


def test_config_and_repr():
    m = tn.RQVAE(D, sk_epsilons=None, **SMALL)
    c = m.config
    assert c["in_dim"] == D and c["e_dim"] == 8 and c["layers"] == (32,) and c["codebook_sizes"] == (8, 8)
    assert c["residual_encoder"] is False and c["sk_epsilons"] is None and c["sk_iters"] == 50 and c["seed"] == 42
    assert m.num_levels == 2 and m.in_dim == D and m.e_dim == 8 and not m.is_rqkmeans_plus
    assert "RQVAE(in_dim=16" in repr(m)
    books = m.codebooks
    assert len(books) == 2 and books[0].shape == (8, 8) and books[0].dtype == np.float32
    np.testing.assert_array_equal(m.codebook(1), books[1])


def test_fit_lowers_the_loss(x):
    # One step per epoch (batch 2,048 > 500 rows) at lr 1e-3: the total loss goes down. (With many small
    # batches the reconstruction still goes down, but the VQ loss may grow as the latents spread out.)
    m = small_model(x)
    events = []
    reports = m.fit(x, 20, progress=lambda *a: events.append(a))
    assert len(reports) == 20
    assert [r["epoch"] for r in reports] == list(range(1, 21))
    for r in reports:
        assert set(r) == {"epoch", "loss", "reconstruction", "quantization", "seconds"}
        assert np.isfinite(r["loss"]) and r["seconds"] >= 0
        assert r["loss"] == pytest.approx(r["reconstruction"] + r["quantization"], rel=1e-6)  # quant_weight 1
    assert reports[-1]["loss"] < reports[0]["loss"]
    m = small_model(x)
    reports = m.fit(x, 20, batch_size=64)
    assert reports[-1]["reconstruction"] < reports[0]["reconstruction"]
    assert events, "the progress callback was never called"
    assert all(isinstance(e[0], str) and len(e) == 4 for e in events)


def test_fit_zero_epochs_changes_nothing(x):
    m = small_model(x)
    before = m.reconstruct(x)
    assert m.fit(x, 0) == []
    np.testing.assert_array_equal(m.reconstruct(x), before)


def test_codes_shape_dtype_range(x):
    m = small_model(x)
    m.fit(x, 2, batch_size=128)
    codes = m.codes(x)
    assert codes.shape == (N, 2) and codes.dtype == np.int32 and codes.flags["C_CONTIGUOUS"]
    assert codes.min() >= 0 and codes.max() < 8
    np.testing.assert_array_equal(m.codes(x, batch_size=7), codes)
    # any real dtype / layout is converted like elsewhere in tessera
    np.testing.assert_array_equal(m.codes(np.asfortranarray(x.astype(np.float64))), codes)
    z = m.latent(x)
    assert z.shape == (N, 8) and z.dtype == np.float32
    rec = m.reconstruct(x)
    assert rec.shape == (N, D) and rec.dtype == np.float32
    st = m.code_stats(x)
    assert len(st["codes_used"]) == 2 and all(1 <= u <= 8 for u in st["codes_used"])
    assert st["collision_rate"] == pytest.approx(1 - len({tuple(r) for r in codes}) / N)
    assert m.collision_rate(x) == st["collision_rate"]
    assert st["unique_ids"] == len({tuple(r) for r in codes})


def test_deterministic_for_a_seed(x):
    a, b = small_model(x, seed=5), small_model(x, seed=5)
    ra = a.fit(x, 3, batch_size=100, seed=9)
    rb = b.fit(x, 3, batch_size=100, seed=9)
    assert [r["loss"] for r in ra] == [r["loss"] for r in rb]
    np.testing.assert_array_equal(a.codes(x), b.codes(x))
    np.testing.assert_array_equal(a.reconstruct(x), b.reconstruct(x))
    c = small_model(x, seed=6)
    assert not np.array_equal(c.reconstruct(x), a.reconstruct(x))


def test_state_dict_round_trip(x, tmp_path):
    m = small_model(x)
    m.fit(x, 3, batch_size=100)
    path = tmp_path / "state_dict.pt"
    m.save_state_dict(path)
    assert path.is_file()
    other = tn.RQVAE(D, seed=99, **SMALL)
    other.load_state_dict(str(path))
    np.testing.assert_array_equal(other.codes(x), m.codes(x))
    np.testing.assert_array_equal(other.reconstruct(x), m.reconstruct(x))
    np.testing.assert_array_equal(other.latent(x), m.latent(x))
    for a, b in zip(other.codebooks, m.codebooks):
        np.testing.assert_array_equal(a, b)


def test_semantic_ids_rqvae(x, tmp_path):
    m = small_model(x)
    m.fit(x, 2, batch_size=100)
    sids = m.semantic_ids(x)
    assert isinstance(sids, tessera.SemanticIds)
    assert isinstance(sids.model, tessera.ResidualQuantizer)
    np.testing.assert_array_equal(sids.codes, m.codes(x))
    assert sids.zero_based  # LC-Rec's generate_indices.py counts RQ-VAE tokens from 0
    assert len(sids) == N and len(set(map(tuple, sids.tokens().values()))) == N  # dedup 'append': unique
    met = sids.metrics
    assert met["recon_mse"] == pytest.approx(float(np.mean((m.reconstruct(x) - x) ** 2)), rel=1e-5)
    assert met["dim"] == 8
    assert not m.semantic_ids(x, token_base=1).zero_based
    sids.save(tmp_path / "ids", with_model=False)
    assert sorted(os.listdir(tmp_path / "ids")) == ["codes.npy", "index.json", "metrics.json"]
    np.testing.assert_array_equal(np.load(tmp_path / "ids" / "codes.npy"), sids.codes)
    with open(tmp_path / "ids" / "index.json") as f:
        assert json.load(f) == sids.tokens()


def test_evaluations_checkpoints_and_resume(x, tmp_path):
    seen = []
    a = small_model(x)
    full = a.fit(x, 4, batch_size=100, eval_every=2, checkpoint_dir=tmp_path / "ck", keep_last=5, on_epoch=seen.append)
    assert [r["epoch"] for r in seen] == [1, 2, 3, 4] and seen == full
    assert "collision_rate" not in full[0] and "collision_rate" in full[1] and "collision_rate" in full[3]
    assert full[3]["collision_rate"] == pytest.approx(a.collision_rate(x))
    assert len(full[3]["codes_used"]) == 2
    assert (tmp_path / "ck" / "epoch_2.ckpt").is_file() and (tmp_path / "ck" / "best_loss.ckpt").is_file()
    # a checkpoint's model
    m2 = tn.RQVAE.from_checkpoint(tmp_path / "ck" / "epoch_4.ckpt")
    assert m2.config == a.config
    np.testing.assert_array_equal(m2.codes(x), a.codes(x))
    # resumed at epoch 2: the same weights as the run that never stopped
    b = small_model(x)
    rest = b.fit(x, 4, batch_size=100, eval_every=2, resume=tmp_path / "ck" / "epoch_2.ckpt")
    after = [r for r in rest if r["epoch"] > 2]  # (the reports may include the checkpoint's history)
    assert [r["epoch"] for r in after] == [3, 4]
    assert [r["loss"] for r in after] == [r["loss"] for r in full[2:]]
    np.testing.assert_array_equal(b.reconstruct(x), a.reconstruct(x))


def test_on_epoch_exception_propagates(x):
    m = small_model(x)

    class Stop(Exception):
        pass

    def on_epoch(report):
        raise Stop(report["epoch"])

    with pytest.raises(Stop):
        m.fit(x, 3, on_epoch=on_epoch)
    with pytest.raises(TypeError):
        m.fit(x, 1, on_epoch=3)


def test_decode(x):
    m = small_model(x)
    m.fit(x, 2, batch_size=100)
    codes = m.codes(x)
    np.testing.assert_allclose(m.decode(codes), m.reconstruct(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(tessera.InvalidArgument):
        m.decode(codes[:, :1])
    bad = codes.copy()
    bad[0, 0] = 8
    with pytest.raises(tessera.InvalidArgument):
        m.decode(bad)


def test_semantic_ids_balanced_last_level(x):
    m = small_model(x)
    m.fit(x, 2, batch_size=100)
    sids = m.semantic_ids(x, balance="last")
    greedy = m.codes(x)
    np.testing.assert_array_equal(sids.codes[:, 0], greedy[:, 0])  # earlier levels: the model's greedy codes
    lo, hi = tessera.default_size_bounds(N, 8)  # over all items (MiniOneRec's bounds)
    sizes = np.bincount(sids.codes[:, 1], minlength=8)
    assert sizes.min() >= lo and sizes.max() <= hi
    assert sids.metrics["recon_mse"] == pytest.approx(float(np.mean((m.decode(sids.codes) - x) ** 2)), rel=1e-5)
    every = m.semantic_ids(x, balance="all")
    for l in range(2):
        sizes = np.bincount(every.codes[:, l], minlength=8)
        assert sizes.min() >= lo and sizes.max() <= hi
    with pytest.raises(tessera.InvalidArgument, match="balance"):
        m.semantic_ids(x, balance="first")


# --- RQ-KMeans+ --------------------------------------------------------------------------------------------


def test_rqkmeans_plus_starts_at_greedy_rqkmeans(x, sid_dir):
    sids, out = sid_dir
    m = tn.rqkmeans_plus(out / "codebooks.npz", layers=(32,))
    assert m.is_rqkmeans_plus and m.in_dim == D and m.e_dim == D and m.codebook_sizes == (8, 8)
    greedy = sids.model.encode(x)
    np.testing.assert_array_equal(m.codes(x), greedy)
    np.testing.assert_array_equal(m.latent(x), x)  # z = x + MLP(x) with the last Linear at zero
    for l in range(2):
        np.testing.assert_array_equal(m.codebook(l), sids.model.codebook(l))
    # the same IDs as encode_semantic_ids with the sid model (greedy codes, 'append', 1-based tokens)
    ours = m.semantic_ids(x)
    ref = tessera.encode_semantic_ids(sids.model, x, dedup="append")
    np.testing.assert_array_equal(ours.codes, ref.codes)
    np.testing.assert_array_equal(ours.ids, ref.ids)
    assert ours.index_json() == ref.index_json()
    # training moves it (the zeroed Linear and the decoder learn)
    m.fit(x, 2, batch_size=100, lr=1e-2)
    assert not np.array_equal(m.latent(x), x)


def test_rqkmeans_plus_residual_decoder_reconstructs_as_rqkmeans(x, sid_dir):
    sids, out = sid_dir
    m = tn.rqkmeans_plus(out / "codebooks.npz", layers=(32,))
    assert m.config["residual_decoder"] is True  # the default: x̂ = q + MLP(q), last Linear at zero
    assert m.config["partial_sum_commitment"] is True  # and Lee et al.'s commitment
    greedy = sids.model.encode(x)
    np.testing.assert_allclose(m.reconstruct(x), sids.model.decode(greedy), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.decode(greedy), sids.model.decode(greedy), rtol=1e-5, atol=1e-6)
    plain = tn.rqkmeans_plus(out / "codebooks.npz", layers=(32,), decoder="mlp")  # MiniOneRec's decoder
    assert plain.config["residual_decoder"] is False
    assert not np.allclose(plain.reconstruct(x), sids.model.decode(greedy), atol=1e-3)
    with pytest.raises(tessera.InvalidArgument, match="decoder must be"):
        tn.rqkmeans_plus(out / "codebooks.npz", decoder="linear")
    with pytest.raises(tessera.InvalidArgument, match="commitment must be"):
        tn.rqkmeans_plus(out / "codebooks.npz", commitment="sum")
    assert tn.RQVAE(D, e_dim=4, layers=(8,), codebook_sizes=(4,)).config["partial_sum_commitment"] is False
    with pytest.raises(tessera.InvalidArgument, match="residual decoder"):
        tn.RQVAE(D, e_dim=4, layers=(8,), codebook_sizes=(4,), decoder="residual")


def test_rqkmeans_plus_in_dim_given_and_checked(sid_dir):
    _, out = sid_dir
    m = tn.RQVAE.rqkmeans_plus(str(out / "codebooks.npz"), in_dim=D, layers=(32,))
    assert m.in_dim == D
    with pytest.raises(tessera.InvalidArgument, match="dimension mismatch"):
        tn.RQVAE.rqkmeans_plus(str(out / "codebooks.npz"), in_dim=D + 1, layers=(32,))


def test_rqkmeans_plus_bad_npz(tmp_path):
    with pytest.raises(tessera.IOError):
        tn.rqkmeans_plus(tmp_path / "absent.npz")
    tessera.write_npz(str(tmp_path / "other.npz"), {"centroids": np.zeros((4, 3), np.float32)})
    with pytest.raises(tessera.Error, match="codebook_0"):
        tn.rqkmeans_plus(tmp_path / "other.npz")


# --- errors ------------------------------------------------------------------------------------------------


def test_wrong_dimensions(x):
    m = tn.RQVAE(D, **SMALL)
    for call in (m.codes, m.latent, m.reconstruct, m.init_codebooks_kmeans, m.semantic_ids):
        with pytest.raises(tessera.InvalidArgument, match="dimension mismatch"):
            call(x[:, :-1])
    with pytest.raises(ValueError, match="dimension mismatch"):
        m.fit(x[:, :-1], 1)
    with pytest.raises(tessera.InvalidArgument, match="2-D"):
        m.codes(x[0])
    with pytest.raises(TypeError):
        m.codes(np.array([["a"] * D]))


def test_nan_row_is_named(x):
    m = small_model(x)
    bad = x.copy()
    bad[123, 4] = np.nan
    with pytest.raises(tessera.InvalidArgument, match="123"):
        m.fit(bad, 1)
    with pytest.raises(tessera.InvalidArgument, match="123"):
        m.codes(bad)


def test_bad_settings(x):
    with pytest.raises(tessera.InvalidArgument):
        tn.RQVAE(0, **SMALL)
    with pytest.raises(tessera.InvalidArgument):
        tn.RQVAE(D, e_dim=8, layers=(32,), codebook_sizes=())
    with pytest.raises(tessera.InvalidArgument):
        tn.RQVAE(D, e_dim=8, layers=(32,), codebook_sizes=(8, 0))
    with pytest.raises(tessera.InvalidArgument):
        tn.RQVAE(D, dropout=1.5, **SMALL)
    m = small_model(x)
    with pytest.raises(tessera.InvalidArgument, match="schedule"):
        m.fit(x, 1, schedule="cosine")
    with pytest.raises(tessera.InvalidArgument):
        m.fit(x, -1)
    with pytest.raises(tessera.InvalidArgument):
        m.fit(x, 1, batch_size=0)
    with pytest.raises(tessera.InvalidArgument):
        m.semantic_ids(x, dedup="nope")
    with pytest.raises(tessera.InvalidArgument):
        m.semantic_ids(x, token_base=2)
    with pytest.raises(tessera.InvalidArgument, match="out of range"):
        m.codebook(2)


def test_sk_epsilons(x):
    with pytest.raises(tessera.InvalidArgument, match="sk_epsilons"):
        tn.RQVAE(D, sk_epsilons=[0.0, 0.003, 0.01], **SMALL)  # 3 epsilons, 2 levels: never truncated
    with pytest.raises(tessera.InvalidArgument, match="sk_epsilons"):
        tn.RQVAE(D, sk_epsilons=[0.003], **SMALL)
    m = tn.RQVAE(D, sk_epsilons=[0.0, 0.003], sk_iters=20, **SMALL)
    assert m.config["sk_epsilons"] == (0.0, 0.003) and m.config["sk_iters"] == 20
    m.init_codebooks_kmeans(x)
    reports = m.fit(x, 2, batch_size=100)
    assert all(np.isfinite(r["loss"]) for r in reports)


def test_load_state_dict_errors(x, tmp_path):
    m = small_model(x)
    path = tmp_path / "sd.pt"
    m.save_state_dict(path)
    other = tn.RQVAE(D, e_dim=8, layers=(32,), codebook_sizes=(8, 4))  # a level of another size
    before = other.reconstruct(x)
    with pytest.raises(tessera.Error):
        other.load_state_dict(path)
    np.testing.assert_array_equal(other.reconstruct(x), before)  # unchanged
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(tessera.FormatError):
        m.load_state_dict(tmp_path / "cut.pt")
    with pytest.raises(tessera.IOError):
        m.load_state_dict(tmp_path / "absent.pt")
    with pytest.raises(tessera.IOError):
        m.save_state_dict(tmp_path / "no" / "such" / "dir" / "sd.pt")


def test_progress_exception_propagates(x):
    m = small_model(x)

    class Stop(Exception):
        pass

    def progress(*_):
        raise Stop()

    with pytest.raises(Stop):
        m.fit(x, 3, progress=progress)


def test_progress_callback_cannot_reenter(x):
    m = small_model(x)
    seen = []

    def progress(*_):
        try:
            m.codes(x)
        except RuntimeError as e:
            seen.append(str(e))

    m.fit(x, 1, progress=progress)
    assert seen and "progress callback" in seen[0]


CHILD = r"""
import sys
import numpy as np
import tessera.neural as tn
x = np.random.default_rng(0).standard_normal((20_000, 64), dtype=np.float32)
m = tn.RQVAE(64, e_dim=16, layers=(256, 128), codebook_sizes=(64, 64))
print("started", flush=True)
m.fit(x, 1000, batch_size=256)
print("finished", flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_fit():
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    try:
        assert proc.stdout.readline().strip() == "started", proc.stderr.read()
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "finished" not in out
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, err
    assert took < 10, f"{took:.1f} s from SIGINT to exit"
