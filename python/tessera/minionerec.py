"""Convert MiniOneRec / LC-Rec RQ-VAE and RQ-KMeans+ checkpoints for tessera.

MiniOneRec's trainer saves ``.pth`` files holding a dict with an ``argparse.Namespace`` (``args``), the
epoch, the best loss and collision rate, the optimiser and the model's ``state_dict`` (a
``collections.OrderedDict``). libtorch can read neither the Namespace nor the OrderedDict, so this script,
run with any Python that has PyTorch (MiniOneRec's own environment will do), writes what
``tessera rqvae|rqkmeans-plus generate`` reads::

    python -m tessera.minionerec best_collision_model.pth --out DIR
    # or, from a source checkout, without installing tessera:
    python python/tessera/minionerec.py best_collision_model.pth --out DIR
    tessera rqvae generate --checkpoint DIR/state_dict.pt --data items.npy --out ids

``DIR/state_dict.pt`` is the weights as a plain dict (``torch.save(dict(state_dict))``, MiniOneRec's names
unchanged) and ``DIR/config.json`` tessera's model configuration. The model's shape (input and latent widths,
hidden layers, batch norm, codebook sizes, RQ-KMeans+'s residual encoder) is read from the weights themselves,
so it is right even where MiniOneRec's arguments are not (``num_emb_list`` longer than ``sk_epsilons`` drops
levels silently there); the loss settings (dropout, beta, quantisation weight, Sinkhorn) from ``args`` when
present. A plain ``torch.save(model.state_dict(), path)`` file converts too.

This file imports only PyTorch and the standard library, not tessera.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile

CONFIG_FORMAT = "tessera-neural-config"
CONFIG_VERSION = 1


def _state_dict_of(obj):
    """The state_dict inside a MiniOneRec checkpoint (or the object itself when it is one)."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key], obj.get("args")
        if obj and all(isinstance(k, str) for k in obj) and any(k.startswith("rq.vq_layers.") for k in obj):
            return obj, None
    raise ValueError("no RQ-VAE state_dict in it (expected a MiniOneRec checkpoint with 'state_dict', or a "
                     "state_dict with rq.vq_layers.* entries)")


def _linears(state, prefix):
    """(index in the Sequential, weight) of every Linear under prefix, in order."""
    found = []
    pattern = re.compile(re.escape(prefix) + r"mlp_layers\.(\d+)\.weight$")
    for name, t in state.items():
        m = pattern.match(name)
        if m and t.dim() == 2:
            found.append((int(m.group(1)), t))
    return sorted(found, key=lambda p: p[0])


def model_config(state, args=None):
    """tessera's RQVAEConfig (as the "model" object of config.json) for a MiniOneRec state_dict."""
    residual = any(k.startswith("encoder.mlp.") for k in state)
    enc = _linears(state, "encoder.mlp." if residual else "encoder.")
    if not enc:
        raise ValueError("no encoder Linear layers (encoder.mlp_layers.{j}.weight) in the state_dict")
    levels = []
    while f"rq.vq_layers.{len(levels)}.embedding.weight" in state:
        levels.append(state[f"rq.vq_layers.{len(levels)}.embedding.weight"])
    if not levels:
        raise ValueError("no codebooks (rq.vq_layers.{l}.embedding.weight) in the state_dict")
    dims = [int(enc[0][1].shape[1])] + [int(w.shape[0]) for _, w in enc]
    batch_norm = any(k.endswith(".running_mean") for k in state if k.startswith("encoder."))

    def arg(name, default):
        value = getattr(args, name, None) if args is not None else None
        return default if value is None else value

    n_levels = len(levels)
    sk = [float(e) for e in arg("sk_epsilons", [])][:n_levels]
    if any(e > 0 for e in sk):
        sk += [0.0] * (n_levels - len(sk))
    else:
        sk = []
    return {
        "in_dim": dims[0],
        "e_dim": dims[-1],
        "layers": dims[1:-1],
        "codebook_sizes": [int(b.shape[0]) for b in levels],
        "dropout": float(arg("dropout_prob", 0.0)),
        "batch_norm": bool(batch_norm),
        "beta": float(arg("beta", 0.25)),
        "quant_weight": float(arg("quant_loss_weight", 1.0)),
        "residual_encoder": residual,
        # tessera's residual decoder (x̂ = q + MLP(q)): MiniOneRec's decoders are plain
        "residual_decoder": any(k.startswith("decoder.mlp.") for k in state),
        "partial_sum_commitment": False,  # MiniOneRec's per-level commitment (used in training only)
        "seed": 2024,  # MiniOneRec's fixed seed; generation does not use it
        "sk_epsilons": sk,
        "sk_iters": int(arg("sk_iters", 50)),
    }


def _write_atomic(path, write):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix="tmp-", suffix=".part")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def convert(src, out_dir):
    """Write out_dir/state_dict.pt and out_dir/config.json for the checkpoint src; returns the config."""
    import torch

    try:
        obj = torch.load(src, map_location="cpu", weights_only=False)
    except TypeError:  # torch before 1.13 has no weights_only
        obj = torch.load(src, map_location="cpu")
    state, args = _state_dict_of(obj)
    model = model_config(state, args)
    config = {
        "format": CONFIG_FORMAT,
        "version": CONFIG_VERSION,
        "method": "rqkmeans-plus" if model["residual_encoder"] else "rqvae",
        "model": model,
        "converted_from": os.path.abspath(src),
        "state_dict": "state_dict.pt",
    }
    if isinstance(obj, dict) and "epoch" in obj:
        config["training"] = {k: obj[k] for k in ("epoch", "best_loss", "best_collision_rate") if k in obj}
    plain = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    os.makedirs(out_dir, exist_ok=True)
    _write_atomic(os.path.join(out_dir, "state_dict.pt"), lambda p: torch.save(plain, p))

    def write_config(path):
        with open(path, "w") as f:
            f.write(json.dumps(config, indent=2) + "\n")

    _write_atomic(os.path.join(out_dir, "config.json"), write_config)
    return config


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tessera.minionerec", description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="MiniOneRec .pth (or a torch.save of a state_dict)")
    ap.add_argument("--out", required=True, help="output directory: state_dict.pt and config.json")
    a = ap.parse_args(argv)
    try:
        config = convert(a.checkpoint, a.out)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: {a.checkpoint}: {e}", file=sys.stderr)
        return 1
    m = config["model"]
    print(f"{config['method']}: {m['in_dim']} -> {m['layers']} -> {m['e_dim']}, codebooks {m['codebook_sizes']}"
          f" -> {a.out}/state_dict.pt, config.json (use `tessera {config['method']} generate --checkpoint"
          f" {a.out}/state_dict.pt`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
