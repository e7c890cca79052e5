#!/usr/bin/env python3
"""tessera demo: semantic IDs for every package of the Debian archive.

1. embed the catalogue in the apt lists on this machine (scripts/embed_catalogue.py -> OUT/catalogue/),
2. build semantic IDs with the CLI (`tessera sid build` -> OUT/sid/),
3. print a compact summary: sizes, timings, quantisation and balance metrics, collision handling, and a few
   package families with their IDs, so one can see that similar items share prefixes.

Usage: demo.py --out DIR [--levels 3 --codebook-size 256 --seed 42] [--tessera PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import embed_catalogue  # noqa: E402

FAMILY_MIN, FAMILY_MAX = 4, 12   # family sizes used for the family statistics and the largest-family picks
SHOW_MEMBERS = 6                  # members printed per family
NAMED_FAMILIES = (("nginx", lambda parts: parts[0] == "nginx"),
                  ("postgresql-15", lambda parts: parts[0] == "postgresql" and "15" in parts[1:]))


def family_key(name: str) -> str:
    return name.split("-", 1)[0]


def run_cli(cmd: list[str]) -> tuple[int, str, str]:
    """Run the CLI; its stderr (progress) goes straight to ours when that is a terminal, else is captured."""
    live = sys.stderr.isatty()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if live else subprocess.PIPE)
    err = "" if live else proc.stderr.decode(errors="replace")
    return proc.returncode, proc.stdout.decode(errors="replace"), err


def load_index(path: Path, ids: list[str], levels: int) -> list[list[str] | None]:
    """Tokens of each row (in ids order) from a MiniOneRec index.json; None for rows missing from it."""
    index = json.loads(path.read_text())
    row_of = {name: i for i, name in enumerate(ids)}
    tokens: list[list[str] | None] = [None] * len(ids)
    for key, toks in index.items():
        i = row_of.get(key)
        if i is None and key.isdigit() and int(key) < len(ids):
            i = int(key)  # index keyed by row number
        if i is not None:
            tokens[i] = [str(t) for t in toks]
    return tokens


def fmt_num(x, spec=".3f", default="-"):
    try:
        return format(float(x), spec)
    except (TypeError, ValueError):
        return default


def family_stats(first: np.ndarray, families: list[np.ndarray], rng: np.random.Generator, repeats: int = 20):
    """(share of families whose members all have one first token, mean share of members on the family's most
    common first token), for the families and for random item sets of the same sizes (chance)."""
    def stats(groups):
        same = modal = 0.0
        for g in groups:
            c = Counter(first[g].tolist()).most_common(1)[0][1]
            same += c == len(g)
            modal += c / len(g)
        return same / len(groups), modal / len(groups)

    real = stats(families)
    n = len(first)
    rand = [stats([rng.choice(n, len(g), replace=False) for g in families]) for _ in range(repeats)]
    return real, tuple(float(np.mean([r[k] for r in rand])) for k in range(2))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (catalogue/ and sid/ go under it)")
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--codebook-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--balance", default="exact")
    ap.add_argument("--dedup", default="append")
    ap.add_argument("--tessera", default=os.environ.get("TESSERA_CLI", str(ROOT / "build" / "tessera")),
                    help="the tessera CLI (default: $TESSERA_CLI or build/tessera)")
    ap.add_argument("--lists-dir", default=embed_catalogue.DEFAULT_LISTS_DIR)
    args = ap.parse_args(argv)

    out = Path(args.out)
    cat_dir, sid_dir = out / "catalogue", out / "sid"
    t_start = time.perf_counter()

    cli = Path(args.tessera)
    if not (cli.is_file() and os.access(cli, os.X_OK)):
        print(f"demo: the tessera CLI is not at {cli}: run `make build` (or pass --tessera)", file=sys.stderr)
        return 2

    # 1. the catalogue
    packages, translations = embed_catalogue.find_lists(args.lists_dir)
    if not packages:
        print(f"demo: no Packages lists in {args.lists_dir}: run `make apt-lists` "
              f"(apt-get update -o Acquire::Languages=en) first", file=sys.stderr)
        return 2
    if not translations:
        print("demo: warning: no Translation-en lists, embedding short descriptions only", file=sys.stderr)
    try:
        cat = embed_catalogue.build_catalogue(packages, translations, cat_dir)
    except (OSError, RuntimeError, ValueError) as e:
        print(f"demo: embedding the catalogue failed: {e}", file=sys.stderr)
        return 1
    t_embed = time.perf_counter() - t_start

    # 2. semantic IDs
    cmd = [str(cli), "sid", "build", str(cat_dir / "embeddings.npy"), "--out", str(sid_dir),
           "--levels", str(args.levels), "--codebook-size", str(args.codebook_size), "--balance", args.balance,
           "--dedup", args.dedup, "--seed", str(args.seed), "--ids", str(cat_dir / "ids.txt"),
           "--labels", str(cat_dir / "labels.txt")]
    for stale in ("metrics.json", "index.json"):  # never report a previous run's results
        (sid_dir / stale).unlink(missing_ok=True)
    t0 = time.perf_counter()
    rc, cli_out, cli_err = run_cli(cmd)
    t_sid = time.perf_counter() - t0
    if rc != 0:
        print(f"demo: `{' '.join(cmd)}` failed with exit code {rc}", file=sys.stderr)
        if cli_out.strip():
            print(cli_out.rstrip(), file=sys.stderr)
        if cli_err.strip():
            print(cli_err.rstrip(), file=sys.stderr)
        return rc if 0 < rc < 256 else 1
    try:
        metrics = json.loads((sid_dir / "metrics.json").read_text())
        ids = (cat_dir / "ids.txt").read_text(encoding="utf-8").splitlines()
        labels = (cat_dir / "labels.txt").read_text(encoding="utf-8").splitlines()
        tokens = load_index(sid_dir / "index.json", ids, args.levels)
    except (OSError, ValueError) as e:
        print(f"demo: cannot read the CLI's outputs in {sid_dir}: {e}", file=sys.stderr)
        return 1
    t_total = time.perf_counter() - t_start

    # 3. summary
    n = len(ids)
    L = int(metrics.get("levels_count", args.levels))
    p = print
    p("tessera demo: semantic IDs for every package of the Debian archive")
    p(f"catalogue     {n:,} packages from {len(packages)} Packages + {len(translations)} Translation-en lists, "
      f"{len(set(labels))} sections")
    p(f"embedding     {cat.get('dim', '?')}-dim LSA of name + descriptions (TF-IDF 1-2-grams, truncated SVD): "
      + (f"cached ({t_embed:.1f} s)" if cat.get("cached") else f"{t_embed:.1f} s"))
    sizes = metrics.get("codebook_sizes") or [args.codebook_size] * L
    sizes = sizes[:1] if len(set(sizes)) == 1 else sizes
    p(f"semantic IDs  {L} levels x {'/'.join(map(str, sizes))} codes, balance={metrics.get('balance', args.balance)}, "
      f"dedup={metrics.get('dedup', args.dedup)}, seed {args.seed}: {t_sid:.1f} s "
      f"(CLI reports {fmt_num(metrics.get('seconds_total'), '.1f')} s); total {t_total:.1f} s")
    mse0, mse = metrics.get("mse_before"), metrics.get("mse")
    if isinstance(mse0, (int, float)) and isinstance(mse, (int, float)) and mse0 > 0:
        p(f"quantisation  MSE {mse0:.3f} -> {mse:.3f}: the {L} tokens capture {100 * (1 - mse / mse0):.1f}% "
          f"of the embedding's energy")
    levels = metrics.get("levels") or []
    has_purity = any("purity" in lv for lv in levels)
    p("  level  codes used  cluster sizes  perplexity  MSE after" + ("  section purity (chance)" if has_purity else ""))
    for lv in levels:
        used = f"{lv.get('unique_codes', '?')}/{lv.get('codebook_size', '?')}"
        cs = f"{lv.get('min_cluster_size', '?')}..{lv.get('max_cluster_size', '?')}"
        line = (f"  {lv.get('level', '?'):>5}  {used:>10}  {cs:>13}  {fmt_num(lv.get('perplexity'), '.1f'):>10}"
                f"  {fmt_num(lv.get('mse_after')):>9}")
        if has_purity:
            line += f"  {fmt_num(lv.get('purity'), '.2f'):>6} ({fmt_num(lv.get('purity_chance'), '.2f')})"
        p(line)

    # collisions: items that share every one of the L level tokens
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, t in enumerate(tokens):
        if t is not None:
            groups[tuple(t[:L])].append(i)
    n_missing = sum(t is None for t in tokens)
    full_ids = Counter(tuple(t) for t in tokens if t is not None)
    dup_ids = sum(c for c in full_ids.values() if c > 1)
    max_len = max((len(t) for t in tokens if t is not None), default=0)
    coll = metrics.get("colliding_items", sum(len(g) for g in groups.values() if len(g) > 1))
    p(f"collisions    {fmt_num(100 * metrics.get('collision_rate', coll / max(n, 1)), '.2f')}% of items ({coll:,}) "
      f"share all {L} tokens with another item (largest group {metrics.get('largest_collision_group', '?')});")
    p(f"              dedup={metrics.get('dedup', args.dedup)} leaves {metrics.get('final_collisions', dup_ids)} "
      f"duplicate IDs (checked: {dup_ids}), longest ID {metrics.get('max_id_length', max_len)} tokens"
      + (f"; {n_missing} items missing from index.json!" if n_missing else ""))
    multi = sorted((g for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), ids[g[0]]))
    if multi:
        g = multi[0]
        p(f"  e.g. {''.join(tokens[g[0]][:L])} + "
          + ", ".join(f"{''.join(tokens[i][L:]) or '(none)'} {ids[i]}" for i in g[:2])
          + (f", ... ({len(g)} items)" if len(g) > 2 else ""))

    # families by name prefix
    fam: dict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(ids):
        fam[family_key(name)].append(i)
    sized = {k: v for k, v in fam.items() if FAMILY_MIN <= len(v) <= FAMILY_MAX}
    shown: list[tuple[str, list[int]]] = []
    for label, pred in NAMED_FAMILIES:
        rows = [i for i, name in enumerate(ids) if pred(name.split("-"))]
        if len(rows) >= 2:
            shown.append((label, rows))
    for k in sorted(sized, key=lambda k: (-len(sized[k]), k)):
        if len(shown) >= len(NAMED_FAMILIES) + 3:
            break
        if all(k != s[0] for s in shown):
            shown.append((k, sized[k]))

    code_of: dict[str, int] = {}
    first = np.array([code_of.setdefault(t[0], len(code_of)) if t else -1 - i for i, t in enumerate(tokens)],
                     dtype=np.int64)
    if sized:
        (all_same, modal), (all_same_c, modal_c) = family_stats(
            first, [np.array(v) for v in sized.values()], np.random.default_rng(0))
        p(f"families      {len(sized):,} name families of {FAMILY_MIN}-{FAMILY_MAX} packages (pkg, pkg-*): "
          f"{100 * all_same:.0f}% have all members on one first token")
        p(f"              (random sets of the same sizes: {100 * all_same_c:.1f}%); {100 * modal:.0f}% of a family "
          f"shares its commonest first token (random: {100 * modal_c:.0f}%)")

    p("some families (similar packages share ID prefixes; near-duplicates still get distinct IDs):")
    for label, rows in shown:
        # the family's core packages (shortest names) first, then shown in name order
        rows = sorted(rows, key=lambda i: (len(ids[i]), ids[i]))
        firsts = Counter(tokens[i][0] for i in rows if tokens[i])
        top, cnt = firsts.most_common(1)[0] if firsts else ("?", 0)
        more = f", showing {SHOW_MEMBERS}" if len(rows) > SHOW_MEMBERS else ""
        p(f"  {label}* ({len(rows)} packages{more}; {cnt} on first token {top})")
        sub = sorted(rows[:SHOW_MEMBERS], key=lambda i: ids[i])
        w = min(max(len(ids[i]) for i in sub), 30)
        ws = min(max(len(labels[i]) if i < len(labels) else 1 for i in sub), 12)
        for i in sub:
            sec = labels[i] if i < len(labels) else "?"
            toks = " ".join(tokens[i]) if tokens[i] else "(missing)"
            p(f"    {ids[i]:<{w}}  {sec:<{ws}}  {toks}")
    p(f"outputs       {cat_dir}/ (embeddings.npy, items.tsv); {sid_dir}/ (index.json: MiniOneRec format)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
