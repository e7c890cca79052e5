"""RQ-VAE and RQ-KMeans+ (tessera's neural component, on libtorch).

``import tessera`` does not load libtorch (some 280 shared libraries, about a second): this module does, from
the extension ``tessera._neural``, which exists only when tessera was built with libtorch. Without it,
``import tessera.neural`` raises ImportError("built without libtorch: ...").

RQ-KMeans+ from the codebooks of balanced RQ-KMeans, trained, then semantic IDs::

    import numpy as np, tessera, tessera.neural as tn
    x = np.load("embeddings.npy")                                   # n × d
    tessera.build_semantic_ids(x, codebook_sizes=[256, 256, 256]).save("sid")   # sid/codebooks.npz
    model = tn.RQVAE.rqkmeans_plus("sid/codebooks.npz")             # at 0 epochs: RQ-KMeans's greedy codes
    history = model.fit(x, epochs=100)                              # [{'epoch', 'loss', ...}, ...]
    sids = model.semantic_ids(x, dedup="append")                    # tessera.SemanticIds
    sids.save("plus-ids", with_model=False)                         # index.json, codes.npy, metrics.json
    model.save_state_dict("plus.pt")                                # torch.load() reads it

The extension is linked with one libtorch (Debian's ``libtorch-dev``, or the PyPI torch wheel's when ``pip install .``
finds torch in the environment): importing a torch of another version in the same process crashes it, so
``import tessera.neural`` refuses (ImportError) when such a torch is already imported; do not import one after it.

An RQ-VAE: ``tn.RQVAE(d, e_dim=32, codebook_sizes=(256, 256, 256))``, then ``init_codebooks_kmeans(x)`` and
``fit``. Arrays, errors (tessera.InvalidArgument, FormatError, IOError), progress callbacks and Ctrl-C behave
as in the rest of tessera.
"""
import importlib.util as _util
import sys as _sys


def _check_loaded_torch():
    """Refuse to load next to a torch of another version: two libtorch versions in one process crash it."""
    torch = _sys.modules.get("torch")
    if torch is None:
        return
    try:
        from ._neural_build import torch_version
    except ImportError:
        return
    loaded = str(getattr(torch, "__version__", ""))
    if loaded.split(".")[:2] != torch_version.split(".")[:2]:
        raise ImportError(
            f"tessera.neural is built with libtorch {torch_version}, but this process has already imported torch "
            f"{loaded} ({getattr(torch, '__file__', '?')}): two versions of libtorch cannot share a process (it "
            "crashes). Use tessera.neural in a process without that torch, or build tessera against it "
            "(`pip install .` in an environment that has torch uses its libtorch)"
        )


_check_loaded_torch()

try:
    from . import _tessera  # noqa: F401  (its classes and exception types come first)
    from ._neural import RQVAE, set_torch_threads
except ImportError as _e:
    if _util.find_spec(__name__.rpartition(".")[0] + "._neural") is None:
        raise ImportError(
            "built without libtorch: tessera.neural (RQ-VAE, RQ-KMeans+) needs the extension tessera._neural, "
            "which is built only when CMake finds libtorch (Debian: apt-get install libtorch-dev, then rebuild "
            "or reinstall tessera; -DTESSERA_WITH_TORCH=OFF turns it off)"
        ) from _e
    raise ImportError(f"tessera._neural is installed but could not be loaded (libtorch missing?): {_e}") from _e

rqkmeans_plus = RQVAE.rqkmeans_plus

__all__ = ["RQVAE", "rqkmeans_plus", "set_torch_threads"]
