#!/usr/bin/env python3
"""Embed the Debian archive as an item catalogue for the semantic-ID demo.

Every package in the apt lists already on this machine is one item. Its text is the package name, the
short description and the long description (the long one comes from the archive's Translation-en lists,
matched by Description-md5, else by package name). Items are embedded by latent semantic analysis:
TF-IDF over word 1- and 2-grams (sublinear tf), truncated SVD (randomized, fixed seed), rows L2-normalised.

Outputs, in --out DIR (rows sorted by package name):
  embeddings.npy   N x dim float32
  items.tsv        row, package, section, description (short), tab-separated, with a header
  ids.txt          one package name per line, in row order
  labels.txt       the package's section per line ("contrib/net" -> "net"), in row order
  stamp.json       what the outputs were made from; a later run with the same lists and settings skips

Usage: embed_catalogue.py --out DIR [--lists-dir /var/lib/apt/lists] [--packages F ...] [--translations F ...]
The lists come from `apt-get update -o Acquire::Languages=en` (plain or compressed: .lz4/.gz/.xz/.bz2/.zst).
"""
from __future__ import annotations

import argparse
import bz2
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Bump when the parsing or embedding recipe changes, so cached outputs are rebuilt.
RECIPE_VERSION = 1

DEFAULT_LISTS_DIR = "/var/lib/apt/lists"
APT_HELPER = "/usr/lib/apt/apt-helper"
_COMPRESSED = ("lz4", "gz", "xz", "bz2", "zst")
_SUFFIX = r"(?:\.(?:" + "|".join(_COMPRESSED) + r"))?$"
_PACKAGES_RE = re.compile(r"_Packages" + _SUFFIX)
_TRANSLATION_RE = re.compile(r"_i18n_Translation-en" + _SUFFIX)
OUTPUT_FILES = ("embeddings.npy", "items.tsv", "ids.txt", "labels.txt")
STAMP_FILE = "stamp.json"


@dataclass(frozen=True)
class Item:
    package: str
    section: str
    short: str
    long: str

    def text(self) -> str:
        """What gets embedded: name, short and long description."""
        return f"{self.package} {self.short}\n{self.long}"


# ----------------------------------------------------------------------------------------------- lists


def find_lists(lists_dir: str | os.PathLike = DEFAULT_LISTS_DIR) -> tuple[list[Path], list[Path]]:
    """The Packages and Translation-en lists in an apt lists directory, each sorted by file name.

    When a list is there both plain and compressed, the plain one is used.
    """
    d = Path(lists_dir)
    if not d.is_dir():
        return [], []

    def pick(rx: re.Pattern) -> list[Path]:
        by_base: dict[str, Path] = {}
        for p in sorted(d.iterdir()):
            if not p.is_file() or not rx.search(p.name):
                continue
            base = re.sub(r"\.(?:" + "|".join(_COMPRESSED) + r")$", "", p.name)
            if base not in by_base or p.name == base:
                by_base[base] = p
        return [by_base[b] for b in sorted(by_base)]

    return pick(_PACKAGES_RE), pick(_TRANSLATION_RE)


def read_list(path: str | os.PathLike) -> str:
    """The text of an apt list, decompressing it if needed."""
    path = Path(path)
    suffix = path.suffix.lstrip(".")
    if suffix not in _COMPRESSED:
        data = path.read_bytes()
    elif suffix == "gz":
        data = gzip.decompress(path.read_bytes())
    elif suffix == "xz":
        data = lzma.decompress(path.read_bytes())
    elif suffix == "bz2":
        data = bz2.decompress(path.read_bytes())
    else:  # lz4, zst: no decoder in the standard library; apt's own helper reads every format apt writes
        tool = [APT_HELPER, "cat-file", str(path)] if os.access(APT_HELPER, os.X_OK) else None
        if tool is None:
            exe = shutil.which("lz4" if suffix == "lz4" else "zstd")
            if exe is None:
                raise RuntimeError(f"cannot decompress {path}: neither {APT_HELPER} nor the {suffix} tool is installed")
            tool = [exe, "-dc", str(path)]
        proc = subprocess.run(tool, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            raise RuntimeError(f"cannot decompress {path}: {' '.join(tool)} failed: "
                               f"{proc.stderr.decode(errors='replace').strip()}")
        data = proc.stdout
    return data.decode("utf-8", errors="replace")


_WANTED = frozenset(("Package", "Section", "Description", "Description-md5", "Description-en"))


def parse_stanzas(text: str):
    """Yield each stanza of a deb822 list as a dict of the fields the catalogue needs.

    Continuation lines (leading space or tab) are joined to their field with a newline, kept as written
    minus the one leading space of the deb822 syntax.
    """
    for block in re.split(r"\n[ \t]*\n", text):
        rec: dict[str, str] = {}
        key = None
        for line in block.split("\n"):
            if not line:
                continue
            if line[0] in " \t":
                if key is not None:
                    rec[key] += "\n" + line[1:]
                continue
            k, sep, v = line.partition(":")
            if sep and k in _WANTED:
                key = k
                rec[k] = v.strip()
            else:
                key = None
        if "Package" in rec:
            yield rec


def split_description(desc: str) -> tuple[str, str]:
    """(short, long) from a deb822 Description value; paragraph marks (" .") dropped, lines joined."""
    first, _, rest = desc.partition("\n")
    lines = [ln.strip() for ln in rest.split("\n")]
    long = " ".join(ln for ln in lines if ln and ln != ".")
    return first.strip(), long


def normalise_section(section: str | None) -> str:
    """'contrib/net' -> 'net', 'non-free-firmware/kernel' -> 'kernel', missing -> 'unknown'."""
    if not section:
        return "unknown"
    return section.rsplit("/", 1)[-1].strip() or "unknown"


def load_catalogue(packages_paths, translation_paths) -> list[Item]:
    """Items of the given lists: one per distinct package name, sorted by name.

    A name listed more than once (several suites, architectures or versions) keeps its first stanza, taking
    the lists in the order given (find_lists gives them sorted by file name). The short description is the
    stanza's own; the long one is the stanza's own when it has one (lists fetched without translations), else
    the Translation-en entry with the stanza's Description-md5, else the first Translation-en entry for that
    package name.
    """
    by_md5: dict[str, str] = {}
    by_name: dict[str, str] = {}
    for path in translation_paths:
        for rec in parse_stanzas(read_list(path)):
            desc = rec.get("Description-en")
            if desc is None:
                continue
            md5 = rec.get("Description-md5")
            if md5:
                by_md5.setdefault(md5, desc)
            by_name.setdefault(rec["Package"], desc)

    items: dict[str, Item] = {}
    for path in packages_paths:
        for rec in parse_stanzas(read_list(path)):
            name = rec["Package"].strip()
            if not name or name in items:
                continue
            short, long = split_description(rec.get("Description", ""))
            if not long or not short:
                desc = by_md5.get(rec.get("Description-md5", "")) or by_name.get(name)
                if desc is not None:
                    t_short, t_long = split_description(desc)
                    short, long = short or t_short, long or t_long
            items[name] = Item(name, normalise_section(rec.get("Section")), short, long)
    return [items[name] for name in sorted(items)]


# ------------------------------------------------------------------------------------------- embedding


def embed_texts(texts, dim: int = 256, seed: int = 0, min_df: int = 2, max_features: int = 2**18,
                n_iter: int = 5) -> np.ndarray:
    """LSA embedding of texts: TF-IDF (word 1-2-grams, sublinear tf) -> TruncatedSVD(dim) -> L2 rows.

    Returns len(texts) x dim float32. Deterministic for a given seed.
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=min_df, max_features=max_features, sublinear_tf=True,
                            dtype=np.float32)
    x = tfidf.fit_transform(texts)
    if dim >= min(x.shape):
        raise ValueError(f"cannot embed to {dim} dims: only {x.shape[0]} texts and {x.shape[1]} terms "
                         f"(need more of both than dims)")
    svd = TruncatedSVD(dim, algorithm="randomized", n_iter=n_iter, random_state=seed)
    z = svd.fit_transform(x).astype(np.float32, copy=False)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    z /= np.maximum(norms, 1e-12)
    return np.ascontiguousarray(z, dtype=np.float32)


# --------------------------------------------------------------------------------------------- outputs


def lists_stamp(paths, settings: dict) -> str:
    """A hash of the lists' names, sizes and mtimes plus the embedding settings."""
    h = hashlib.sha256()
    entries = []
    for p in paths:
        st = os.stat(p)
        entries.append([os.path.basename(p), st.st_size, st.st_mtime_ns])
    h.update(json.dumps({"recipe": RECIPE_VERSION, "lists": entries, "settings": settings},
                        sort_keys=True).encode())
    return h.hexdigest()


def _clean(s: str) -> str:
    return " ".join(s.replace("\t", " ").split())


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_outputs(outdir, items: list[Item], emb: np.ndarray) -> None:
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)

    def npy(tmp):
        with open(tmp, "wb") as f:
            np.save(f, emb)

    def tsv(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("row\tpackage\tsection\tdescription\n")
            for i, it in enumerate(items):
                f.write(f"{i}\t{it.package}\t{it.section}\t{_clean(it.short)}\n")

    def lines(values):
        def w(tmp):
            with open(tmp, "w", encoding="utf-8") as f:
                f.writelines(v + "\n" for v in values)
        return w

    _write_atomic(outdir / "embeddings.npy", npy)
    _write_atomic(outdir / "items.tsv", tsv)
    _write_atomic(outdir / "ids.txt", lines(it.package for it in items))
    _write_atomic(outdir / "labels.txt", lines(it.section for it in items))


def build_catalogue(packages_paths, translation_paths, outdir, dim: int = 256, seed: int = 0,
                    min_df: int = 2, max_features: int = 2**18, n_iter: int = 5, force: bool = False,
                    log=sys.stderr) -> dict:
    """Parse the lists, embed, write the outputs to outdir; skip when outdir already holds them.

    Returns a summary dict: n_items, dim, seconds, cached, outdir.
    """
    t0 = time.perf_counter()
    outdir = Path(outdir)
    packages_paths = [Path(p) for p in packages_paths]
    translation_paths = [Path(p) for p in translation_paths]
    if not packages_paths:
        raise FileNotFoundError("no Packages lists given")
    settings = {"dim": dim, "seed": seed, "min_df": min_df, "max_features": max_features, "n_iter": n_iter}
    stamp = lists_stamp(packages_paths + translation_paths, settings)
    stamp_path = outdir / STAMP_FILE
    if not force and stamp_path.is_file() and all((outdir / f).is_file() for f in OUTPUT_FILES):
        try:
            old = json.loads(stamp_path.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("stamp") == stamp:
            summary = dict(old.get("summary", {}), cached=True, seconds=time.perf_counter() - t0,
                           outdir=str(outdir))
            if log:
                print(f"embed_catalogue: {summary.get('n_items', '?')} items x {summary.get('dim', dim)} dims "
                      f"already in {outdir} (lists unchanged), skipped", file=log)
            return summary

    if stamp_path.exists():
        stamp_path.unlink()
    items = load_catalogue(packages_paths, translation_paths)
    t_parse = time.perf_counter() - t0
    emb = embed_texts([it.text() for it in items], dim=dim, seed=seed, min_df=min_df,
                      max_features=max_features, n_iter=n_iter)
    write_outputs(outdir, items, emb)
    seconds = time.perf_counter() - t0
    n_long = sum(1 for it in items if it.long)
    summary = {"n_items": len(items), "dim": int(emb.shape[1]), "n_with_long_description": n_long,
               "n_sections": len({it.section for it in items}), "lists": [p.name for p in packages_paths],
               "translations": [p.name for p in translation_paths], "seconds_parse": round(t_parse, 2),
               "seconds": round(seconds, 2)}
    _write_atomic(stamp_path, lambda tmp: tmp.write_text(json.dumps({"stamp": stamp, "summary": summary},
                                                                    indent=1) + "\n"))
    if log:
        print(f"embed_catalogue: {len(items)} items ({n_long} with long descriptions, "
              f"{summary['n_sections']} sections) from {len(packages_paths)} Packages + "
              f"{len(translation_paths)} Translation-en lists -> {emb.shape[1]}-dim LSA in {seconds:.1f} s "
              f"(parse {t_parse:.1f} s) -> {outdir}", file=log)
    return dict(summary, cached=False, outdir=str(outdir))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--lists-dir", default=DEFAULT_LISTS_DIR, help="apt lists directory (default %(default)s)")
    ap.add_argument("--packages", nargs="+", help="Packages lists to use instead of those in --lists-dir")
    ap.add_argument("--translations", nargs="*", help="Translation-en lists to use instead of those in --lists-dir")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-df", type=int, default=2)
    ap.add_argument("--max-features", type=int, default=2**18)
    ap.add_argument("--n-iter", type=int, default=5)
    ap.add_argument("--force", action="store_true", help="rebuild even when the outputs are up to date")
    args = ap.parse_args(argv)

    found_p, found_t = find_lists(args.lists_dir)
    packages = args.packages if args.packages is not None else found_p
    translations = args.translations if args.translations is not None else found_t
    if not packages:
        print(f"embed_catalogue: no *_Packages lists in {args.lists_dir}; run "
              f"`apt-get update -o Acquire::Languages=en` (or `make apt-lists`) first", file=sys.stderr)
        return 2
    if not translations:
        print(f"embed_catalogue: warning: no Translation-en lists in {args.lists_dir}, so only short "
              f"descriptions; run `apt-get update -o Acquire::Languages=en` for long ones", file=sys.stderr)
    try:
        build_catalogue(packages, translations, args.out, dim=args.dim, seed=args.seed, min_df=args.min_df,
                        max_features=args.max_features, n_iter=args.n_iter, force=args.force)
    except (OSError, RuntimeError, ValueError) as e:
        print(f"embed_catalogue: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
