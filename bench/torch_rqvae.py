"""A PyTorch RQ-VAE / RQ-KMeans+ with tessera's (= MiniOneRec's) layout, for bench/bench_neural.py and
tests/python/test_neural_torch_interop.py.

Written from the formulas of the model, not copied from MiniOneRec:

- MLP: one Sequential `mlp_layers`; per pair of widths d_i → d_{i+1}: Dropout(p) (always, even p = 0),
  Linear, BatchNorm1d (optional, not after the last Linear), ReLU (not after the last Linear). Linear weights
  Xavier-normal (gain 1), biases 0. Encoder widths [in_dim] + layers + [e_dim], decoder the reverse.
- RQ-KMeans+: the encoder is residual, z = x + MLP(x), the MLP a child `mlp` whose last Linear starts at 0.
- One VQ level: codebook `embedding.weight` (K × e_dim, U(−1/K, 1/K) at start); code k = argmin_k
  ‖r‖² + ‖e_k‖² − 2 r·e_k (first index on ties); loss mse(e, sg(r)) + β·mse(sg(e), r); output with the
  straight-through estimator.
- Residual VQ `rq.vq_layers.{l}`: r_0 = z, r_{l+1} = r_l − q_l, x_q = Σ q_l, loss averaged over levels.
- Total loss mse(dec(x_q), x) + quant_weight · VQ loss.

Straight-through: q = sg(e) + (r − sg(r)). MiniOneRec writes r + sg(e − r); the gradients are the same
(identity to r, nothing to e), but this value is exactly the codeword, so the next residual is exactly r − e,
as tessera computes it (docs/neural.md), and greedy codes agree bit for bit when the latents agree.

Parameter names and order equal tessera's export, so `load_state_dict(torch.load(tessera's state_dict.pt),
strict=True)` works and `torch.save(dict(model.state_dict()), p)` is a file `tessera rqvae generate` reads.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class MLPLayers(nn.Module):
    """Sequential `mlp_layers`: [Dropout, Linear, (BatchNorm1d), ReLU] per pair, no BN/ReLU after the last."""

    def __init__(self, dims: list[int], dropout: float = 0.0, batch_norm: bool = False):
        super().__init__()
        mods: list[nn.Module] = []
        pairs = list(zip(dims[:-1], dims[1:]))
        for i, (a, b) in enumerate(pairs):
            last = i == len(pairs) - 1
            mods.append(nn.Dropout(p=dropout))
            lin = nn.Linear(a, b)
            nn.init.xavier_normal_(lin.weight)
            nn.init.zeros_(lin.bias)
            mods.append(lin)
            if not last:
                if batch_norm:
                    mods.append(nn.BatchNorm1d(b))
                mods.append(nn.ReLU())
        self.mlp_layers = nn.Sequential(*mods)

    def forward(self, x):
        return self.mlp_layers(x)

    def last_linear(self) -> nn.Linear:
        return [m for m in self.mlp_layers if isinstance(m, nn.Linear)][-1]


class ResidualMLP(nn.Module):
    """y = x + mlp(x), the last Linear of `mlp` zero-initialised (y = x at start): RQ-KMeans+'s encoder, and
    tessera's residual decoder."""

    def __init__(self, mlp: MLPLayers):
        super().__init__()
        self.mlp = mlp
        nn.init.zeros_(mlp.last_linear().weight)
        nn.init.zeros_(mlp.last_linear().bias)

    def forward(self, x):
        return x + self.mlp(x)


class VectorQuantizer(nn.Module):
    def __init__(self, K: int, e_dim: int, beta: float):
        super().__init__()
        self.beta = beta
        self.embedding = nn.Embedding(K, e_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / K, 1.0 / K)

    def codes(self, r):
        e = self.embedding.weight
        d = (r * r).sum(1, keepdim=True) + (e * e).sum(1)[None, :] - 2.0 * (r @ e.t())
        return d.argmin(1)  # torch.argmin returns the first minimum

    def forward(self, r):
        k = self.codes(r.detach())
        e = self.embedding(k)
        loss = F.mse_loss(e, r.detach()) + self.beta * F.mse_loss(e.detach(), r)
        q = e.detach() + (r - r.detach())  # straight-through; value exactly e (see the module docstring)
        return q, loss, k


class ResidualVectorQuantizer(nn.Module):
    def __init__(self, sizes: list[int], e_dim: int, beta: float, partial_sum_commitment: bool = False):
        super().__init__()
        self.vq_layers = nn.ModuleList([VectorQuantizer(K, e_dim, beta) for K in sizes])
        self.partial_sum_commitment = partial_sum_commitment

    def forward(self, z):
        r = z
        x_q = torch.zeros_like(z)
        losses, codes = [], []
        for vq in self.vq_layers:
            q, loss, k = vq(r)
            if self.partial_sum_commitment:  # Lee et al.: commit z to e_0 + ... + e_l, not r_l to e_l
                e = q.detach()
                loss = (loss - vq.beta * F.mse_loss(e, r) + vq.beta * F.mse_loss(x_q.detach() + e, z))
            r = r - q
            x_q = x_q + q
            losses.append(loss)
            codes.append(k)
        return x_q, torch.stack(losses).mean(), torch.stack(codes, 1)


class RQVAE(nn.Module):
    """RQ-VAE (residual_encoder=False) or RQ-KMeans+ (residual_encoder=True, e_dim = in_dim); residual_decoder:
    x̂ = q + MLP(q) (e_dim = in_dim)."""

    def __init__(self, in_dim: int, e_dim: int, layers: list[int], codebook_sizes: list[int],
                 dropout: float = 0.0, batch_norm: bool = False, beta: float = 0.25, quant_weight: float = 1.0,
                 residual_encoder: bool = False, residual_decoder: bool = False,
                 partial_sum_commitment: bool = False):
        super().__init__()
        if (residual_encoder or residual_decoder) and e_dim != in_dim:
            raise ValueError(f"a residual encoder or decoder needs e_dim = in_dim, got e_dim {e_dim} and in_dim {in_dim}")
        self.quant_weight = quant_weight
        enc = MLPLayers([in_dim] + list(layers) + [e_dim], dropout, batch_norm)
        self.encoder = ResidualMLP(enc) if residual_encoder else enc
        self.rq = ResidualVectorQuantizer(list(codebook_sizes), e_dim, beta, partial_sum_commitment)
        dec = MLPLayers([e_dim] + list(reversed(layers)) + [in_dim], dropout, batch_norm)
        self.decoder = ResidualMLP(dec) if residual_decoder else dec

    @classmethod
    def from_config(cls, cfg: dict) -> "RQVAE":
        """From the `model` object of tessera's config.json (format tessera-neural-config)."""
        return cls(cfg["in_dim"], cfg["e_dim"], cfg["layers"], cfg["codebook_sizes"], cfg.get("dropout", 0.0),
                   cfg.get("batch_norm", False), cfg.get("beta", 0.25), cfg.get("quant_weight", 1.0),
                   cfg.get("residual_encoder", False), cfg.get("residual_decoder", False),
                   cfg.get("partial_sum_commitment", False))

    def forward(self, x):
        z = self.encoder(x)
        x_q, vq_loss, codes = self.rq(z)
        return self.decoder(x_q), vq_loss, codes

    def loss(self, x):
        x_hat, vq_loss, _ = self(x)
        recon = F.mse_loss(x_hat, x)
        return recon + self.quant_weight * vq_loss, recon, vq_loss

    @torch.no_grad()
    def codes(self, x: np.ndarray | torch.Tensor, batch: int = 4096) -> np.ndarray:
        """Greedy codes (n × L, int32) in evaluation mode."""
        was = self.training
        self.eval()
        x = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
        out = [self(x[s:s + batch])[2] for s in range(0, x.shape[0], batch)]
        self.train(was)
        return torch.cat(out).numpy().astype(np.int32)

    def init_codebooks_from_rows(self, x: np.ndarray, seed: int = 0):
        """Codebooks = residuals of random rows (a cheap stand-in for the k-means initialisation, enough for
        timing: the cost of an epoch does not depend on the codebooks' values)."""
        rng = np.random.default_rng(seed)
        with torch.no_grad():
            r = self.encoder(torch.as_tensor(x[rng.choice(x.shape[0], 4096, replace=x.shape[0] < 4096)]))
            for vq in self.rq.vq_layers:
                K = vq.embedding.weight.shape[0]
                vq.embedding.weight.copy_(r[:K])
                r = r - vq.embedding(vq.codes(r))


def train(model: RQVAE, x: np.ndarray, epochs: int, batch_size: int = 2048, lr: float = 1e-3,
          weight_decay: float = 0.0, clip_grad_norm: float = 1.0, seed: int = 42, on_epoch=None) -> list[dict]:
    """tessera's trainer loop at a constant lr without warm-up: per epoch a fresh permutation, batches of
    batch_size rows (the last one partial), AdamW, loss, backward, global-norm clipping, step. Returns per
    epoch {loss (row-weighted mean), reconstruction, quantization, wall_s, cpu_s (process CPU time)}."""
    xt = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
    n = xt.shape[0]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    out = []
    for e in range(epochs):
        w0, c0 = time.perf_counter(), time.process_time()
        order = torch.as_tensor(np.random.default_rng([seed, e]).permutation(n))
        tot = rec = qua = 0.0
        for s in range(0, n, batch_size):
            xb = xt.index_select(0, order[s:s + batch_size])
            opt.zero_grad()
            loss, recon, vq = model.loss(xb)
            value = loss.item()
            if not np.isfinite(value):
                raise FloatingPointError(f"loss {value} at epoch {e}")
            loss.backward()
            if clip_grad_norm > 0:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            opt.step()
            rows = xb.shape[0]
            tot += value * rows
            rec += recon.item() * rows
            qua += vq.item() * rows
        rep = dict(epoch=e + 1, loss=tot / n, reconstruction=rec / n, quantization=qua / n,
                   wall_s=time.perf_counter() - w0, cpu_s=time.process_time() - c0)
        out.append(rep)
        if on_epoch:
            on_epoch(rep)
    model.eval()
    return out
