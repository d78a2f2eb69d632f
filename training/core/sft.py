"""Supervised fine-tuning of a causal LM on prompt + completion, with a plain ``Trainer``.

Each example is tokenized exactly as generation reads it
(:func:`~training.core.data.encode_completion`: prompt ids, completion ids, EOS), so the
model learns to continue the prompts it will be sampled on and to stop. With
``config.completion_only_loss`` the prompt's tokens are masked out of the loss (labels
``-100``). The model computes the usual next-token cross-entropy, averaged over the
labelled tokens of all micro-batches of an optimizer step (the Trainer counts them, so
gradient accumulation does not change the loss). The log-probabilities come from
:func:`~training.core.logps.causal_lm_logps`, chunk by chunk over the labelled tokens,
so the ``[N, T, V]`` float32 logits the model's own loss would build never exist.

TRL's ``SFTTrainer`` is not used: it would re-tokenize through its own path (the token ids
must match generation's) and costs seconds to import, for nothing this needs.

Nothing here imports Django; torch and transformers are imported when a run starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from training.core.configs import SFTConfig
from training.core.data import RunData, SFTData, SFTExample, encode_completion
from training.core.reporting import ProgressReporter
from training.core.runners import RunResult, RunSpec, TrainingError

__all__ = ["encode_examples", "run_sft"]

IGNORE_INDEX = -100


def encode_examples(
    examples: Sequence[SFTExample],
    tokenizer: Any,
    *,
    use_chat_template: bool,
    max_length: int,
    completion_only_loss: bool,
) -> list[dict[str, list[int]]]:
    """``{"input_ids", "labels"}`` per example; prompt labels are ``-100`` when masked."""
    encoded = []
    for example in examples:
        ids, prompt_length = encode_completion(
            tokenizer,
            example.prompt,
            example.completion,
            use_chat_template=use_chat_template,
            max_length=max_length,
        )
        labels = list(ids)
        if completion_only_loss:
            labels[:prompt_length] = [IGNORE_INDEX] * prompt_length
        encoded.append({"input_ids": ids, "labels": labels})
    return encoded


def _collate(examples: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, Any]:
    import torch

    from training.core.hf import pad_right

    input_ids, attention_mask = pad_right([e["input_ids"] for e in examples], pad_id)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for row, example in enumerate(examples):
        labels[row, : len(example["labels"])] = torch.tensor(example["labels"])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _make_trainer_class() -> type:
    from transformers import Trainer

    class ChunkedSFTTrainer(Trainer):
        """A Trainer whose next-token loss never builds the ``[N, T, V]`` logits."""

        def compute_loss(  # type: ignore[override]
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            """The model's own loss, ``-sum(log p) / num_items_in_batch`` (or / this batch's
            labelled tokens), scaled as ``Trainer.compute_loss`` scales it."""
            from training.core.logps import causal_lm_logps

            logps, counts = causal_lm_logps(
                model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
            )
            if num_items_in_batch is None:
                loss = -logps.sum() / counts.sum().clamp(min=1)
            else:
                loss = -logps.sum() / num_items_in_batch
                if self.args.average_tokens_across_devices and self.model_accepts_loss_kwargs:
                    # As the Trainer does: the count is over all processes, DDP averages.
                    loss = loss * (self.accelerator.num_processes // self.get_tp_size())
            return (loss, {"loss": loss.detach()}) if return_outputs else loss

    return ChunkedSFTTrainer


def run_sft(spec: RunSpec, data: RunData, reporter: ProgressReporter) -> RunResult:
    """Fine-tune ``spec.model_path`` on ``data.train``; report ``loss`` (and the Trainer's
    ``learning_rate``, ``grad_norm``), evaluate ``eval/loss`` on ``data.eval`` at the end and
    write ``final/`` (the causal LM, LoRA merged, and its tokenizer)."""
    import torch
    from transformers import set_seed

    from training.core import hf

    config = spec.config
    if not isinstance(config, SFTConfig):
        raise TrainingError(f"an SFT run needs an SFTConfig, got {type(config).__name__}")
    if not isinstance(data, SFTData):
        raise TrainingError(f"an SFT run trains on SFTData, got {type(data).__name__}")
    if not data.train:
        raise TrainingError("the training split has no examples")
    device = hf.resolve_device(spec.device)
    if device.startswith("cuda:"):
        torch.cuda.set_device(torch.device(device))
    tokenizer = hf.load_tokenizer(spec.model_path)
    pad_id = int(tokenizer.pad_token_id)
    encode = {
        "tokenizer": tokenizer,
        "use_chat_template": spec.use_chat_template,
        "max_length": config.max_length,
        "completion_only_loss": config.completion_only_loss,
    }
    train_examples = encode_examples(data.train, **encode)
    eval_examples = encode_examples(data.eval, **encode)
    reporter.log(f"{len(train_examples)} training examples, {len(eval_examples)} held-out")

    set_seed(config.seed)  # LoRA adapters
    reporter.log(f"loading {spec.model_path} on {device}")
    model = hf.load_causal_lm(spec.model_path, tokenizer)
    model = hf.apply_lora(model, config, task="CAUSAL_LM")

    bridge = hf.ReporterCallback(reporter)
    trainer = _make_trainer_class()(
        model=model,
        args=hf.training_arguments(config, spec.output_dir, device),
        train_dataset=train_examples,
        data_collator=lambda examples: _collate(examples, pad_id),
        processing_class=tokenizer,
        callbacks=[bridge.make()],
    )
    stopped = hf.train(trainer, bridge, spec.resume_from)
    steps = int(trainer.state.global_step)
    if stopped:
        return hf.run_cancelled(spec.output_dir, steps)

    eval_metrics: dict[str, float] = {}
    if eval_examples:
        results = trainer.evaluate(eval_dataset=eval_examples, metric_key_prefix="eval")  # type: ignore[arg-type]
        eval_metrics = {"eval/loss": float(results["eval_loss"])}
        reporter.report(steps, steps, eval_metrics)
    return hf.run_finished(
        trainer, tokenizer, spec.output_dir, reporter, steps=steps, eval_metrics=eval_metrics
    )
