"""Will a stage fit the GPUs, and how long will it take? Estimates from first principles,
for choosing trainer settings before any GPU is spent (`python -m xitt.plan`, and a
warning when a GPU grid is launched).

Memory per GPU = model states + activations + a fixed overhead:

- Model states, bytes per parameter (Rajbhandari et al. 2020, "ZeRO", section 3): with
  fp32 master weights and Adam, 4 (weights) + 4 (gradients) + 8 (Adam's two moments) = 16
  for `32-true` and Lightning's `*-mixed` (it keeps fp32 weights and autocasts). DDP adds
  a 4-byte gradient bucket copy. FSDP full sharding and DeepSpeed stage 3 divide all 16 by
  the GPU count; DeepSpeed stage 2 keeps 2-byte (bf16) weights and gradients whole and
  divides the 12 bytes of fp32 master weights and Adam states. Frozen parameters
  (`freezing=...`) have no gradients or Adam states.
- Activations kept for the backward pass, per layer (Korthikanti et al. 2022, "Reducing
  Activation Recomputation in Large Transformer Models", eq. 1), in 16-bit:
  s*b*h*(11 + 3 + 4*ffn/h) bytes (34*s*b*h for ffn = 4h; gated FFNs, as in mT5, keep half as
  much again of the FFN part), with sequence length s, batch per GPU b, hidden size h. The
  attention matrices (5*a*s^2*b) are not kept: PyTorch's fused attention (SDPA) recomputes
  them. With activation checkpointing only each layer's input (2*s*b*h) is kept, plus one
  layer's full activations during its recomputation. Doubled for 32-bit training.
- Overhead: 2.5 GB for the CUDA context, kernels' workspace and allocator fragmentation,
  plus 1 GB of communication buffers for FSDP / DeepSpeed, plus the gathered weights of
  the two transformer layers FSDP / stage 3 hold at a time.

The estimates are upper bounds in one respect: dynamic padding makes most batches shorter
than `max_length`, which is what s is taken to be.

Throughput (for GPU-hours): training costs about 6 FLOPs per (non-embedding) parameter
per token (Kaplan et al. 2020, "Scaling Laws for Neural Language Models", section 2.1),
and evaluation 2. `GPU_PEAK_TFLOPS` holds the dense bf16 peak of common GPUs (vendor
data sheets) and `MODEL_FLOPS_UTILISATION` the fraction of it that encoder fine-tuning
reaches (0.35: typical of Hugging Face encoders with SDPA and bf16 at sequence length
128-256). These are derived, not measured: replace `MEASURED_EXAMPLES_PER_S` entries with
measurements from your cluster when you have them, and they take precedence.
"""

import dataclasses
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from xitt import XittError
from xitt.core.cell import Cell, Stage
from xitt.core.jobs import uses_gpu

GB = 1e9
CUDA_OVERHEAD_GB = 2.5
SHARDING_BUFFERS_GB = 1.0
DEFAULT_GPU_MEMORY_GB = 80.0
MODEL_FLOPS_UTILISATION = 0.35
GPU_PEAK_TFLOPS = {"a100": 312.0, "h100": 989.0, "h200": 989.0, "a6000": 155.0, "v100": 125.0}
DEFAULT_GPU = "a100"
# (family, size, gpu) -> training examples per second per GPU at the task's max_length,
# measured. Empty: nothing measured yet, the FLOPs model is used (see the module docstring).
MEASURED_EXAMPLES_PER_S: dict[tuple[str, str, str], float] = {}


@dataclass(frozen=True)
class Architecture:
    """What the estimates need to know about an encoder."""

    params: int  # all encoder parameters, embeddings included
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    gated_ffn: bool = False  # mT5's gated GELU: two input projections
    source: str = ""

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def layer_params(self) -> int:
        """Parameters of one transformer layer."""
        return (self.params - self.embedding_params) // self.layers


def bert_like(hidden: int, layers: int, heads: int, ffn: int, vocab: int, positions: int = 514,
              source: str = "") -> Architecture:
    """A BERT/RoBERTa-style encoder's size from its shape (embeddings with positions,
    attention and FFN with biases, two layer norms per layer)."""
    layer = 4 * hidden * hidden + 4 * hidden + 2 * hidden * ffn + ffn + hidden + 4 * hidden
    params = (vocab + positions + 1) * hidden + 2 * hidden + layers * layer
    return Architecture(params, hidden, layers, heads, ffn, vocab, False, source)


def architecture(model: dict[str, Any]) -> Architecture:
    """The architecture of a resolved model config, with only its bottom `keep_layers`
    layers when the model keeps fewer (a depth ladder)."""
    full = _full_architecture(model)
    keep = model.get("keep_layers")
    if not keep or int(keep) >= full.layers:
        return full
    return dataclasses.replace(full, params=full.embedding_params + int(keep) * full.layer_params, layers=int(keep),
                               source=f"{full.source}, bottom {keep} of {full.layers} layers")


def _full_architecture(model: dict[str, Any]) -> Architecture:
    """The architecture of a resolved model config (`xitt.core.cell.resolve_model`): the
    `shape` its family file declares for the size, else the shape of the tiny models'
    config, else a local checkpoint's config.json (`model=hf`, a depth ladder's folder)."""
    if model.get("shape"):
        shape = dict(model["shape"])
        return Architecture(int(float(shape.pop("params"))), source=f"conf/model/{model['family']}.yaml",
                            **{name: int(value) if name != "gated_ffn" else bool(value) for name, value in shape.items()})
    if model.get("source") == "scratch":
        hidden = int(model["hidden_size"])
        vocab = int(model.get("tokenizer", {}).get("vocab_size", 2000))
        return bert_like(hidden, int(model["num_hidden_layers"]), int(model["num_attention_heads"]), 4 * hidden,
                         vocab, source="built from its config (random weights)")
    config = Path(str(model.get("name_or_path", ""))) / "config.json"
    if config.is_file():
        c = json.loads(config.read_text())
        hidden = int(c.get("hidden_size") or c["d_model"])
        return bert_like(hidden, int(c.get("num_hidden_layers") or c["num_layers"]),
                         int(c.get("num_attention_heads") or c["num_heads"]),
                         int(c.get("intermediate_size") or c.get("d_ff") or 4 * hidden), int(c["vocab_size"]),
                         source=str(config))
    raise XittError(
        f"The planner does not know the size of model family '{model['family']}' size '{model['size']}'. "
        f"Declare it in conf/model/{model['family']}.yaml under `sizes.{model['size']}.shape` ({{params, hidden, "
        f"layers, heads, ffn, vocab}}, from the checkpoint's config.json and model card), or point "
        f"`model.name_or_path` at a local checkpoint with a config.json."
    )


@dataclass(frozen=True)
class Parallelism:
    """How a trainer config spreads a model over its GPUs."""

    name: str  # single, ddp, fsdp, deepspeed_stage2, deepspeed_stage3
    gpus: int
    shards_weights: bool
    shards_optimizer: bool
    offload_optimizer: bool = False

    @classmethod
    def from_trainer(cls, trainer: dict[str, Any]) -> "Parallelism":
        gpus = int(trainer.get("devices") or 1) * int(trainer.get("num_nodes") or 1)
        strategy = trainer.get("strategy") or "auto"
        target = strategy.get("_target_", "") if isinstance(strategy, dict) else str(strategy)
        if "DeepSpeed" in target or target.startswith("deepspeed"):
            stage = int(strategy.get("stage", 2)) if isinstance(strategy, dict) else int(target[-1:] or 2)
            offload = bool(strategy.get("offload_optimizer", False)) if isinstance(strategy, dict) else False
            return cls(f"deepspeed_stage{stage}", gpus, stage >= 3, stage >= 1, offload)
        if "FSDP" in target or target == "fsdp":
            sharding = strategy.get("sharding_strategy", "FULL_SHARD") if isinstance(strategy, dict) else "FULL_SHARD"
            full = str(sharding) in ("FULL_SHARD", "HYBRID_SHARD")
            return cls("fsdp", gpus, full, True)
        return cls("ddp" if gpus > 1 else "single", gpus, False, False)


@dataclass
class MemoryEstimate:
    """Estimated peak memory of one GPU while training, in GB, by part."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    overhead: float
    batch_per_gpu: int
    parallelism: str
    gpus: int
    gpu_memory_gb: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.overhead

    @property
    def fits(self) -> bool:
        return self.total <= self.gpu_memory_gb

    def describe(self) -> str:
        return (f"{self.total:.1f} GB of {self.gpu_memory_gb:.0f} GB per GPU "
                f"(weights {self.weights:.1f}, gradients {self.gradients:.1f}, optimizer {self.optimizer:.1f}, "
                f"activations {self.activations:.1f}, overhead {self.overhead:.1f}; {self.parallelism} over "
                f"{self.gpus} GPU(s), batch {self.batch_per_gpu} per GPU)")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": round(self.total, 2), "fits": self.fits}


def trainable_share(arch: Architecture, freezing: dict[str, Any] | None) -> float:
    """The share of the encoder's parameters that gets gradients under a freezing mode."""
    mode = (freezing or {}).get("mode", "none")
    if mode == "probe":
        return 0.0
    if mode in ("embeddings", "bottom_k"):
        frozen_layers = int(freezing.get("k", 0)) if mode == "bottom_k" else 0
        frozen = arch.embedding_params + min(frozen_layers, arch.layers) * arch.layer_params
        return max(0.0, 1 - frozen / arch.params)
    return 1.0


def estimate_memory(arch: Architecture, parallelism: Parallelism, *, precision: str, batch_size: int,
                    seq_len: int, activation_checkpointing: bool = False, trainable: float = 1.0,
                    gpu_memory_gb: float = DEFAULT_GPU_MEMORY_GB) -> MemoryEstimate:
    """Peak training memory per GPU; `batch_size` is the batch of one optimizer step over
    all GPUs (as in the task's hparams), `trainable` the share of parameters that train."""
    n, gpus = arch.params, parallelism.gpus
    half_weights = precision in ("bf16-true", "16-true", "bf16", "16")
    if parallelism.name.startswith("deepspeed"):
        # bf16 weights and gradients on the GPU, fp32 master weights + Adam in the partitions
        weights = 2 * n / (gpus if parallelism.shards_weights else 1)
        gradients = 2 * n * trainable / (gpus if parallelism.shards_weights else 1)
        optimizer = 12 * n * trainable / gpus
        if parallelism.offload_optimizer:
            optimizer = 0.0
    else:
        weight_bytes = 2 if half_weights else 4
        shard = gpus if parallelism.shards_weights else 1
        weights = weight_bytes * n / shard
        gradients = weight_bytes * n * trainable / shard
        if parallelism.name == "ddp":
            gradients *= 2  # DDP's gradient buckets hold a second copy
        optimizer = 2 * weight_bytes * n * trainable / (gpus if parallelism.shards_optimizer else 1)

    batch_per_gpu = math.ceil(batch_size / gpus)
    activation_bytes = 4 if precision in ("32-true", "32", "64-true") else 2
    ffn_factor = (4 * arch.ffn / arch.hidden) * (1.5 if arch.gated_ffn else 1.0)
    per_layer = seq_len * batch_per_gpu * arch.hidden * (11 + 3 + ffn_factor) * activation_bytes / 2
    if trainable == 0.0:
        activations = per_layer  # a frozen encoder keeps nothing for a backward pass
    elif activation_checkpointing:
        activations = arch.layers * 2 * seq_len * batch_per_gpu * arch.hidden * activation_bytes / 2 + per_layer
    else:
        activations = arch.layers * per_layer

    overhead = CUDA_OVERHEAD_GB * GB
    if parallelism.shards_weights or parallelism.name.startswith(("fsdp", "deepspeed")):
        overhead += SHARDING_BUFFERS_GB * GB
    if parallelism.shards_weights:
        overhead += 2 * arch.layer_params * 2  # two gathered layers in bf16
    return MemoryEstimate(weights / GB, gradients / GB, optimizer / GB, activations / GB, overhead / GB,
                          batch_per_gpu, parallelism.name, gpus, float(gpu_memory_gb))


def training_examples_per_s(arch: Architecture, seq_len: int, gpu: str = DEFAULT_GPU,
                            family_size: tuple[str, str] | None = None) -> float:
    """Training examples per second on one GPU: measured when the table has it, else
    from the FLOPs model (6 FLOPs per non-embedding parameter per token)."""
    if family_size and (*family_size, gpu) in MEASURED_EXAMPLES_PER_S:
        return MEASURED_EXAMPLES_PER_S[(*family_size, gpu)]
    flops_per_example = 6 * (arch.params - arch.embedding_params) * seq_len
    return MODEL_FLOPS_UTILISATION * GPU_PEAK_TFLOPS[gpu] * 1e12 / flops_per_example


def stage_estimate(cfg: DictConfig, model: dict[str, Any], stage: Stage) -> MemoryEstimate:
    """The memory estimate of one training stage of a cell, under the cell's trainer config."""
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    arch = architecture(model)
    return estimate_memory(
        arch, Parallelism.from_trainer(trainer), precision=str(trainer.get("precision", "32-true")),
        batch_size=int(stage.hparams["batch_size"]), seq_len=int(stage.hparams["max_length"]),
        activation_checkpointing=bool(trainer.get("activation_checkpointing", False)),
        trainable=trainable_share(arch, stage.freezing),
        gpu_memory_gb=float(trainer.get("gpu_memory_gb") or DEFAULT_GPU_MEMORY_GB))


def memory_warnings(cfg: DictConfig) -> list[str]:
    """One line per training stage of the cell that will not fit its GPUs (none on CPU)."""
    if not uses_gpu(cfg.trainer):
        return []
    cell = Cell.from_config(cfg)
    warnings = []
    for stage in cell.stages():
        if not stage.trains:
            continue
        estimate = stage_estimate(cfg, cell.model, stage)
        if not estimate.fits:
            warnings.append(
                f"{cell.name} {stage.name}: needs about {estimate.describe()}. It will not fit: use more GPUs "
                f"(`trainer.devices`), a sharding trainer (`trainer=fsdp`, `trainer=deepspeed_stage3`), "
                f"`trainer.activation_checkpointing=true`, or a smaller batch; docs/scaling.md has settings "
                f"per size.")
    return warnings
