"""Sentence retrieval at BUCC's scale: the time and memory of `nearest` (the k nearest
targets of every source sentence) and of `mine` (ratio-margin mining, which searches both
ways) on n x n synthetic sentence embeddings (xitt.tasktypes.retrieval.search).

The embeddings are random unit vectors, the targets of half the sources being noisy copies
of them ("translations") and the rest distractors, so that mining has pairs to find; the
F1 of the best threshold over them is printed as a check that the run mined something.
Memory: the similarities of one chunk of sources to all targets (chunk rows x n float32)
are the largest array a search holds; the peak RSS of the process is printed beside it.

    python benchmarks/retrieval.py                  # n = 100,000, d = 384 (BUCC de-en: ~400k a side)
    python benchmarks/retrieval.py --quick          # n = 20,000
    OMP_NUM_THREADS=1 python benchmarks/retrieval.py --quick --chunk-rows 1024

Run it on a quiet machine: the matrix products use every thread BLAS is given.
"""

import argparse
import os
import resource
import time

import numpy as np
from common import load_average

from xitt.tasktypes.retrieval.search import best_threshold, mine, nearest, normalise


def embeddings(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n source and n target unit vectors; target i translates source i for i < n / 2."""
    rng = np.random.default_rng(seed)
    source = rng.standard_normal((n, dim), dtype=np.float32)
    target = rng.standard_normal((n, dim), dtype=np.float32)
    half = n // 2
    target[:half] = source[:half] + rng.standard_normal((half, dim), dtype=np.float32)
    return normalise(source), normalise(target)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="sentences a side")
    parser.add_argument("--dim", type=int, default=384, help="embedding dimensions (e5-small: 384)")
    parser.add_argument("--chunk-rows", type=int, default=4096, help="queries scored at a time")
    parser.add_argument("--k", type=int, default=4, help="neighbours (the margin's k)")
    parser.add_argument("--quick", action="store_true", help="n = 20,000")
    options = parser.parse_args()
    n = 20_000 if options.quick else options.n

    source, target = embeddings(n, options.dim)
    rss_before = peak_rss_mib()
    chunk_mib = min(options.chunk_rows, n) * n * 4 / 2**20
    print(f"n={n} a side, d={options.dim}, k={options.k}, chunk_rows={options.chunk_rows}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load {load_average()}")

    started = time.perf_counter()
    nearest(source, target, options.k, options.chunk_rows)
    search_s = time.perf_counter() - started
    print(f"nearest: {search_s:.1f} s, {n / search_s:,.0f} source sentences/s "
          f"({n * n / search_s / 1e9:.2f} G similarities/s)")

    started = time.perf_counter()
    mined = mine(source, target, options.k, options.chunk_rows)
    mine_s = time.perf_counter() - started
    print(f"mine:    {mine_s:.1f} s, {n / mine_s:,.0f} source sentences/s (both directions searched), "
          f"{len(mined):,} pairs")

    is_gold = (mined.source == mined.target) & (mined.source < n // 2)
    threshold, f1 = best_threshold(mined.score, is_gold, n // 2)
    print(f"check:   F1 {f1:.1f} on the {n // 2:,} planted pairs at margin >= {threshold:.3f}")
    print(f"memory:  similarity chunk {chunk_mib:,.0f} MiB (chunk_rows x n float32); peak RSS "
          f"{peak_rss_mib():,.0f} MiB ({rss_before:,.0f} MiB with the embeddings alone)")


if __name__ == "__main__":
    main()
