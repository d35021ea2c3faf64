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


def scoring(n: int, dim: int = 384, chunk_rows: int = 4096, k: int = 4) -> dict:
    """Seconds and peak memory of `nearest` and `mine` on n x n synthetic embeddings."""
    source, target = embeddings(n, dim)
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    nearest(source, target, k, chunk_rows)
    search_s = time.perf_counter() - started
    started = time.perf_counter()
    mined = mine(source, target, k, chunk_rows)
    mine_s = time.perf_counter() - started
    is_gold = (mined.source == mined.target) & (mined.source < n // 2)
    threshold, f1 = best_threshold(mined.score, is_gold, n // 2)
    return {"n": n, "nearest_s": search_s, "mine_s": mine_s, "pairs": len(mined), "f1": f1, "threshold": threshold,
            "chunk_mib": min(chunk_rows, n) * n * 4 / 2**20, "peak_rss_mib": peak_rss_mib(),
            "embeddings_rss_mib": rss_before}


def embedding_rates(sentences: int = 512, layers: int = 12) -> dict[str, float]:
    """Sentences a second that xitt's retrieval module embeds (e5-small, XNLI's German
    hypotheses with e5's prefix, batches of 64 sorted by length), in fp32 and under bf16
    autocast, on this machine's threads."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from xitt.tasktypes.retrieval.training import SentenceEmbedder
    from common import SHARED

    path = SHARED / "models/multilingual-e5-small"
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path, dtype=torch.float32)
    encoder.encoder.layer = encoder.encoder.layer[:layers]
    encoder.config.num_hidden_layers = layers
    module = SentenceEmbedder(encoder, "last", {}).eval()
    lines = (SHARED / "data/xnli/dev-de.tsv").read_text(encoding="utf-8").splitlines()[:sentences]
    texts = sorted(("query: " + line.split("\t")[1] for line in lines), key=len)
    rates = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        started = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for start in range(0, len(texts), 64):
                batch = tokenizer(texts[start:start + 64], padding=True, truncation=True, max_length=64,
                                  return_tensors="pt")
                module.embed(dict(batch))
        rates[name] = len(texts) / (time.perf_counter() - started)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="sentences a side")
    parser.add_argument("--dim", type=int, default=384, help="embedding dimensions (e5-small: 384)")
    parser.add_argument("--chunk-rows", type=int, default=4096, help="queries scored at a time")
    parser.add_argument("--k", type=int, default=4, help="neighbours (the margin's k)")
    parser.add_argument("--quick", action="store_true", help="n = 20,000")
    options = parser.parse_args()
    n = 20_000 if options.quick else options.n
    print(f"n={n} a side, d={options.dim}, k={options.k}, chunk_rows={options.chunk_rows}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load {load_average()}")
    result = scoring(n, options.dim, options.chunk_rows, options.k)
    print(f"nearest: {result['nearest_s']:.1f} s, {n / result['nearest_s']:,.0f} source sentences/s "
          f"({n * n / result['nearest_s'] / 1e9:.2f} G similarities/s)")
    print(f"mine:    {result['mine_s']:.1f} s, {n / result['mine_s']:,.0f} source sentences/s (both directions "
          f"searched), {result['pairs']:,} pairs")
    print(f"check:   F1 {result['f1']:.1f} on the {n // 2:,} planted pairs at margin >= {result['threshold']:.3f}")
    print(f"memory:  similarity chunk {result['chunk_mib']:,.0f} MiB (chunk_rows x n float32); peak RSS "
          f"{result['peak_rss_mib']:,.0f} MiB ({result['embeddings_rss_mib']:,.0f} MiB with the embeddings alone)")


if __name__ == "__main__":
    main()
