"""A model family is one yaml: what layer keeping, freezing, the memory planner and validation
need comes from the family file or the model's own config. Shown on ModernBERT's
architecture (mmBERT's): a tiny random-initialised one trains every head type with layers
dropped and the bottom layers frozen; mmBERT's sizes plan from their yaml alone.
"""

import json
import os

import pytest
import torch
import transformers
from safetensors.numpy import load_file

from conftest import builds, compose
from xitt import XittError
from xitt.core.cell import resolve_model
from xitt.memory import Parallelism, architecture, estimate_memory
from xitt.models.encoder import load_encoder

# ModernBERT, 2 of its 3 layers kept, the embeddings and the lowest layer frozen in the target stage.
MODERNBERT = ["model=tiny_modernbert", "+model.keep_layers=2", "freezing=bottom_k", "freezing.k=1", "logger=none",
              "itt.hparams.epochs=1", "target.hparams.epochs=1", "target_lang.langs=[en,far]"]


def test_a_tiny_modernbert_trains_every_head_type_with_layers_kept_and_frozen(tmp_path):
    from xitt.stages.pipeline import CellRunner

    for target in ("demo", "demo_ner", "demo_qa"):  # one classification ITT encoder starts all three
        runner = CellRunner(compose(*MODERNBERT, "itt=demo", f"target={target}", f"paths.root={tmp_path}"))
        records = runner.run()
        assert [record["lang"] for record in records] == ["en", "far"] and all(r["n"] > 0 for r in records)
        stages = {stage.name: stage for stage in runner.cell.stages()}
        itt_dir = runner.store.path("itt", stages["itt"].key)
        target_dir = runner.store.path("target", stages["target"].key)
        config = json.loads((target_dir / "config.json").read_text())
        assert config["model_type"] == "modernbert" and config["num_hidden_layers"] == 2
        assert config["layer_types"] == ["full_attention", "sliding_attention"]  # per-layer settings kept with them
        itt, trained = load_file(str(itt_dir / "model.safetensors")), load_file(str(target_dir / "model.safetensors"))
        frozen = [name for name in trained if name.startswith(("embeddings.", "layers.0."))]
        assert frozen and all((trained[name] == itt[name]).all() for name in frozen)
        assert any((trained[name] != itt[name]).any() for name in trained if name.startswith("layers.1."))
    # The ITT encoder was trained once, for the first target, and reused by the other two.
    assert len(builds(tmp_path, "itt")) == 1 and len(builds(tmp_path, "target")) == 3


def test_mmbert_is_one_yaml_that_plans_and_keys_like_any_family():
    small, base = (resolve_model(compose(f"model=mmbert_{size}")) for size in ("small", "base"))
    assert (small["name_or_path"], base["name_or_path"]) == ("jhu-clsp/mmBERT-small", "jhu-clsp/mmBERT-base")
    assert architecture(base).layers == 22 and architecture(small).hidden == 384
    memory = estimate_memory(architecture(base), Parallelism("single", 1, False, False), precision="bf16-mixed",
                             batch_size=32, seq_len=256, activation_checkpointing=False)
    assert memory.fits and memory.total > 307e6 * 16 / 1e9  # weights, gradients and Adam in fp32
    # The planner's figures are not part of the model's identity.
    from xitt.core.cell import Cell

    assert Cell.from_config(compose("model=mmbert_base", "itt=none")).cell_key == Cell.from_config(
        compose("model=mmbert_base", "itt=none", "model.sizes.base.shape.params=1")).cell_key


class _Payload:
    """What a hostile checkpoint pickles: rebuilding it would call os.system."""

    def __reduce__(self):
        return os.system, ("echo this should never run",)


def test_a_checkpoint_that_cannot_be_loaded_safely_is_refused_in_one_paragraph(tmp_path, capfd):
    config = transformers.ModernBertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                           intermediate_size=64, pad_token_id=1, cls_token_id=0, sep_token_id=2,
                                           bos_token_id=0, eos_token_id=2)
    config.save_pretrained(tmp_path)
    weights = dict(transformers.ModernBertModel(config).state_dict())
    torch.save({**weights, "extra": _Payload()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(XittError) as refused:
        load_encoder(tmp_path)
    message = str(refused.value)
    assert "Refusing to load" in message and "posix.system" in message and "safetensors" in message
    assert "weights_only" not in message and "\n" not in message
    assert "should never run" not in capfd.readouterr().out
    # The same weights as plain tensors load.
    torch.save(weights, tmp_path / "pytorch_model.bin")
    assert load_encoder(tmp_path).config.model_type == "modernbert"
