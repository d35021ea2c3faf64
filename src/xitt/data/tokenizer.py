"""Tokenizers: a hub model's own, or for the tiny models one trained on the demo corpus
and kept in the artifact store (trained once, then loaded)."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from xitt.data import demo
from xitt.core.keys import content_key
from xitt.core.store import ArtifactStore

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R's, in its order


def _train_demo_tokenizer(vocab_size: int, out_dir: Path) -> dict:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tokenizer.train_from_iterator(demo.tokenizer_corpus(), trainer=trainer)
    bos, eos = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", mask_token="<mask>", cls_token="<s>", sep_token="</s>",
    )
    wrapped.save_pretrained(out_dir)
    return {"vocab_size": tokenizer.get_vocab_size()}


def load_tokenizer(model: Mapping[str, Any], store: ArtifactStore) -> PreTrainedTokenizerBase:
    """The tokenizer of a resolved model config (see `xitt.core.cell.resolve_model`)."""
    if model["source"] == "scratch":
        spec = dict(model["tokenizer"])
        key = content_key({"tokenizer": spec})
        folder = store.get_or_build(
            "tokenizer", key, lambda out: _train_demo_tokenizer(int(spec["vocab_size"]), out), spec
        )
        return AutoTokenizer.from_pretrained(folder)
    return AutoTokenizer.from_pretrained(model["name_or_path"])
