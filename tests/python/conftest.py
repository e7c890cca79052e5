"""Where the Python tests find the real data sets (siftsmall/, debian-packages/, ...).

The folder is the environment variable TESSERA_DATA when it is set and not empty, else ../shared/data
relative to the repository root; the C++ tests (tests/cpp/test_helpers.h) and bench/datasets.py follow the
same rule. A test that needs a file of those sets asks the `data_file` fixture for it, and is skipped, with
a message naming the file, when it is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"


def data_dir() -> Path:
    env = os.environ.get("TESSERA_DATA")
    return Path(env) if env else DEFAULT_DATA


def _data_file(rel: str) -> str:
    path = data_dir() / rel
    if not path.is_file():
        env = os.environ.get("TESSERA_DATA")
        if env:
            pytest.skip(f"{path} is absent (TESSERA_DATA={env}): point TESSERA_DATA at the folder holding the "
                        f"real data sets, or unset it to use {DEFAULT_DATA}")
        pytest.skip(f"{path} is absent: put the real data sets at {DEFAULT_DATA}, or set TESSERA_DATA to the "
                    "folder holding them")
    return str(path)


@pytest.fixture(scope="session")
def data_file():
    """data_file("siftsmall/siftsmall_base.fvecs"): the file's path, or the test is skipped.

    Session-scoped, so module-scoped fixtures that load a data set can use it too (they then skip every
    test that depends on them).
    """
    return _data_file
