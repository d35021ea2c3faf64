"""`make bench`: one table of ratios, all measured in one run on this machine, so that the
ratios compare like with like (machines are noisy: compare the ratios of one run, not
absolute figures across runs). The targets are those the project set itself (docs/performance.md).

    python benchmarks/bench.py                 # everything (about 10-15 minutes on 2 cores)
    python benchmarks/bench.py --quick         # a smoke test: few steps, small grid
    python benchmarks/bench.py --only train,startup

Rows (`--only` names):
  train        target-stage training, xitt vs transformers' Trainer vs a plain loop, examples/s
               and real tokens/s, tiny (size l, demo corpus) and e5-small (English tweets),
               fp32 and bf16 autocast (benchmarks/training.py)
  stage        a whole target stage (e5-small) at 1 and 2 epochs, xitt vs a plain script vs the
               Trainer: the loop's examples/s (from the difference) and each stage's fixed
               overhead (load, tokenise, set-up, save), fp32 and bf16; which precision is
               faster on this CPU, kept for the run-time hint (benchmarks/stage.py)
  eval         evaluation examples/s over the target task's languages (benchmarks/evaluation.py)
  tokenise     a cell's tokenisation through TaskDataModule, empty vs filled cache
               (benchmarks/tokenisation.py)
  grid         the demo grid with the artifact store vs the naive pipeline (benchmarks/grid.py)
  startup      demo cell, config error, "nothing to train" (benchmarks/startup.py)
  concurrency  two concurrent demo cells vs one alone (benchmarks/startup.py)
  retrieval    sentences/s that the retrieval module embeds (e5-small, 12 layers, fp32 and bf16),
               and nearest + margin mining of 100k x 100k synthetic embeddings (20k with
               --quick): seconds, sentences/s, peak memory (benchmarks/retrieval.py)

The e5-small rows need ../shared (the model and the sentiment files); without it they are
skipped, saying so. Everything runs offline, in a temporary folder.
"""

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Row, format_table, load_average, measure_in_child, shared_present

from xitt.core.jobs import CPU_PRECISION

SECTIONS = ("train", "stage", "eval", "tokenise", "grid", "startup", "concurrency", "retrieval")
PRECISIONS = (("32-true", "fp32"), ("bf16-mixed", "bf16"))
LABELS = {"tiny": "tiny-l", "e5": "e5-small"}


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {len(os.sched_getaffinity(0))} cores available, {os.cpu_count()} online"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("torch", "pytorch-lightning", "transformers", "accelerate", "datasets"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(f"{package} absent")
    return ", ".join(found)


def training_rows(workloads: list[str], quick: bool, rounds: int, root: Path) -> list[Row]:
    rows = []
    # transformers' Trainer needs accelerate (benchmarks/requirements.txt, which `make bench`
    # installs); without it the Trainer rows are skipped, saying so.
    with_trainer = importlib.util.find_spec("accelerate") is not None
    for workload in workloads:
        # Steps left out of the timing at the start (see training.py).
        warmup = 2 if quick else 5
        # xitt-lean (no progress bar, no epoch checkpoints) says where xitt's overhead goes; it
        # matters where steps are short and epochs many (tiny), not for one epoch of e5.
        # xitt-compile (torch.compile) says whether compiling pays off; compiling e5-small on
        # 2 CPU cores takes minutes, so the tiny workload answers.
        frameworks = ["plain", *(["trainer"] if with_trainer else []), "xitt",
                      *(["xitt-lean", "xitt-compile"] if workload == "tiny" else [])]
        for precision, short in PRECISIONS:
            progress(f"train {workload} {short}: {', '.join(frameworks)} x {rounds} rounds")
            results = measure_in_child("training", {
                "frameworks": frameworks, "rounds": rounds, "workload": workload, "precision": precision,
                "quick": quick, "warmup": warmup, "root": str(root / f"train-{workload}")})
            expected = "bfloat16" if short == "bf16" else "float32"
            for framework, result in results.items():
                if result["compute_dtype"] != expected:
                    raise RuntimeError(f"{framework} computed in {result['compute_dtype']}, not {expected}")
            rows += training_table(f"train {LABELS[workload]} {short}", results)
    return rows


def training_table(name: str, results: dict[str, dict]) -> list[Row]:
    """The figures of every framework, then the ratios: of examples/s (what the targets are
    set on), with the ratio of real tokens/s beside it."""
    names = {"xitt": "xitt", "trainer": "Trainer", "plain": "plain", "xitt-lean": "lean", "xitt-compile": "compiled"}
    xitt = results["xitt"]
    rows = [
        Row(f"{name}: examples/s", " | ".join(f"{names[f]} {r['examples_per_s']:.1f}" for f, r in results.items())
            + f"  (best of {xitt['rounds']}; {xitt['timed_steps']} of {xitt['steps']} steps timed)"),
        Row(f"{name}: real tokens/s (padding)",
            " | ".join(f"{names[f]} {r['tokens_per_s']:.0f} ({r['padding']:.0%})" for f, r in results.items())),
    ]

    def ratio(label: str, a: str, b: str, target: str = "") -> Row:
        if a not in results or b not in results:
            return Row(f"  {label}: examples/s", "skipped: accelerate is not installed", None, target)
        tokens = results[a]["tokens_per_s"] / results[b]["tokens_per_s"]
        return Row(f"  {label}: examples/s", f"real tokens/s {tokens:.2f}x",
                   results[a]["examples_per_s"] / results[b]["examples_per_s"], target)

    rows += [ratio("xitt / Trainer", "xitt", "trainer", ">= 1.05"), ratio("xitt / plain loop", "xitt", "plain", ">= 0.97")]
    if "xitt-lean" in results:
        rows.append(ratio("xitt-lean / plain loop", "xitt-lean", "plain"))
    if "xitt-compile" in results:
        rows.append(ratio("xitt compiled / xitt", "xitt-compile", "xitt"))
    if "trainer" in results:
        rows.append(ratio("Trainer / plain loop", "trainer", "plain"))
    if xitt.get("checkpoint_s") is not None:
        rows.append(Row("  xitt's epoch-end checkpoint / one epoch",
                        f"{xitt['checkpoint_s']:.2f} s ({xitt['checkpoint_mb']:.0f} MB: weights, AdamW state) "
                        f"vs {xitt['epoch_s']:.1f} s", xitt["checkpoint_s"] / xitt["epoch_s"]))
    return rows


def stage_rows(workload: str, quick: bool, root: Path) -> list[Row]:
    import importlib.util

    frameworks = ["plain", "xitt", *(["trainer"] if importlib.util.find_spec("accelerate") else [])]
    rows, loop_rates = [], {}
    for precision, short in PRECISIONS:
        progress(f"stage {workload} {short}: {', '.join(frameworks)} at 1 and 2 epochs")
        result = measure_in_child("stage", {"workload": workload, "precision": precision, "quick": quick,
                                            "frameworks": frameworks, "root": str(root / f"stage-{short}")})
        xitt = result["xitt"]
        loop_rates[precision] = xitt["loop_examples_per_s"]
        names = {"xitt": "xitt", "plain": "plain", "trainer": "Trainer"}
        name = f"stage {LABELS[workload]} {short}, {xitt['examples']} examples"
        rows += [
            Row(f"{name}: loop examples/s", " | ".join(f"{names[f]} {result[f]['loop_examples_per_s']:.1f}"
                                                       for f in frameworks) + "  (from 1- vs 2-epoch stages)"),
            Row(f"{name}: fixed overhead", " | ".join(f"{names[f]} {result[f]['overhead_s']:.1f} s" for f in frameworks)
                + f"  (xitt: {xitt['before_first_step_s']:.1f} s load+tokenise+set-up, "
                  f"{xitt['after_training_s']:.1f} s save)"),
        ]
        default = precision == CPU_PRECISION
        for other in ("plain", "trainer"):
            if other in result:
                target = (">= 0.97" if other == "plain" else ">= 1.0") if default else ""
                rows.append(Row(f"  xitt / {names[other]}: loop only", "",
                                xitt["loop_examples_per_s"] / result[other]["loop_examples_per_s"], target))
                rows.append(Row(f"  xitt / {names[other]}: whole stage, 1 epoch", "",
                                xitt["stage_examples_per_s"] / result[other]["stage_examples_per_s"]))
        rows.append(Row("  xitt fixed overhead per stage", "", xitt["overhead_s"], "<= 5" if default else "", unit="s"))
    faster = max(loop_rates, key=loop_rates.get)
    ratio = loop_rates["bf16-mixed"] / loop_rates["32-true"]
    if not quick:
        keep_precision_speeds(loop_rates, LABELS[workload])
    rows.append(Row(f"precision on this CPU: bf16 / fp32 (xitt loop, {LABELS[workload]})",
                    f"faster here: {faster}" + ("" if faster == CPU_PRECISION else
                                                f" (use `trainer.precision={faster}`)"), ratio))
    return rows


def keep_precision_speeds(rates: dict[str, float], workload: str) -> None:
    """What the run-time precision hint reads (xitt.core.jobs.precision_hint), per CPU model."""
    import json

    from xitt.core.jobs import cpu_model, measurements_path

    path = Path(measurements_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        kept = {}
    kept[cpu_model()] = {"examples_per_s": {k: round(v, 2) for k, v in rates.items()}, "workload": f"{workload} training",
                         "measured": time.strftime("%Y-%m-%d")}
    path.write_text(json.dumps(kept, indent=1))


def evaluation_rows(workload: str, quick: bool, root: Path) -> list[Row]:
    progress(f"eval {workload}")
    result = measure_in_child("evaluation", {"workload": workload, "precision": CPU_PRECISION, "quick": quick,
                                             "root": str(root / f"eval-{workload}")})
    name = f"eval {LABELS[workload]} {CPU_PRECISION}, {result['languages']} langs, {result['examples']} examples"
    return [
        Row(f"{name}: examples/s",
            f"xitt predict loop {result['xitt_predict_per_s']:.0f} | xitt evaluate stage (load, predict, score, "
            f"write) {result['xitt_stage_per_s']:.0f} | plain loop {result['plain_per_s']:.0f}"),
        Row("  xitt predict loop / plain loop", "", result["xitt_predict_per_s"] / result["plain_per_s"]),
        Row("  xitt evaluate stage / plain loop", "", result["xitt_stage_per_s"] / result["plain_per_s"]),
    ]


def tokenisation_rows(workloads: list[str], quick: bool, root: Path) -> list[Row]:
    rows = []
    for workload in workloads:
        progress(f"tokenise {workload}")
        result = measure_in_child("tokenisation", {"workload": workload, "quick": quick,
                                                   "root": str(root / f"tokenise-{workload}")})
        rows.append(Row(f"tokenise {LABELS[workload]} cell ({result['splits']} splits, {result['rows']:,} rows): "
                        f"warm / cold", f"cold {result['cold_s']:.2f} s, warm {result['warm_s']:.2f} s",
                        result["warm_s"] / result["cold_s"], "< 0.05"))
    return rows


def retrieval_rows(quick: bool, with_e5: bool) -> list[Row]:
    import retrieval

    rows = []
    if with_e5:
        progress("retrieval embedding")
        rates = retrieval.embedding_rates(sentences=128 if quick else 512)
        rows += [Row("retrieval: embed XNLI hypotheses, e5-small 12 layers: sentences/s",
                     f"fp32 {rates['fp32']:.0f} | bf16 autocast {rates['bf16']:.0f}"),
                 Row("  bf16 / fp32 (retrieval runs its precision's: fp32 where this is below 1)", "",
                     rates["bf16"] / rates["fp32"])]
    progress("retrieval scoring")
    result = retrieval.scoring(20_000 if quick else 100_000)
    n = result["n"]
    rows.append(Row(f"retrieval: nearest + mining, {n:,} x {n:,} synthetic (d 384)",
                    f"nearest {result['nearest_s']:.1f} s ({n / result['nearest_s']:,.0f} sentences/s), mining "
                    f"{result['mine_s']:.1f} s ({n / result['mine_s']:,.0f} sentences/s), planted pairs F1 "
                    f"{result['f1']:.1f}; peak memory {result['peak_rss_mib']:,.0f} MiB (similarity chunk "
                    f"{result['chunk_mib']:,.0f} MiB; a whole n x n matrix: {n * n * 4 / 2**30:,.0f} GiB)"))
    return rows


LOADS: list[str] = []  # the load average as each measurement started: was the machine quiet?


def progress(message: str) -> None:
    LOADS.append(f"{message.split(':')[0]} {load_average()}")
    print(f"[{time.strftime('%H:%M:%S')}] {message}  (load {load_average()})", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few steps and a small grid: a smoke test")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated rows to run, of: {', '.join(SECTIONS)}")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of the training rows, the best of which counts (default 2; 1 with --quick)")
    options = parser.parse_args()
    options.rounds = options.rounds or (1 if options.quick else 2)
    only = [name.strip() for name in options.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown rows {unknown}; the rows are {', '.join(SECTIONS)}")

    notes = []
    workloads = ["tiny"]
    if shared_present():
        workloads.append("e5")
    else:
        notes.append("e5-small rows skipped: ../shared (models/multilingual-e5-small, data/multilingual_sentiment) "
                     "is not beside the repository.")
    started = time.time()
    load_before = load_average()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="xitt-bench-") as tmp:
        root = Path(tmp)
        if "train" in only:
            rows += training_rows(workloads, options.quick, options.rounds, root)
        if "stage" in only:
            rows += stage_rows(workloads[-1], options.quick, root)
        if "eval" in only:
            # The real task has 8 languages (the demo's 4) for the evaluation row.
            rows += evaluation_rows(workloads[-1], options.quick, root)
        if "tokenise" in only:
            rows += tokenisation_rows(workloads, options.quick, root)
        if "grid" in only:
            import grid

            progress("grid")
            rows += grid.rows(root / "grid", options.quick)
        if "retrieval" in only:
            rows += retrieval_rows(options.quick, "e5" in workloads)
        if "startup" in only or "concurrency" in only:
            import startup

            progress("startup / concurrency")
            rows += startup.rows(root / "cells", options.quick, startup="startup" in only,
                                 concurrency="concurrency" in only)
    minutes = (time.time() - started) / 60
    print(f"xitt benchmark{' (--quick: a smoke test, not figures)' if options.quick else ''}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, {minutes:.1f} min")
    print(f"machine: {machine()}; {platform.python_version()}; {versions()}")
    print(f"load average (1/5 min; 2 cores: above 2 means waiting for CPU): {load_before} before, "
          f"{load_average()} after; as each part started: {'; '.join(LOADS)}")
    for note in notes:
        print(note)
    print()
    print(format_table(rows))
    missed, section = [], ""
    for row in rows:
        if not row.name.startswith(" "):
            section = row.name.split(":")[0]
        if row.verdict == "MISS":
            missed.append(row.name if not row.name.startswith(" ") else f"{section}, {row.name.strip()}")
    print(f"\ntargets met: {sum(row.verdict == 'PASS' for row in rows)}, missed: {len(missed)}"
          + (f": {'; '.join(missed)}" if missed else ""))


if __name__ == "__main__":
    main()
