"""tessera.RaBitQuantizer, the Extended RaBitQ codec on its own: estimates against numpy's exact values for
every metric and query form, code × code estimates, zero vectors, bad input."""
import numpy as np
import pytest

import tessera


def test_codec_estimates_are_unbiased_and_code_pairs_work():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 64)).astype(np.float32)
    q = rng.normal(size=(5, 64)).astype(np.float32)
    for metric in ("l2", "ip", "cosine"):
        codec = tessera.RaBitQuantizer(64, bits=4, metric=metric)
        codec.train(x)
        codes = codec.compute_codes(x)
        assert codes.shape == (600, codec.code_size) and codes.dtype == np.uint8
        if metric == "l2":
            exact = ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        elif metric == "ip":
            exact = q @ x.T
        else:
            exact = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T
        for query_bits in (None, 8):
            v, b = codec.estimate(q, codes, query_bits=query_bits)
            assert v.shape == b.shape == (5, 600)
            err = v - exact
            scale = np.abs(exact).mean() if metric != "l2" else exact.mean()
            assert abs(err.mean()) < 0.02 * scale + 0.01, (metric, query_bits, err.mean())  # unbiased on average
            assert (np.abs(err) <= b).mean() > 0.85  # the bound covers about 94% at epsilon0 = 1.9
        # Code × code: the first half against the second.
        v, b = codec.estimate_between(codes[:300], codes[300:])
        if metric == "l2":
            pair = ((x[:300] - x[300:]) ** 2).sum(1)
        elif metric == "ip":
            pair = (x[:300] * x[300:]).sum(1)
        else:
            xn = x / np.linalg.norm(x, axis=1, keepdims=True)
            pair = (xn[:300] * xn[300:]).sum(1)
        assert np.abs(v - pair).mean() < 0.25 * (np.abs(pair).mean() + 0.1)
        rec = codec.decode(codes[:10])
        assert rec.shape == (10, 64)
    zero = tessera.RaBitQuantizer(64, metric="cosine")
    zero.train(x)
    v, b = zero.estimate(np.zeros((1, 64), np.float32), zero.compute_codes(x[:3]))
    assert (v == 0).all() and (b == 0).all()  # a zero query has cosine 0, never NaN
    with pytest.raises(tessera.InvalidArgument):
        tessera.RaBitQuantizer(64, bits=10)
    with pytest.raises(tessera.InvalidArgument):
        tessera.RaBitQuantizer(64).compute_codes(x)  # before training
    with pytest.raises(tessera.InvalidArgument):
        zero.estimate(q, zero.compute_codes(x[:3]), query_bits=9)
