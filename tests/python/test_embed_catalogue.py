"""Tests of scripts/embed_catalogue.py (the demo's catalogue builder) on small apt lists written here."""
import gzip
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import embed_catalogue as ec  # noqa: E402

# Main suite: short descriptions in Packages, long ones in Translation-en (matched by Description-md5).
PACKAGES_MAIN = textwrap.dedent("""\
    Package: nginx
    Version: 1.22.1-9
    Architecture: amd64
    Description: small, powerful, scalable web/proxy server
    Description-md5: 11111111111111111111111111111111
    Tag: role::program, implemented-in::c,
     protocol::http
    Section: httpd

    Package: nginx-common
    Architecture: all
    Description: small, powerful, scalable web/proxy server - common files
    Description-md5: 22222222222222222222222222222222
    Section: httpd

    Package: nginx-doc
    Architecture: all
    Description: small, powerful, scalable web/proxy server - documentation
    Description-md5: 33333333333333333333333333333333
    Section: doc

    Package: postgresql-15
    Architecture: amd64
    Description: The World's Most Advanced Open Source Relational Database
    Description-md5: 44444444444444444444444444444444
    Section: database

    Package: postgresql-client-15
    Architecture: amd64
    Description: front-end programs for PostgreSQL 15
    Description-md5: 55555555555555555555555555555555
    Section: database

    Package: firmware-misc-nonfree
    Architecture: all
    Description: Binary firmware for various drivers in the Linux kernel
    Description-md5: 66666666666666666666666666666666
    Section: non-free-firmware/kernel

    Package: game-data
    Architecture: all
    Description: data files for a free strategy game
     This package contains the data files for a free real-time strategy game.
     .
     It is needed to play the game and is not useful on its own.
    Section: contrib/games

    Package: orphan-tool
    Architecture: amd64
    Description: tool with no section and no translation

    Package: nginx
    Architecture: i386
    Description: an i386 duplicate that must be ignored
    Description-md5: 77777777777777777777777777777777
    Section: wrong

    Package: renamed-server
    Architecture: amd64
    Description: proxy server matched to its translation by name
    Description-md5: 88888888888888888888888888888888
    Section: net
    """)

TRANSLATION_MAIN = textwrap.dedent("""\
    Package: nginx
    Description-md5: 11111111111111111111111111111111
    Description-en: small, powerful, scalable web/proxy server
     Nginx ("engine X") is a high-performance web and reverse proxy server
     created by Igor Sysoev. It can be used both as a standalone web server
     and as a proxy to reduce the load on back-end HTTP or mail servers.
     .
     This is a dependency package to install either nginx-full (by default).

    Package: nginx-common
    Description-md5: 22222222222222222222222222222222
    Description-en: small, powerful, scalable web/proxy server - common files
     Nginx ("engine X") is a high-performance web and reverse proxy server.
     .
     This package contains base configuration files used by all flavors of
     nginx.

    Package: nginx-doc
    Description-md5: 33333333333333333333333333333333
    Description-en: small, powerful, scalable web/proxy server - documentation
     Nginx ("engine X") is a high-performance web and reverse proxy server.
     .
     This package provides extra documentation to help unleash the power of
     nginx.

    Package: postgresql-15
    Description-md5: 44444444444444444444444444444444
    Description-en: The World's Most Advanced Open Source Relational Database
     PostgreSQL is a fully featured object-relational database management
     system. It supports a large part of the SQL standard.
     .
     This package provides the database server for PostgreSQL 15.

    Package: postgresql-client-15
    Description-md5: 55555555555555555555555555555555
    Description-en: front-end programs for PostgreSQL 15
     This package contains client and administrative programs for
     PostgreSQL: these are the interactive terminal client psql and
     programs for creating and removing users and databases.

    Package: firmware-misc-nonfree
    Description-md5: 66666666666666666666666666666666
    Description-en: Binary firmware for various drivers in the Linux kernel
     This package contains the binary firmware for various drivers in the
     Linux kernel that are not in more specific firmware packages.

    Package: renamed-server
    Description-md5: 99999999999999999999999999999999
    Description-en: proxy server matched to its translation by name
     A reverse proxy server for web and mail servers, like nginx.
    """)

# A second suite, sorted after the main one by file name: its nginx must lose to the main one's.
PACKAGES_UPDATES = textwrap.dedent("""\
    Package: nginx
    Architecture: amd64
    Description: small, powerful, scalable web/proxy server (updated)
    Description-md5: 12121212121212121212121212121212
    Section: updates

    Package: python3-proxy
    Architecture: all
    Description: HTTP proxy server library for Python 3
     A library to write web proxy servers and reverse proxy servers
     in Python 3, with HTTP and mail support.
    Section: python
    """)


def write_lists(d: Path, compress_main: bool = False) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    main_p = d / "deb.example.org_debian_dists_stable_main_binary-amd64_Packages"
    if compress_main:
        (d / (main_p.name + ".gz")).write_bytes(gzip.compress(PACKAGES_MAIN.encode()))
    else:
        main_p.write_text(PACKAGES_MAIN)
    (d / "deb.example.org_debian_dists_stable_main_i18n_Translation-en").write_text(TRANSLATION_MAIN)
    (d / "deb.example.org_debian_dists_stable-updates_main_binary-amd64_Packages").write_text(PACKAGES_UPDATES)
    (d / "deb.example.org_debian_dists_stable_InRelease").write_text("not a list\n")
    (d / "deb.example.org_debian_dists_stable_main_binary-amd64_Packages.diff_Index").write_text("no\n")
    return d


SMALL = dict(dim=4, min_df=1, seed=0)


def test_find_lists(tmp_path):
    d = write_lists(tmp_path / "lists", compress_main=True)
    pk, tr = ec.find_lists(d)
    assert [p.name for p in pk] == ["deb.example.org_debian_dists_stable-updates_main_binary-amd64_Packages",
                                    "deb.example.org_debian_dists_stable_main_binary-amd64_Packages.gz"]
    assert [p.name for p in tr] == ["deb.example.org_debian_dists_stable_main_i18n_Translation-en"]
    # a list there both plain and compressed is read plain
    (d / "deb.example.org_debian_dists_stable_main_binary-amd64_Packages").write_text(PACKAGES_MAIN)
    pk, _ = ec.find_lists(d)
    assert pk[1].name == "deb.example.org_debian_dists_stable_main_binary-amd64_Packages"
    assert ec.find_lists(tmp_path / "missing") == ([], [])


def test_read_list_decompresses(tmp_path):
    p = tmp_path / "x_Packages.gz"
    p.write_bytes(gzip.compress(PACKAGES_MAIN.encode()))
    assert ec.read_list(p) == PACKAGES_MAIN
    lz4 = shutil.which("lz4")  # apt's default list compression on Debian 12
    if lz4:
        plain, q = tmp_path / "plain", tmp_path / "x_Packages.lz4"
        plain.write_text(PACKAGES_MAIN)
        subprocess.run([lz4, "-q", "-z", "-f", str(plain), str(q)], check=True)
        assert ec.read_list(q) == PACKAGES_MAIN


def test_parse_stanzas_joins_continuation_lines():
    recs = list(ec.parse_stanzas(TRANSLATION_MAIN))
    assert len(recs) == 7
    nginx = recs[0]
    assert nginx["Package"] == "nginx"
    assert nginx["Description-en"].split("\n")[0] == "small, powerful, scalable web/proxy server"
    assert nginx["Description-en"].count("\n") == 5
    # a multi-line field the catalogue does not keep must not leak into the next field
    tagged = next(ec.parse_stanzas(PACKAGES_MAIN))
    assert tagged["Section"] == "httpd" and "Tag" not in tagged


def test_split_description_and_sections():
    short, long = ec.split_description("short one\n first line\n .\n second  paragraph\n")
    assert short == "short one"
    assert long == "first line second  paragraph"
    assert ec.split_description("only short") == ("only short", "")
    assert ec.normalise_section("contrib/net") == "net"
    assert ec.normalise_section("non-free-firmware/kernel") == "kernel"
    assert ec.normalise_section("httpd") == "httpd"
    assert ec.normalise_section(None) == "unknown"


def test_load_catalogue(tmp_path):
    d = write_lists(tmp_path / "lists")
    pk, tr = ec.find_lists(d)
    items = ec.load_catalogue(pk, tr)
    names = [it.package for it in items]
    assert names == sorted(names)
    assert len(names) == len(set(names)) == 10
    by = {it.package: it for it in items}
    # dedupe: first by sorted list name ("stable-updates" < "stable_main"), so updates' nginx wins
    assert by["nginx"].short == "small, powerful, scalable web/proxy server (updated)"
    assert by["nginx"].section == "updates"
    assert by["nginx"].long.startswith('Nginx ("engine X")')  # its md5 is new: translation found by name
    # long descriptions: by md5 from Translation-en, paragraphs joined
    assert by["nginx-common"].long.startswith('Nginx ("engine X") is a high-performance')
    assert "." not in by["nginx-common"].long.split()
    assert by["nginx-common"].long.endswith("used by all flavors of nginx.")
    # by name when the md5 does not match
    assert by["renamed-server"].long == "A reverse proxy server for web and mail servers, like nginx."
    # the Packages list's own multi-line description when there is no translation
    assert by["game-data"].short == "data files for a free strategy game"
    assert by["game-data"].long.startswith("This package contains the data files")
    assert "It is needed to play" in by["game-data"].long
    assert by["python3-proxy"].long.startswith("A library to write web proxy servers")
    # sections
    assert by["game-data"].section == "games"
    assert by["firmware-misc-nonfree"].section == "kernel"
    assert by["orphan-tool"].section == "unknown" and by["orphan-tool"].long == ""
    assert "nginx" in by["nginx-doc"].text() and "documentation" in by["nginx-doc"].text()


def test_load_catalogue_keeps_first_list_given(tmp_path):
    d = write_lists(tmp_path / "lists")
    pk, tr = ec.find_lists(d)
    items = ec.load_catalogue(list(reversed(pk)), tr)
    nginx = next(it for it in items if it.package == "nginx")
    assert nginx.section == "httpd"  # main list first now; its i386 duplicate later in the file is ignored
    assert nginx.short == "small, powerful, scalable web/proxy server"
    assert nginx.long.startswith('Nginx ("engine X")')


def test_build_catalogue_outputs(tmp_path):
    d = write_lists(tmp_path / "lists", compress_main=True)
    pk, tr = ec.find_lists(d)
    out = tmp_path / "out"
    summary = ec.build_catalogue(pk, tr, out, log=None, **SMALL)
    assert summary["n_items"] == 10 and not summary["cached"]
    emb = np.load(out / "embeddings.npy")
    assert emb.dtype == np.float32 and emb.shape == (10, 4)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    ids = (out / "ids.txt").read_text().splitlines()
    labels = (out / "labels.txt").read_text().splitlines()
    assert ids == sorted(ids) and len(ids) == 10
    assert len(labels) == 10 and labels[ids.index("game-data")] == "games"
    rows = [ln.split("\t") for ln in (out / "items.tsv").read_text().splitlines()]
    assert rows[0] == ["row", "package", "section", "description"]
    assert all(len(r) == 4 for r in rows)
    assert [r[1] for r in rows[1:]] == ids and [r[2] for r in rows[1:]] == labels
    assert [int(r[0]) for r in rows[1:]] == list(range(10))
    # similar items end up closer than dissimilar ones
    e = {name: emb[i] for i, name in enumerate(ids)}
    assert e["nginx-common"] @ e["nginx-doc"] > e["nginx-common"] @ e["postgresql-client-15"]


def test_build_catalogue_is_deterministic_and_cached(tmp_path):
    d = write_lists(tmp_path / "lists")
    pk, tr = ec.find_lists(d)
    a, b = tmp_path / "a", tmp_path / "b"
    ec.build_catalogue(pk, tr, a, log=None, **SMALL)
    ec.build_catalogue(pk, tr, b, log=None, **SMALL)
    assert np.array_equal(np.load(a / "embeddings.npy"), np.load(b / "embeddings.npy"))
    assert (a / "items.tsv").read_bytes() == (b / "items.tsv").read_bytes()

    # unchanged lists and settings: skipped
    mtime = (a / "embeddings.npy").stat().st_mtime_ns
    again = ec.build_catalogue(pk, tr, a, log=None, **SMALL)
    assert again["cached"] and again["n_items"] == 10
    assert (a / "embeddings.npy").stat().st_mtime_ns == mtime
    # other settings, or a changed list: rebuilt
    assert not ec.build_catalogue(pk, tr, a, log=None, dim=3, min_df=1, seed=0)["cached"]
    assert np.load(a / "embeddings.npy").shape == (10, 3)
    st = pk[0].stat()
    os.utime(pk[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert not ec.build_catalogue(pk, tr, a, log=None, dim=3, min_df=1, seed=0)["cached"]
    # a missing output: rebuilt
    (a / "labels.txt").unlink()
    assert not ec.build_catalogue(pk, tr, a, log=None, dim=3, min_df=1, seed=0)["cached"]
    assert (a / "labels.txt").is_file()


def test_embed_texts_rejects_too_many_dims():
    with pytest.raises(ValueError, match="cannot embed to 8 dims"):
        ec.embed_texts(["a web server", "a database server", "a game"], dim=8, min_df=1)


def test_main_reports_missing_lists(tmp_path, capsys):
    assert ec.main(["--out", str(tmp_path / "o"), "--lists-dir", str(tmp_path / "none")]) == 2
    assert "apt-get update" in capsys.readouterr().err
