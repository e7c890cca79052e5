#!/usr/bin/env python3
"""Regenerate the small numpy-written fixtures under tests/data/io/ that the C++ I/O tests read.

Run with the project's venv: .venv/bin/python tests/data/make_fixtures.py
Every file is written by numpy (np.save / np.savez / np.savez_compressed / np.lib.format) or, for the
texmex and idx formats, by numpy's tofile plus the documented headers, so the tests check the C++
readers against the reference writer rather than against themselves.
"""
import gzip
import os
import zipfile

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "io")


def path(name):
    return os.path.join(OUT, name)


def main():
    os.makedirs(OUT, exist_ok=True)
    base = (np.arange(12, dtype=np.float64).reshape(3, 4) * 0.5 - 1.25)

    # Plain dtypes, all 3 × 4 with the same values.
    np.save(path("f4.npy"), base.astype(np.float32))
    np.save(path("f8.npy"), base)
    np.save(path("i4.npy"), np.arange(-6, 6, dtype=np.int32).reshape(3, 4))
    np.save(path("i8.npy"), (np.arange(-6, 6, dtype=np.int64) * 1000).reshape(3, 4))
    np.save(path("u1.npy"), np.arange(250, 262, dtype=np.int64).astype(np.uint8).reshape(3, 4))
    np.save(path("i8_out_of_range.npy"), np.array([[1, 2], [3, 2**31]], dtype=np.int64))

    # float16 specials: zeros, normals, the largest finite, the smallest normal and subnormals, inf, nan.
    bits = np.array([0x0000, 0x8000, 0x3C00, 0xC100, 0x7BFF, 0x0400, 0x0001, 0x03FF,
                     0x8001, 0x7C00, 0xFC00, 0x7E00, 0x3555, 0x0200, 0xFBFF, 0x7D01], dtype=np.uint16)
    half = bits.view(np.float16).reshape(2, 8)
    np.save(path("f2.npy"), half)
    np.save(path("f2_as_f4.npy"), half.astype(np.float32))  # numpy's own float16 → float32 conversion

    # Header versions 2.0 and 3.0 (numpy picks them only for huge or non-latin1 headers, so force them).
    for version in [(2, 0), (3, 0)]:
        with open(path(f"v{version[0]}.npy"), "wb") as f:
            np.lib.format.write_array(f, base.astype(np.float32), version=version)

    # Layouts and dtypes the reader must refuse with a clear error.
    np.save(path("fortran.npy"), np.asfortranarray(base.astype(np.float32)))
    np.save(path("fortran_row.npy"), np.asfortranarray(base[:1].astype(np.float32)))  # same bytes as C order
    np.save(path("one_d.npy"), np.arange(5, dtype=np.float32))
    np.save(path("three_d.npy"), np.zeros((2, 2, 2), dtype=np.float32))
    np.save(path("big_endian.npy"), base.astype(">f4"))
    np.save(path("object.npy"), np.array([[1, "a"], [None, 2.5]], dtype=object), allow_pickle=True)
    np.save(path("complex.npy"), np.zeros((2, 2), dtype=np.complex64))
    np.save(path("empty_rows.npy"), np.zeros((0, 7), dtype=np.float32))

    # Archives: stored (savez) and deflated (savez_compressed), plus one with a 1-D member.
    a = base.astype(np.float32)
    b = np.arange(6, dtype=np.float16).reshape(2, 3)
    np.savez(path("stored.npz"), codebook_0=a, codebook_1=b)
    np.savez_compressed(path("deflated.npz"), codebook_0=a, codebook_1=b)
    np.savez(path("one_d_member.npz"), good=a, bad=np.arange(3, dtype=np.float32))
    with zipfile.ZipFile(path("foreign.npz"), "w") as z:  # a zip, but not of .npy members
        z.writestr("readme.txt", "not an array\n")

    # texmex: each row is an int32 dimension followed by the values.
    fv = (np.arange(15, dtype=np.float32).reshape(5, 3) - 7) / 4
    np.hstack([np.full((5, 1), 3, np.int32), fv.view(np.int32)]).tofile(path("small.fvecs"))
    iv = np.arange(10, dtype=np.int32).reshape(2, 5) - 3
    np.hstack([np.full((2, 1), 5, np.int32), iv]).tofile(path("small.ivecs"))
    bv = np.arange(8, dtype=np.uint8).reshape(2, 4) * 37
    rows = [np.concatenate([np.array([4], np.int32).view(np.uint8), r]) for r in bv]
    np.concatenate(rows).tofile(path("small.bvecs"))

    # MNIST idx: magic 00 00 08 ndim, big-endian uint32 dims, uint8 data; and its gzip.
    img = (np.arange(3 * 2 * 5) * 11 % 256).astype(np.uint8).reshape(3, 2, 5)
    idx = bytes([0, 0, 8, 3]) + np.array(img.shape, dtype=">u4").tobytes() + img.tobytes()
    with open(path("small-idx3-ubyte"), "wb") as f:
        f.write(idx)
    with gzip.GzipFile(path("small-idx3-ubyte.gz"), "wb", mtime=0) as f:
        f.write(idx)
    # int32 idx (type 0x0C), which the reader refuses.
    lab = bytes([0, 0, 0x0C, 1]) + np.array([2], dtype=">u4").tobytes() + np.array([1, 2], dtype=">i4").tobytes()
    with open(path("int32.idx"), "wb") as f:
        f.write(lab)


if __name__ == "__main__":
    main()
