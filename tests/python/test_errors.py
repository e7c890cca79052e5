"""Errors: the message (str(e)) is for users; where the error was detected is apart, in e.location."""
from __future__ import annotations

import pickle
import re

import numpy as np
import pytest

import tessera

LOCATION = re.compile(r"^[\w./-]+\.cpp:\d+$")
SUFFIX = re.compile(r"\[[^\]]*\.(cpp|h):\d+\]")  # what a location glued to the message would look like


def check(e: tessera.Error) -> None:
    msg = str(e)
    assert msg == e.args[0]
    assert not SUFFIX.search(msg), msg
    assert ".cpp:" not in msg, msg
    assert isinstance(e.location, str)
    assert LOCATION.match(e.location), e.location
    assert not e.location.startswith("/"), e.location  # relative to the project root, the same everywhere


@pytest.fixture
def x():
    return np.random.default_rng(0).standard_normal((200, 8), dtype=np.float32)


def test_nan_row(x):
    x[17, 3] = np.nan
    with pytest.raises(tessera.InvalidArgument, match="row 17") as e:
        tessera.kmeans(x, 4)
    check(e.value)
    assert e.value.location.startswith("src/")


def test_k_greater_than_n(x):
    with pytest.raises(tessera.InvalidArgument, match="N < K") as e:
        tessera.kmeans(x[:5], 10)
    check(e.value)
    with pytest.raises(tessera.InvalidArgument) as e:
        tessera.build_semantic_ids(x[:5], levels=1, codebook_size=10)
    check(e.value)


def test_truncated_npy(x, tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, x)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header intact, data cut
    for read in (tessera.read_npy, tessera.read_vectors):
        with pytest.raises(tessera.FormatError, match="truncated") as e:
            read(path)
        check(e.value)
        assert str(path) in str(e.value)
    path.write_bytes(data[:40])  # header cut
    for read in (tessera.read_npy, tessera.read_vectors):
        with pytest.raises(tessera.FormatError, match="truncated") as e:
            read(path)
        check(e.value)
        assert str(e.value).startswith(f"{path}: truncated"), str(e.value)


def test_unwritable_output(x, tmp_path):
    sids = tessera.build_semantic_ids(x, levels=2, codebook_size=4)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(tessera.IOError) as e:
        sids.save(blocker / "out")
    check(e.value)
    assert isinstance(e.value, OSError)
    with pytest.raises(tessera.IOError) as e:
        tessera.write_npy(tmp_path / "missing" / "x.npy", x)
    check(e.value)
    assert not (tmp_path / "missing").exists()


def test_errors_found_by_the_bindings_are_located_too(x):
    with pytest.raises(tessera.InvalidArgument, match="2-D") as e:
        tessera.kmeans(x[0], 2)
    check(e.value)
    assert e.value.location.startswith("python/src/")
    with pytest.raises(tessera.IOError) as e:
        tessera.read_npy("/nonexistent/x.npy")
    check(e.value)


def test_location_defaults_and_survives_pickling(x):
    for cls in (tessera.Error, tessera.InvalidArgument, tessera.FormatError, tessera.IOError):
        assert cls("raised from Python").location == ""
        assert str(cls("raised from Python")) == "raised from Python"
    with pytest.raises(tessera.InvalidArgument) as e:
        tessera.kmeans(x[:5], 10)
    again = pickle.loads(pickle.dumps(e.value))
    assert type(again) is tessera.InvalidArgument
    assert str(again) == str(e.value)
    assert again.location == e.value.location
