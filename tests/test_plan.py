"""Planning a grid without training it: the same cells as the multirun, the artifacts they
share, what the store holds, the memory each stage needs per GPU and the GPU-hours."""

import json
import logging
import shutil

import pytest

from conftest import compose, run_script
from xitt import CONF_DIR
from xitt.grid_expand import expand_grid, sweep_jobs
from xitt.memory import Parallelism, architecture, estimate_memory, memory_warnings

# Two ITT choices x two freezing modes: the ITT model is shared by both freezing modes
# (freezing applies to the target stage), so the grid trains 1 ITT and 4 target models.
GRID = ["model=tiny", "size=s", "itt=none,demo", "freezing=none,probe"]
# Short training, so that the grid runs in seconds; it does not change any artifact key.
QUICK = ["logger=none", "+trainer.limit_train_batches=3", "target.hparams.epochs=1"]


def test_expand_grid_expands_like_the_multirun():
    cells = expand_grid(["model=tiny", "size=s,m", "itt=none,demo", "logger=none"])
    assert [overrides for overrides, _ in cells] == [
        ["model=tiny", "size=s", "itt=none", "logger=none"], ["model=tiny", "size=s", "itt=demo", "logger=none"],
        ["model=tiny", "size=m", "itt=none", "logger=none"], ["model=tiny", "size=m", "itt=demo", "logger=none"]]
    assert [(cfg.size.name, cfg.itt.name) for _, cfg in cells] == [("s", "none"), ("s", "demo"), ("m", "none"),
                                                                    ("m", "demo")]
    assert "hydra" not in cells[0][1]


def test_expand_grid_includes_an_experiments_sweep_params(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "experiment" / "seeds.yaml").write_text(
        "# @package _global_\nhydra:\n  sweeper:\n    params:\n      seed: 1,2,3\n      size: s,m\n")
    cells = expand_grid(["experiment=seeds", "size=l", "model=tiny"], config_dir=conf)
    # The experiment's axes multiply out; the command line wins over the experiment's own value.
    assert sorted((int(cfg.seed), cfg.size.name) for _, cfg in cells) == [(1, "l"), (2, "l"), (3, "l")]
    # counting without composing lists the same cells
    assert sweep_jobs(["experiment=seeds", "size=l", "model=tiny"], config_dir=conf) == [o for o, _ in cells]


def test_plan_of_the_demo_grid(tmp_path):
    from xitt.plan import format_plan, plan_grid

    plan = plan_grid(["model=tiny", "size=s,m", "itt=none,demo", f"paths.root={tmp_path}"])
    summary = plan["summary"]
    assert summary["cells"] == summary["jobs_to_run"] == 4
    assert summary["itt"]["distinct"] == 2 and summary["target"]["distinct"] == 4
    assert [c["name"] for c in plan["cells"]] == [
        "tiny-s_itt-none_demo_zero_shot_none_seed1", "tiny-s_itt-demo_demo_zero_shot_none_seed1",
        "tiny-m_itt-none_demo_zero_shot_none_seed1", "tiny-m_itt-demo_demo_zero_shot_none_seed1"]
    assert "4 cells; 4 will run" in format_plan(plan)


def test_a_cell_whose_seed_does_not_matter_is_planned_once(shared, tmp_path):
    """A pretrained encoder scored by a target that trains nothing: seeds 1-3 are one cell."""
    from xitt.plan import format_plan, plan_grid

    plan = plan_grid(["model=e5_depth", f"model.name_or_path={shared / 'models/multilingual-e5-small'}", "size=l3",
                      "itt=none", "target=xnli_nearest", f"target.path={shared / 'data/xnli'}", "seed=1,2,3",
                      f"paths.root={tmp_path}"])
    summary = plan["summary"]
    assert summary["cells"] == 3 and summary["distinct_cells"] == summary["jobs_to_run"] == 1
    assert [cell["repeat"] for cell in plan["cells"]] == [False, True, True]
    assert "3 cells; 1 will run, 0 are done (skipped), 2 repeat a cell whose seed does not matter" in format_plan(plan)


@pytest.mark.slow
def test_plan_counts_shared_artifacts_then_finds_them_in_the_store(tmp_path):
    overrides = [*GRID, *QUICK, f"paths.root={tmp_path}"]
    before = run_script("-m", "xitt.plan", "--json", *overrides)
    assert before.returncode == 0, before.stderr[-3000:]
    plan = json.loads(before.stdout)
    summary = plan["summary"]
    assert summary["cells"] == 4 and summary["jobs_to_run"] == 4
    assert summary["itt"] == {"distinct": 1, "stored": 0, "to_build": 1}
    assert summary["target"] == {"distinct": 4, "stored": 0, "to_build": 4}
    [itt] = [a for a in plan["artifacts"] if a["kind"] == "itt"]
    assert len(itt["cells"]) == 2 and itt["examples"] == 3000 and itt["gpu_hours"] > 0
    # Without reuse, the ITT model would be trained once per cell that needs it.
    assert summary["gpu_hours_saved_by_reuse"] == pytest.approx(itt["gpu_hours"], rel=1e-3)
    assert summary["gpu_hours_without_reuse"] > summary["gpu_hours_to_build"] > 0
    assert all(a["memory"]["fits"] for a in plan["artifacts"])

    grid = run_script("train.py", "-m", *overrides)
    assert grid.returncode == 0, grid.stderr[-3000:]
    after = json.loads(run_script("-m", "xitt.plan", "--json", *overrides).stdout)
    assert after["summary"]["jobs_to_run"] == 0
    assert after["summary"]["itt"]["stored"] == 1 and after["summary"]["target"]["stored"] == 4
    assert after["summary"]["gpu_hours_to_build"] == 0
    # The plan's cells are the multirun's cells.
    records = [json.loads(p.read_text()) for p in (tmp_path / "results").rglob("*.json")
               if not p.name.endswith(".predictions.json")]
    assert {c["cell_key"] for c in after["cells"]} == {r["cell_key"] for r in records}

    text = run_script("-m", "xitt.plan", *overrides).stdout
    assert "4 cells; 0 will run, 4 are done" in text and "ITT artifacts: 1 distinct, 1 in the store" in text


def test_a_report_states_its_power_and_the_plan_extends_it_to_more_seeds(tmp_path):
    import pandas as pd

    from test_analysis import write_synthetic_results
    from xitt.analysis import build_report
    from xitt.analysis.report import format_mde
    from xitt.analysis.stats import minimum_detectable_effect, seeds_to_detect
    from xitt.plan import format_plan, plan_grid

    # a real report of synthetic records: tiny on xnli, sizes s, m and l, ITT demo, 3 seeds
    write_synthetic_results(tmp_path / "results")
    report = build_report([tmp_path / "results"], tmp_path / "report", n_bootstrap=100)
    gains = pd.read_csv(report["files"]["gains.csv"])
    overall = gains[gains["scope"] == "overall"].set_index("size")
    assert (overall["mde"] > 0).all() and (overall["seeds_for_2pt"] >= 3).all()
    for row in overall.itertuples():  # gains.csv holds what its power is computed from
        assert row.mde == pytest.approx(minimum_detectable_effect(row.seed_variance, 2, row.test_variance))
        assert row.seeds_for_observed == seeds_to_detect(row.gain, 3 * row.seed_variance, row.test_variance)
    (answer,) = report["answers"]
    mdes = [format_mde(overall.loc[size, "mde"]) for size in ("s", "m", "l")]
    assert (f"With 80% power at a two-sided 0.05, this design (3 seeds) detects gains of {mdes[0]}, "
            f"{mdes[1]} and {mdes[2]} F1 or more at s, m and l; ") in answer["sentence"]

    grid = ["model=tiny", "size=s,m", "itt=none,demo", "target=xnli", "seed=1,2,3,4,5,6", f"paths.root={tmp_path}"]
    plan = plan_grid(grid, power_from=tmp_path / "report")
    assert [(entry["size"], entry["seeds"], entry["found"]) for entry in plan["power"]] == [
        ("s", 6, True), ("m", 6, True)]
    for entry in plan["power"]:
        row = overall.loc[entry["size"]]
        # six seeds instead of three: half the seed part, the test-set part as measured
        assert entry["mde"] == pytest.approx(minimum_detectable_effect(row["seed_variance"] / 2, 5,
                                                                       row["test_variance"]))
        assert entry["mde"] < row["mde"]
        assert entry["seeds_for_2pt"] == row["seeds_for_2pt"]  # what the report says too
    text = format_plan(plan)
    assert "tiny-s itt=demo on xnli, zero_shot, freezing none" in text
    assert f"6 seeds detect gains of {format_mde(plan['power'][0]['mde'])} F1 or more" in text

    # from the command line; a size the report does not have is said to be unknown
    result = run_script("-m", "xitt.plan", "--power-from", str(tmp_path / "report"), "model=tiny", "size=s",
                        "itt=none,demo", "target=xnli", "seed=1,2", f"paths.root={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "with 2 seeds no seed-level claim can be made (3 or more are needed)" in result.stdout
    gains[gains["size"] != "s"].to_csv(tmp_path / "without_s.csv", index=False)
    (without_s,) = plan_grid(grid[:1] + ["size=s", *grid[2:]], power_from=tmp_path / "without_s.csv")["power"]
    assert not without_s["found"]


def test_plan_power_needs_a_report_that_measured_it(tmp_path):
    from xitt import XittError
    from xitt.plan import plan_grid

    grid = ["model=tiny", "size=s", "itt=none,demo", f"paths.root={tmp_path}"]
    with pytest.raises(XittError, match="nowhere: found no gains.csv there. Give the folder of a report"):
        plan_grid(grid, power_from=tmp_path / "nowhere")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "gains.csv").write_text("model,size,itt,scope,status,gain\ntiny,s,demo,overall,ok,1.0\n")
    with pytest.raises(XittError, match="no `seed_variance` and `test_variance` columns: it was written before"):
        plan_grid(grid, power_from=tmp_path / "old")


def _shape(family: str, size: str):
    """What the planner reads of a family's size: the `shape` its yaml declares."""
    from xitt.core.cell import resolve_model

    return architecture(resolve_model(compose(f"model={family}_{size}")))


def test_family_shapes_match_published_and_computed_sizes():
    published = {("xlmr", "base"): 278e6, ("xlmr", "large"): 560e6, ("xlmr", "xl"): 3.5e9, ("xlmr", "xxl"): 10.7e9,
                 ("mmbert", "small"): 140e6, ("mmbert", "base"): 307e6}
    for (family, size), params in published.items():
        assert _shape(family, size).params == pytest.approx(params, rel=0.01)
    # mT5 encoders, computed from each config: shared embedding, self-attention without
    # biases (64 per head), a gated FFN, one RMS norm per sub-layer and a final one.
    for size in ("small", "base", "large", "xl", "xxl"):
        shape = _shape("mt5", size)
        inner = shape.heads * 64
        layer = 4 * shape.hidden * inner + 3 * shape.hidden * shape.ffn + 2 * shape.hidden
        assert shape.params == shape.vocab * shape.hidden + shape.layers * layer + shape.hidden and shape.gated_ffn
    assert _shape("mt5", "small").params == pytest.approx(147e6, rel=0.02)
    # The tiny demo encoder (211,968 parameters): counted from its shape with the declared
    # vocabulary (2000), an upper bound, as the trained tokenizer may use fewer tokens.
    from xitt.core.cell import resolve_model

    tiny = architecture(resolve_model(compose("model=tiny", "size=s")))
    assert 211_968 <= tiny.params <= 1.3 * 211_968


def test_memory_estimates_choose_sharding_for_the_xxl_sizes():
    xxl = _shape("xlmr", "xxl")
    common = dict(precision="bf16-mixed", batch_size=32, seq_len=256, activation_checkpointing=True)
    ddp = estimate_memory(xxl, Parallelism("ddp", 8, False, False), **common)
    fsdp = estimate_memory(xxl, Parallelism("fsdp", 4, True, True), **common)
    assert not ddp.fits and ddp.total > 150  # 16 bytes x 10.7B parameters on every GPU
    assert fsdp.fits and 30 < fsdp.total < 70
    base = estimate_memory(_shape("xlmr", "base"), Parallelism("single", 1, False, False),
                           precision="bf16-mixed", batch_size=32, seq_len=256)
    assert 5 < base.total < 15  # xlmr-base fine-tunes in ~10 GB at this batch
    probe = estimate_memory(xxl, Parallelism("single", 1, False, False), trainable=0.0, **common)
    assert probe.gradients == probe.optimizer == 0


def test_gpu_grid_warns_before_launch_when_a_stage_will_not_fit(caplog):
    from conftest import compose

    assert memory_warnings(compose("trainer=fsdp", "model=xlmr", "size=xxl", "trainer.devices=8")) == []
    too_big = memory_warnings(compose("trainer=gpu", "model=xlmr", "size=xxl"))
    assert too_big and "will not fit" in too_big[0] and "trainer=fsdp" in too_big[0]
    assert memory_warnings(compose("trainer=cpu", "model=xlmr", "size=xxl")) == []  # CPU: no GPU check

    from hydra import compose as hydra_compose, initialize_config_dir

    from xitt.stages.grid import warn_about_gpu_memory

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        config = hydra_compose(config_name="train", overrides=["trainer=gpu", "model=xlmr", "size=xxl"],
                               return_hydra_config=True)
    with caplog.at_level(logging.WARNING, logger="xitt"):
        warn_about_gpu_memory(config)
    assert "GPU memory:" in caplog.text and "xlmr-xxl" in caplog.text
