"""KTO (Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization")
on single answers labeled desirable or undesirable, with TRL's ``KTOTrainer``.

The loss, its KL reference point and its metrics are TRL's; two things are ours:

- Token ids: every example is encoded by :func:`~training.core.data.encode_completion`
  (the prompt as generation encodes it, the completion's ids, EOS), as the other runners do,
  and handed to the trainer already tokenized (TRL would re-tokenize prompt + completion as
  one text, whose ids can differ from what generation samples).
- Order: KTO estimates its KL reference point from each batch's answers paired with the
  other prompts of the batch (TRL rotates the completions by one within a batch), so TRL
  samples batches sequentially; the examples are shuffled here, once, from ``config.seed``.

Nothing here imports Django; torch, transformers and TRL are imported when a run starts.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from training.core.configs import KTOConfig
from training.core.data import RunData, UnpairedData, UnpairedExample, encode_completion
from training.core.reporting import ProgressReporter
from training.core.runners import RunResult, RunSpec, TrainingError

__all__ = ["encode_unpaired", "run_kto"]


def encode_unpaired(
    examples: Sequence[UnpairedExample], tokenizer: Any, *, use_chat_template: bool, max_length: int
) -> list[dict[str, Any]]:
    """``{"prompt_ids", "completion_ids", "label"}`` per example, the columns TRL's KTO reads."""
    encoded = []
    for example in examples:
        ids, prompt_length = encode_completion(
            tokenizer,
            example.prompt,
            example.completion,
            use_chat_template=use_chat_template,
            max_length=max_length,
        )
        encoded.append(
            {
                "prompt_ids": ids[:prompt_length],
                "completion_ids": ids[prompt_length:],
                "label": bool(example.desirable),
            }
        )
    return encoded


def _make_trainer_class() -> type:
    from trl import KTOTrainer

    class PretokenizedKTOTrainer(KTOTrainer):
        """TRL's KTOTrainer on examples that are already token ids."""

        def _prepare_dataset(
            self, dataset: Any, processing_class: Any, args: Any, name: str
        ) -> Any:
            if not self.calculate_KL:
                return dataset

            def add_kl_completion_ids(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
                # TRL's own pairing: (x_1, y_n), (x_2, y_1), ..., (x_n, y_{n-1}) per batch.
                completions = batch["completion_ids"]
                batch["KL_completion_ids"] = [completions[-1], *completions[:-1]]
                return batch

            return dataset.map(
                add_kl_completion_ids, batched=True, batch_size=args.per_device_train_batch_size
            )

    return PretokenizedKTOTrainer


def run_kto(spec: RunSpec, data: RunData, reporter: ProgressReporter) -> RunResult:
    """Train ``spec.model_path`` with KTO on ``data.train``; report TRL's metrics (``loss``,
    ``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``, ``kl``, ``logps/*``), evaluate
    on ``data.eval`` at the end (``eval/...``) and write ``final/`` (the causal LM, LoRA
    merged, and its tokenizer)."""
    import torch
    from datasets import Dataset
    from transformers import set_seed
    from trl import KTOConfig as TRLKTOConfig

    from training.core import hf

    config = spec.config
    if not isinstance(config, KTOConfig):
        raise TrainingError(f"a KTO run needs a KTOConfig, got {type(config).__name__}")
    if not isinstance(data, UnpairedData):
        raise TrainingError(f"a KTO run trains on UnpairedData, got {type(data).__name__}")
    labels = {example.desirable for example in data.train}
    if labels != {True, False}:
        raise TrainingError("KTO needs both desirable and undesirable answers to train on")
    device = hf.resolve_device(spec.device)
    if device.startswith("cuda:"):
        torch.cuda.set_device(torch.device(device))
    tokenizer = hf.load_tokenizer(spec.model_path)
    encode = {
        "tokenizer": tokenizer,
        "use_chat_template": spec.use_chat_template,
        "max_length": config.max_length,
    }
    train = encode_unpaired(data.train, **encode)
    random.Random(config.seed).shuffle(train)  # TRL samples KTO batches in order
    evaluation = encode_unpaired(data.eval, **encode)
    desirable = sum(e["label"] for e in train)
    reporter.log(
        f"{len(train)} training answers ({desirable} desirable, {len(train) - desirable} "
        f"undesirable), {len(evaluation)} held-out"
    )

    set_seed(config.seed)
    reporter.log(f"loading {spec.model_path} on {device}")
    model = hf.load_causal_lm(spec.model_path, tokenizer)
    model = hf.apply_lora(model, config, task="CAUSAL_LM")
    args = hf.training_arguments(
        config,
        spec.output_dir,
        device,
        arguments_class=TRLKTOConfig,
        beta=config.beta,
        desirable_weight=config.desirable_weight,
        undesirable_weight=config.undesirable_weight,
        max_length=config.max_length,
        disable_dropout=True,
    )
    bridge = hf.ReporterCallback(reporter)
    trainer = _make_trainer_class()(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train),
        eval_dataset=Dataset.from_list(evaluation) if evaluation else None,
        processing_class=tokenizer,
        callbacks=[bridge.make()],
    )
    stopped = hf.train(trainer, bridge, spec.resume_from)
    steps = int(trainer.state.global_step)
    if stopped:
        return hf.run_cancelled(spec.output_dir, steps)

    eval_metrics: dict[str, float] = {}
    if evaluation:
        results = trainer.evaluate(metric_key_prefix="eval")
        eval_metrics = {
            f"eval/{name.removeprefix('eval_')}": float(value)
            for name, value in results.items()
            if name.startswith("eval_")
            and isinstance(value, int | float)
            and not name.endswith(("_runtime", "_per_second"))
        }
        reporter.report(steps, steps, eval_metrics)
    return hf.run_finished(
        trainer, tokenizer, spec.output_dir, reporter, steps=steps, eval_metrics=eval_metrics
    )
