"""Building or loading an encoder (of a model resolved by `xitt.core.cell`), freezing it."""

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn

from xitt import XittError
from xitt.core.cell import is_local_path
from xitt.core.validate import FREEZING_MODES



def missing_model_assets(model: Mapping[str, Any]) -> list[str]:
    """What an offline machine lacks to load this model (empty when all is there)."""
    if model["source"] == "scratch":
        return []
    name = model["name_or_path"]
    if is_local_path(name):
        return [] if Path(name, "config.json").is_file() else [f"local model folder {name} (no config.json)"]
    from huggingface_hub import constants, try_to_load_from_cache

    if not constants.HF_HUB_OFFLINE:
        return []
    cached = try_to_load_from_cache(name, "config.json")
    return [] if isinstance(cached, str) else [f"model {name}"]


def build_encoder(model: Mapping[str, Any], vocab_size: int, pad_token_id: int, seed: int) -> nn.Module:
    """The pretrained encoder a cell starts from: loaded from the hub or a folder, or for
    `source: scratch` built from its architecture with weights drawn from `seed`."""
    if model["source"] == "scratch":
        hidden = int(model["hidden_size"])
        # The family's architecture is a transformers model_type (xlm-roberta, modernbert):
        # its own config class, so no architecture is named in code.
        config = transformers.AutoConfig.for_model(
            str(model["architecture"]), vocab_size=vocab_size, hidden_size=hidden,
            num_hidden_layers=int(model["num_hidden_layers"]), num_attention_heads=int(model["num_attention_heads"]),
            intermediate_size=4 * hidden, max_position_embeddings=514, pad_token_id=pad_token_id,
            **dict(model.get("config") or {}))
        torch.manual_seed(seed)
        encoder = transformers.AutoModel.from_config(config)
    else:
        encoder = load_encoder(model["name_or_path"], model.get("encoder_class", "AutoModel"))
    if model.get("keep_layers"):
        keep_bottom_layers(encoder, int(model["keep_layers"]))
    return encoder


def keep_bottom_layers(encoder: nn.Module, keep: int) -> None:
    """Drop all but the bottom `keep` transformer layers of a pretrained encoder (as in
    layer-dropping studies: the smaller model is still real pretrained weights). The config
    says so too, so a stored artifact of it loads with `keep` layers."""
    layers = _layer_list(encoder)
    if not 1 <= keep <= len(layers):
        raise XittError(f"model.keep_layers={keep} but the encoder has {len(layers)} layers; pick 1..{len(layers)}.")
    full = len(layers)
    del layers[keep:]
    for name in ("num_hidden_layers", "num_layers", "n_layers"):
        if hasattr(encoder.config, name):
            setattr(encoder.config, name, keep)
    # Settings given per layer (ModernBERT's `layer_types`: which layers attend globally)
    # keep the kept layers' entries, or the config no longer validates when it is saved.
    for name, value in vars(encoder.config).items():
        if isinstance(value, list) and len(value) == full and name != "architectures":
            setattr(encoder.config, name, value[:keep])


def load_encoder(name_or_path: str | Path, encoder_class: str = "AutoModel") -> nn.Module:
    """Load an encoder with the family's class: `AutoModel` for encoder-only families, an
    encoder-only class such as `MT5EncoderModel` for encoder-decoder checkpoints (whose
    AutoModel would need decoder inputs). A checkpoint saved from such a class (an ITT or
    target artifact) says so in its config and loads with it under `AutoModel` too."""
    loader = getattr(transformers, encoder_class, None)
    if loader is None:
        raise XittError(f"transformers has no class '{encoder_class}' (model.encoder_class); use AutoModel "
                        f"or an encoder-only class such as MT5EncoderModel or T5EncoderModel.")
    try:
        if encoder_class == "AutoModel":
            config = transformers.AutoConfig.from_pretrained(str(name_or_path))
            saved_as = [name for name in config.architectures or [] if name.endswith("EncoderModel")]
            if saved_as and hasattr(transformers, saved_as[0]):
                loader = getattr(transformers, saved_as[0])
            elif config.is_encoder_decoder:
                family = type(config).__name__.removesuffix("Config")
                raise XittError(
                    f"'{name_or_path}' is an encoder-decoder ({family}); xitt trains its encoder only. "
                    f"Load it with `+model.encoder_class={family}EncoderModel model.pooling=mean` "
                    f"(or use the family config, e.g. `model=mt5`)."
                )
        # Full precision, whatever the checkpoint's storage dtype: transformers 5 would keep
        # an fp16 checkpoint in fp16 ("auto"), and AdamW on fp16 weights loses the small
        # updates. Mixed or reduced precision is the trainer's `precision` setting.
        return loader.from_pretrained(str(name_or_path), dtype=torch.float32)
    except pickle.UnpicklingError as error:
        # A `.bin` checkpoint is a pickle: torch loads it weights-only (tensors and plain
        # containers), and this one holds something else, which only code could rebuild.
        needs = re.search(r"GLOBAL ([\w.]+)", str(error))
        raise XittError(
            f"Refusing to load the encoder '{name_or_path}': its PyTorch (.bin) weights hold objects besides "
            f"tensors{f' (it asks for {needs.group(1)})' if needs else ''}, and rebuilding them would run code "
            f"from the file. xitt loads weights only. Use a checkpoint that "
            f"ships its weights as safetensors (model.safetensors) or as plain tensors, e.g. another revision "
            f"of the model from its publisher."
        ) from None
    except OSError as error:
        raise XittError(
            f"Could not load the encoder '{name_or_path}': {error}. If this machine has no "
            f"network, fill the Hugging Face cache first with `python -m xitt.prepare <the same "
            f"overrides>` on one that has, or point `model.name_or_path` at a local checkpoint."
        ) from None


def count_parameters(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def _layer_list(encoder: nn.Module) -> nn.ModuleList:
    """The stack of transformer layers, whatever the family calls it (`encoder.layer`,
    `encoder.block`, `layer`, `transformer.layer`): the first ModuleList as long as the
    config's layer count (T5 blocks hold ModuleLists of sub-layers too), else the longest."""
    candidates = [module for module in encoder.modules() if isinstance(module, nn.ModuleList)]
    if not candidates:
        raise XittError(f"Cannot find the transformer layers of {type(encoder).__name__} to freeze.")
    layers = getattr(getattr(encoder, "config", None), "num_hidden_layers", None)
    exact = [module for module in candidates if len(module) == layers]
    return exact[0] if exact else max(candidates, key=len)


def apply_freezing(encoder: nn.Module, mode: str, k: int = 0) -> None:
    """Freeze part of the encoder: `embeddings`, `bottom_k` (embeddings + lowest k
    layers) or `probe` (all of it); `none` trains everything."""
    if mode not in FREEZING_MODES:
        raise XittError(f"Unknown freezing mode '{mode}'; choose one of {', '.join(FREEZING_MODES)}.")
    if mode == "none":
        return
    if mode == "probe":
        encoder.requires_grad_(False)
        return
    # The embedding part, whatever a family names it (`embeddings`, `word_embedding`, `shared`,
    # ModernBERT's `embeddings.tok_embeddings` and norm): the input embeddings and every weight
    # registered before the first transformer layer (positions, token types, their norm).
    layers = _layer_list(encoder)
    encoder.get_input_embeddings().requires_grad_(False)
    first_layer_weight = next(layers.parameters())
    for parameter in encoder.parameters():
        if parameter is first_layer_weight:
            break
        parameter.requires_grad_(False)
    if mode == "bottom_k":
        if not 0 <= k <= len(layers):
            raise XittError(f"freezing.k={k} but the encoder has {len(layers)} layers; pick 0..{len(layers)}.")
        for layer in layers[:k]:
            layer.requires_grad_(False)
