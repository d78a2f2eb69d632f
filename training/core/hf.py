"""Hugging Face plumbing shared by the Trainer-based runners (reward, DPO, SFT) and scoring.

Loading (device, tokenizer, causal LM, reward model, LoRA), the ``TrainingArguments`` a
:class:`~training.core.configs.CommonConfig` maps to, a ``TrainerCallback`` that forwards
progress to a :class:`~training.core.reporting.ProgressReporter` and stops on request, and
:func:`save_final`, which writes ``final/`` with any LoRA adapters merged.

Reward models are pooled the same way everywhere (:func:`reward_scores`). A decoder-only
LM (Llama, Qwen, GPT-2...) is read by its ``score`` head at each sequence's last real token,
found from the attention mask rather than from the pad token (which is often EOS, the very
token every sequence ends with). An encoder (BERT, DeBERTa, RoBERTa, DistilBERT, ELECTRA:
:data:`ENCODER_POOLING`) is read the way its architecture was pretrained to summarise a
sequence, by its own sequence-classification forward: the first token ([CLS] or <s>)
through its pooler or classification head. :func:`reward_architecture` tells which from the
config alone, before any weights load or any data is tokenised, and refuses the rest.

Nothing here imports Django; torch, transformers and peft are imported lazily where the
module-level import would cost seconds for callers that need none of them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.core.configs import CommonConfig
from training.core.reporting import ProgressReporter
from training.core.runners import (
    CHECKPOINTS,
    FINAL,
    RunResult,
    TrainingError,
    latest_checkpoint,
)

if TYPE_CHECKING:
    import torch
    from transformers import TrainingArguments

__all__ = [
    "ReporterCallback",
    "apply_lora",
    "disable_dropout",
    "check_model_path",
    "load_causal_lm",
    "load_reward_model",
    "load_tokenizer",
    "mean_over_processes",
    "parallel_wrapper",
    "ENCODER_POOLING",
    "pad_right",
    "resolve_device",
    "reward_architecture",
    "reward_scores",
    "save_final",
    "train",
    "training_arguments",
    "unwrap_model",
    "use_bf16",
]

# Trainer's own log entries that are bookkeeping rather than metrics.
_TRAINER_NOISE = frozenset({"epoch", "total_flos", "num_input_tokens_seen"})
_TRAINER_SUMMARY = frozenset(
    {"train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss"}
)


def resolve_device(device: str | None) -> str:
    """``device`` as given, or ``"cuda"`` when a GPU is available, else ``"cpu"``."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def use_bf16(device: str) -> bool:
    """Whether to train in bf16 mixed precision: only on a CUDA device that supports it."""
    import torch

    return (
        device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    )


def check_model_path(model_path: str) -> None:
    """Raise :class:`TrainingError` for a local-looking path that does not exist.

    A hub id (``org/name``) is left to ``from_pretrained``, which fails with its own message.
    """
    path = Path(model_path)
    looks_local = path.is_absolute() or model_path.startswith((".", "~")) or path.exists()
    if looks_local and not path.expanduser().is_dir():
        raise TrainingError(f"model folder {model_path} does not exist")


def load_tokenizer(model_path: str) -> Any:
    """The model's tokenizer; with no pad token, EOS pads (positions come from the mask)."""
    from transformers import AutoTokenizer

    check_model_path(model_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except OSError as exc:
        raise TrainingError(f"cannot load the tokenizer of {model_path}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise TrainingError(f"the tokenizer of {model_path} has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _dtype_kwargs(dtype: torch.dtype | None) -> dict[str, Any]:
    import torch

    return {"dtype": dtype if dtype is not None else torch.float32}


def load_causal_lm(model_path: str, tokenizer: Any, *, dtype: torch.dtype | None = None) -> Any:
    """``AutoModelForCausalLM`` in float32 (unless ``dtype``), its pad token set."""
    from transformers import AutoModelForCausalLM

    check_model_path(model_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path, **_dtype_kwargs(dtype))
    except OSError as exc:
        raise TrainingError(f"cannot load the model {model_path}: {exc}") from exc
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


# Encoder architectures a reward model may be built on: how each one's sequence classifier
# pools a sequence, and the modules of its head that a new classifier initialises (trained
# in full under LoRA, never given adapters).
ENCODER_POOLING: dict[str, tuple[str, tuple[str, ...]]] = {
    "bert": ("[CLS] through BERT's pooler (dense + tanh), then a linear head", ("classifier",)),
    "deberta": (
        "[CLS] through DeBERTa's context pooler, then a linear head",
        ("pooler", "classifier"),
    ),
    "deberta-v2": (
        "[CLS] through DeBERTa's context pooler, then a linear head",
        ("pooler", "classifier"),
    ),
    "roberta": (
        "<s> through RoBERTa's classification head (dense + tanh + linear)",
        ("classifier",),
    ),
    "xlm-roberta": ("<s> through the classification head (dense + tanh + linear)", ("classifier",)),
    "distilbert": (
        "[CLS] through pre_classifier (dense + ReLU), then a linear head",
        ("pre_classifier", "classifier"),
    ),
    "electra": ("[CLS] through ELECTRA's classification head", ("classifier",)),
}


def reward_architecture(model_path: str) -> str:
    """``"decoder"`` or ``"encoder"``: how a reward model built on ``model_path`` is read.

    Reads only the config, so an unsupported model is refused (with a :class:`TrainingError`
    that says what is supported) before its weights load or any data is tokenised.
    """
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    )

    check_model_path(model_path)
    try:
        config = AutoConfig.from_pretrained(model_path)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot read the model config of {model_path}: {exc}") from exc
    model_type = str(getattr(config, "model_type", ""))
    if model_type in ENCODER_POOLING:
        return "encoder"
    supported = (
        "reward models need a decoder-only LM (Llama, Qwen, Mistral, GPT-2...) or an "
        f"encoder ({', '.join(ENCODER_POOLING)})"
    )
    if getattr(config, "is_encoder_decoder", False):
        raise TrainingError(f"{model_path} is an encoder-decoder model ({model_type}); {supported}")
    if (
        model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
        or model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    ):
        raise TrainingError(
            f"{model_path} is a {model_type or 'model of unknown type'}; {supported}"
        )
    return "decoder"


def load_reward_model(
    model_path: str, tokenizer: Any, *, seed: int = 0, dtype: torch.dtype | None = None
) -> Any:
    """``AutoModelForSequenceClassification`` with one label, from a base model or a reward model.

    The base may be a decoder-only LM or an encoder (:func:`reward_architecture`). Loading a
    base creates a new head; it is initialised from ``seed`` so a run is reproducible. The
    config's pad token is set (pooling does not depend on it: see :func:`reward_scores`).
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    architecture = reward_architecture(model_path)
    fork_devices: list[int] = []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                model_path, num_labels=1, **_dtype_kwargs(dtype)
            )
        except OSError as exc:
            raise TrainingError(f"cannot load the model {model_path}: {exc}") from exc
    model.config.pad_token_id = tokenizer.pad_token_id
    if architecture == "decoder" and not hasattr(unwrap_model(model), "score"):
        raise TrainingError(
            f"{type(model).__name__} has no 'score' head; reward models need a decoder-only "
            f"LM with one (Llama, Qwen, Mistral, GPT-2...) or an encoder ({', '.join(ENCODER_POOLING)})"
        )
    return model


def _encoder_head(model: Any) -> tuple[str, ...] | None:
    """The head modules of an encoder reward model, or None for a decoder."""
    entry = ENCODER_POOLING.get(str(getattr(unwrap_model(model).config, "model_type", "")))
    return entry[1] if entry is not None else None


def disable_dropout(model: Any) -> Any:
    """Set every dropout of ``model`` to 0, in place; returns ``model``.

    For preference losses, as TRL does: a reward model should score a completion the same
    in training as when it is used, and DPO's policy and reference must see the same
    network at step 0 (otherwise the loss starts away from ``log 2`` at random).
    """
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        # Attention implementations apply dropout functionally, with this rate.
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0
    for name in (
        "attention_dropout",
        "hidden_dropout",
        "dropout",
        "resid_pdrop",
        "attn_pdrop",
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
    ):
        if isinstance(getattr(model.config, name, None), float):
            setattr(model.config, name, 0.0)
    return model


def apply_lora(model: Any, config: CommonConfig, *, task: str) -> Any:
    """Wrap ``model`` in LoRA adapters when ``config.use_lora``; otherwise return it as is.

    ``task`` is ``"CAUSAL_LM"`` or ``"SEQ_CLS"``. A sequence classifier's new head (a
    decoder's ``score``; an encoder's classifier, and its pooler where the classifier brings
    one: :data:`ENCODER_POOLING`) has no pretrained weights to adapt, so it is trained in
    full (``modules_to_save``) and gets no adapter.
    """
    if not config.use_lora:
        return model
    from peft import LoraConfig, get_peft_model

    head = list(_encoder_head(model) or ("score",)) if task == "SEQ_CLS" else []
    targets: str | list[str]
    if config.lora_target_modules.strip() == "all-linear":
        targets = "all-linear"
    else:
        targets = [m.strip() for m in config.lora_target_modules.split(",") if m.strip()]
    if head and isinstance(targets, list):
        targets = [t for t in targets if t not in head]
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        exclude_modules=head or None,
        modules_to_save=head or None,
        task_type=task,
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:  # e.g. a target module the model does not have
        raise TrainingError(f"cannot add LoRA adapters: {exc}") from exc


def unwrap_model(model: Any) -> Any:
    """The ``transformers`` model inside a peft wrapper (adapters stay injected) and inside
    a DDP, FSDP or DeepSpeed wrapper (:func:`parallel_wrapper`), or itself."""
    inner = model.module if parallel_wrapper(model) else model
    get_base = getattr(inner, "get_base_model", None)
    return get_base() if callable(get_base) else inner


def parallel_wrapper(model: Any) -> bool:
    """Whether ``model`` is a multi-process wrapper (DDP, FSDP, a DeepSpeed engine) whose
    ``module`` is the model: its forward must be called for gradients to be averaged (DDP)
    or parameters gathered (FSDP, ZeRO-3)."""
    import torch

    inner = getattr(model, "module", None)
    return isinstance(model, torch.nn.Module) and isinstance(inner, torch.nn.Module)


def _through_wrapper(wrapper: Any, compute: Any) -> Any:
    """``compute()``, run as the forward of ``wrapper.module`` by calling ``wrapper()``.

    A computation that reads a model's parts (its backbone, then its head at chosen
    positions) rather than calling the model must still pass through the DDP/FSDP/DeepSpeed
    wrapper's forward, which arms the gradient all-reduce or gathers sharded parameters.
    The module's forward is replaced for this one call: the replacement puts the real one
    back before computing, so ``compute`` may call the module itself.
    """
    module = wrapper.module

    def forward_once(*args: Any, **kwargs: Any) -> Any:
        del module.forward
        return compute()

    module.forward = forward_once
    try:
        return wrapper()
    finally:
        module.__dict__.pop("forward", None)


def pad_right(
    sequences: list[list[int]], pad_id: int, device: Any = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids [B, T], attention_mask [B, T])`` with every sequence padded on the right."""
    import torch

    length = max((len(s) for s in sequences), default=0)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    if device is not None:
        ids, mask = ids.to(device), mask.to(device)
    return ids, mask


def reward_scores(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """The reward model's score of each right-padded sequence: ``[B, T] -> [B]`` float32.

    A decoder: the backbone runs once and the score head is applied at each row's last real
    token (``attention_mask.sum(-1) - 1``), exactly what ``AutoModelForSequenceClassification``
    computes when padding is unambiguous, and right even when the pad token is EOS. An
    encoder: its own sequence-classification forward, which pools the first token as its
    architecture does (:data:`ENCODER_POOLING`). Works on a plain model or on a
    peft-wrapped one (adapters are injected in place).
    """
    import torch

    if parallel_wrapper(model):
        return _through_wrapper(
            model, lambda: reward_scores(model.module, input_ids, attention_mask)
        )
    inner = unwrap_model(model)
    if _encoder_head(inner) is not None:
        logits = inner(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits[:, 0].float()
    backbone = getattr(inner, inner.base_model_prefix)
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    last = attention_mask.long().sum(dim=-1) - 1
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    pooled = hidden[rows, last.to(hidden.device)]
    return inner.score(pooled).squeeze(-1).float()


def training_arguments(
    config: CommonConfig,
    output_dir: Path,
    device: str,
    *,
    arguments_class: type | None = None,
    **overrides: Any,
) -> TrainingArguments:
    """``transformers.TrainingArguments`` for ``config``, checkpointing under ``output_dir``.

    Checkpoints go to ``output_dir/checkpoints/checkpoint-<step>`` with the optimizer,
    scheduler and RNG state, so a resumed run continues where it stopped. ``save_steps=0``
    saves no periodic checkpoint (a stop request still saves one); ``max_grad_norm=0``
    turns clipping off; bf16 mixed precision only on a CUDA device with bf16. Under
    torchrun, ``config.batch_size`` is split evenly among the ``config.world_size``
    processes (each takes its share of every global batch) and ``config.parallelism``
    becomes the Trainer's FSDP or DeepSpeed settings.
    ``arguments_class``: a ``TrainingArguments`` subclass (a TRL trainer's config) to build
    instead, with its own fields among ``overrides``.
    """
    from transformers import TrainingArguments

    from training.core.launch import parallelism_arguments

    periodic = config.save_steps > 0
    per_device = config.batch_size // config.world_size
    kwargs: dict[str, Any] = {
        "output_dir": str(Path(output_dir) / CHECKPOINTS),
        "learning_rate": config.learning_rate,
        "num_train_epochs": config.num_epochs,
        "max_steps": config.max_steps if config.max_steps > 0 else -1,
        "per_device_train_batch_size": per_device,
        "per_device_eval_batch_size": per_device,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "max_grad_norm": config.max_grad_norm if config.max_grad_norm > 0 else 0.0,
        "seed": config.seed,
        "data_seed": config.seed,
        "logging_strategy": "steps",
        "logging_steps": config.logging_steps,
        "save_strategy": "steps" if periodic else "no",
        "save_steps": config.save_steps if periodic else 500,
        "save_only_model": False,
        "eval_strategy": "no",
        "report_to": "none",
        "bf16": use_bf16(device),
        "use_cpu": device == "cpu",
        "gradient_checkpointing": config.gradient_checkpointing,
        "remove_unused_columns": False,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": device != "cpu",
        **parallelism_arguments(config),
    }
    kwargs.update(overrides)
    return (arguments_class or TrainingArguments)(**kwargs)  # type: ignore[no-any-return]


class ReporterCallback:
    """Builds a ``TrainerCallback`` bridging a Trainer to a :class:`ProgressReporter`.

    Every Trainer log entry becomes ``reporter.report(step, max_steps, metrics)``, keeping
    the metrics (house names) and dropping bookkeeping (``epoch``, ``total_flos``); the
    end-of-training summary becomes a log line. After each optimizer step, and right after
    each report, the reporter is asked whether to stop; if so, the Trainer saves a
    checkpoint of that step and stops, and :attr:`stopped` is set. Use :meth:`make` to get
    the callback object.
    """

    def __init__(self, reporter: ProgressReporter) -> None:
        self.reporter = reporter
        self.stopped = False

    def make(self) -> Any:
        from transformers import TrainerCallback

        bridge = self

        class _Callback(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
                if bridge.on_log(state, logs or {}):
                    bridge.stop(control)  # the Trainer saves right after logging
                return control

            def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
                if bridge.reporter.should_stop():
                    bridge.stop(control)
                return control

        return _Callback()

    def stop(self, control: Any) -> None:
        self.stopped = True
        control.should_save = True
        control.should_training_stop = True

    def on_log(self, state: Any, logs: dict[str, Any]) -> bool:
        """Report a training log entry; True when the reporter now asks to stop."""
        if any(name in logs for name in _TRAINER_SUMMARY):
            if "train_runtime" in logs:
                self.reporter.log(f"training took {float(logs['train_runtime']):.1f} s")
            return False
        metrics = {
            name: float(value)
            for name, value in logs.items()
            if name not in _TRAINER_NOISE
            and isinstance(value, int | float)
            and not name.startswith("eval_")
            and math.isfinite(float(value))
        }
        if not metrics:
            return False
        self.reporter.report(int(state.global_step), int(state.max_steps or 0), metrics)
        return not self.stopped and self.reporter.should_stop()


def train(trainer: Any, bridge: ReporterCallback, resume_from: Path | None) -> bool:
    """Run ``trainer.train``, resuming from ``resume_from`` if given; True if it was stopped.

    A stopped run has saved a checkpoint of the step it stopped at.
    """
    resume = None
    if resume_from is not None:
        if not Path(resume_from).is_dir():
            raise TrainingError(f"checkpoint {resume_from} does not exist")
        resume = str(resume_from)
        bridge.reporter.log(f"resuming from {Path(resume_from).name}")
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # it prints every log entry to stdout
    trainer.train(resume_from_checkpoint=resume)
    if bridge.stopped:
        bridge.reporter.log(f"stopped at step {trainer.state.global_step}; checkpoint saved")
    return bridge.stopped


def save_final(model: Any, tokenizer: Any, path: Path) -> Path:
    """Write ``model`` (LoRA merged into its weights) and ``tokenizer`` to ``path`` (safetensors).

    The result is a plain ``save_pretrained`` folder with no adapter files. Merging
    unloads the adapters from ``model``: do not train it further afterwards.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(str(path), safe_serialization=True)
    tokenizer.save_pretrained(str(path))
    return path


def mean_over_processes(trainer: Any, values: torch.Tensor) -> torch.Tensor:
    """``values`` averaged over the processes of a multi-process run (itself in one process).

    A collective: every process must call it at the same point, as the Trainer's ``log``
    is called on every process after the same steps.
    """
    if trainer.accelerator.num_processes == 1:
        return values
    averaged = trainer.accelerator.reduce(values.to(trainer.args.device), reduction="mean")
    return averaged.cpu()  # type: ignore[no-any-return]


def run_cancelled(output_dir: Path, steps: int) -> RunResult:
    """The result of a Trainer run stopped at ``steps``: its latest checkpoint, no model."""
    return RunResult(
        status="cancelled",
        steps=steps,
        final_dir=None,
        checkpoint_dir=latest_checkpoint(output_dir),
    )


def run_finished(
    trainer: Any,
    tokenizer: Any,
    output_dir: Path,
    reporter: ProgressReporter,
    *,
    steps: int,
    eval_metrics: dict[str, float],
) -> RunResult:
    """Save a finished Trainer run's model in ``output_dir/final`` and say it succeeded."""
    final_dir = Path(output_dir) / FINAL
    reporter.log(f"saving the trained model to {final_dir}")
    accelerator = trainer.accelerator
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
        # Sharded weights: gathered by every rank, written by rank 0.
        state = accelerator.get_state_dict(trainer.model_wrapped)
        if accelerator.is_main_process:
            final_dir.mkdir(parents=True, exist_ok=True)
            unwrap_model(trainer.model).save_pretrained(
                str(final_dir), state_dict=state, safe_serialization=True
            )
            tokenizer.save_pretrained(str(final_dir))
    elif accelerator.is_main_process:
        save_final(trainer.model, tokenizer, final_dir)
    accelerator.wait_for_everyone()
    return RunResult(
        status="succeeded",
        steps=steps,
        final_dir=final_dir,
        checkpoint_dir=latest_checkpoint(output_dir),
        eval_metrics=eval_metrics,
    )
