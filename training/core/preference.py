"""Reward-model and DPO training on preference groups, with a ``transformers`` Trainer.

The Trainer gives the loop (optimizer, LR schedule, gradient accumulation, checkpoints that
resume with their optimizer, scheduler and RNG state, callbacks); this module gives the data
and the loss:

- An example is a :class:`~training.core.data.PreferenceGroup`: one prompt, its distinct
  completions, and any preference pairs among them (annotators may disagree, and a pair may
  repeat). With ``config.grouped`` a micro-batch holds ``batch_size`` groups, every
  completion is forwarded once, and all the group's pairs are scored from those outputs
  (InstructGPT's trick) with :func:`~training.core.losses.pairwise_bradley_terry_loss` or
  :func:`~training.core.losses.pairwise_dpo_loss` and ``config.grouped_reduction``. Without
  it, each pair is a 2-completion group of its own and the loss is the mean over pairs.
- Listwise (``config.loss`` other than "pairwise"): groups also carry whole rankings
  (:func:`~training.core.data.ranking_groups`); each completion is still forwarded once,
  and every ranking gathers its completions' outputs into an ``[R, K]`` batch for
  :func:`~training.core.losses.plackett_luce_loss`,
  :func:`~training.core.losses.plackett_luce_dpo_loss` or
  :func:`~training.core.losses.score_regression_loss`.
- Dropout is turned off in the model (not in LoRA adapters), as TRL does, so a reward
  model scores in training what it scores in use, and DPO starts exactly at ``log 2``.
- A completion is read as :func:`~training.core.data.encode_completion` encodes it (prompt
  ids as generation makes them, completion ids, EOS).
- Reward: an ``AutoModelForSequenceClassification`` (one label) built on the base causal LM;
  its score is the head's output at the last real token
  (:func:`~training.core.hf.reward_scores`), the same pooling
  :mod:`training.core.scoring` uses, so a trained model scores identically there.
- DPO: the policy is the base causal LM; the reference is a frozen copy of it or, with LoRA,
  the same model with its adapters disabled (one model in memory). With
  ``precompute_ref_log_probs`` every completion's reference log-prob is computed once
  before training and the reference is not kept. A log-prob is the sum over the
  completion's tokens (EOS included), computed in chunks (:mod:`training.core.logps`):
  the batch's ``[N, T, V]`` logits never exist.

Nothing here imports Django; torch and transformers are imported when a run starts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from training.core.configs import DPOConfig, RewardConfig
from training.core.data import PreferenceData, PreferenceGroup, RunData, encode_completion
from training.core.reporting import ProgressReporter
from training.core.runners import RunResult, RunSpec, TrainingError

__all__ = ["EncodedGroup", "encode_groups", "run_preference"]


@dataclass
class EncodedGroup:
    """A preference group as token ids: what one example of the dataset is."""

    sequences: list[list[int]]
    """Each completion's ``prompt + completion + EOS`` ids."""
    prompt_lengths: list[int]
    """How many leading ids of each sequence are the prompt."""
    pairs: list[tuple[int, int]]
    """``(chosen, rejected)`` indices into ``sequences``."""
    margins: list[float] | None = None
    """One margin per pair, or None (no margin)."""
    ref_logps: list[float] | None = None
    """DPO with precomputed reference log-probs: one per sequence."""
    rankings: list[list[list[int]]] | None = None
    """Listwise data: each whole ranking as tie groups (best first) of ``sequences`` indices."""
    ranking_scores: list[list[float | None]] | None = None
    """Per ranking, each ranked completion's 1-7 score (None: not scored), flattened order."""


def encode_groups(
    groups: Sequence[PreferenceGroup],
    tokenizer: Any,
    *,
    use_chat_template: bool,
    max_length: int,
    grouped: bool = True,
    use_margin: bool = False,
    conversation_as_text: bool = False,
) -> list[EncodedGroup]:
    """Tokenize ``groups``; groups without a pair are dropped.

    ``grouped=False`` splits every pair into a 2-completion group of its own. Margins are
    kept only with ``use_margin`` and only for groups that have them.
    ``conversation_as_text`` is :func:`~training.core.data.encode_completion`'s (reward
    models).
    """
    encoded = []
    for group in groups:
        if not group.pairs:
            continue
        ids, prompt_lengths = [], []
        for completion in group.completions:
            seq, prompt_length = encode_completion(
                tokenizer,
                group.prompt,
                completion,
                use_chat_template=use_chat_template,
                max_length=max_length,
                conversation_as_text=conversation_as_text,
            )
            ids.append(seq)
            prompt_lengths.append(prompt_length)
        margins = list(group.margins) if use_margin and group.margins else None
        if grouped:
            rankings = [[list(tie) for tie in r] for r in group.rankings] or None
            scores = [list(r) for r in group.ranking_scores] or None
            encoded.append(
                EncodedGroup(
                    ids,
                    prompt_lengths,
                    list(group.pairs),
                    margins,
                    rankings=rankings,
                    ranking_scores=scores,
                )
            )
            continue
        for p, (chosen, rejected) in enumerate(group.pairs):
            encoded.append(
                EncodedGroup(
                    [ids[chosen], ids[rejected]],
                    [prompt_lengths[chosen], prompt_lengths[rejected]],
                    [(0, 1)],
                    [margins[p]] if margins is not None else None,
                )
            )
    return encoded


def _collate(groups: Sequence[EncodedGroup], pad_id: int) -> dict[str, Any]:
    """Flatten groups into one right-padded batch of completions plus the pairs among them."""
    import torch

    from training.core.hf import pad_right

    sequences: list[list[int]] = []
    prompt_lengths: list[int] = []
    winners, losers, pair_group, margins = [], [], [], []
    ref_logps: list[float] = []
    rankings: list[list[list[int]]] = []
    ranking_scores: list[list[float | None]] = []
    has_margins = any(g.margins is not None for g in groups)
    has_ref = bool(groups) and all(g.ref_logps is not None for g in groups)
    for g, group in enumerate(groups):
        offset = len(sequences)
        sequences.extend(group.sequences)
        prompt_lengths.extend(group.prompt_lengths)
        for p, (chosen, rejected) in enumerate(group.pairs):
            winners.append(offset + chosen)
            losers.append(offset + rejected)
            pair_group.append(g)
            margins.append(group.margins[p] if group.margins is not None else 0.0)
        if has_ref:
            ref_logps.extend(group.ref_logps or ())
        for r, ranking in enumerate(group.rankings or ()):
            rankings.append([[offset + c for c in tie] for tie in ranking])
            if group.ranking_scores is not None:
                ranking_scores.append(group.ranking_scores[r])
            else:
                ranking_scores.append([None] * sum(len(tie) for tie in ranking))
    input_ids, attention_mask = pad_right(sequences, pad_id)
    positions = torch.arange(input_ids.shape[1])
    lengths = attention_mask.sum(dim=-1, keepdim=True)
    starts = torch.tensor(prompt_lengths).unsqueeze(-1)
    batch: dict[str, Any] = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "completion_mask": (positions >= starts) & (positions < lengths),
        "winners": torch.tensor(winners, dtype=torch.long),
        "losers": torch.tensor(losers, dtype=torch.long),
        "pair_group": torch.tensor(pair_group, dtype=torch.long),
    }
    if has_margins:
        batch["margins"] = torch.tensor(margins, dtype=torch.float32)
    if has_ref:
        batch["ref_logps"] = torch.tensor(ref_logps, dtype=torch.float32)
    if any(g.rankings for g in groups):
        from training.core.losses import ranking_tensors

        index, ranks, mask = ranking_tensors(rankings)
        batch.update(ranking_index=index, ranking_ranks=ranks, ranking_mask=mask)
        scores = torch.zeros(index.shape, dtype=torch.float32)
        scored = torch.zeros(index.shape, dtype=torch.bool)
        for row, values in enumerate(ranking_scores):
            for column, value in enumerate(values):
                if value is not None:
                    scores[row, column], scored[row, column] = float(value), True
        batch.update(ranking_scores=scores, ranking_scored=scored)
    return batch


def _concat_rankings(parts: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    """Stack ``(index, ranks, mask, ...)`` ``[R_i, K_i]`` parts into ``[sum R_i, max K_i]``."""
    import torch
    import torch.nn.functional as F

    width = max((part[0].shape[1] for part in parts), default=0)

    def widen(x: Any) -> Any:
        return F.pad(x, (0, width - x.shape[1]))

    return tuple(torch.cat([widen(part[i]) for part in parts]) for i in range(len(parts[0])))


def completion_logps(model: Any, input_ids: Any, attention_mask: Any, completion_mask: Any) -> Any:
    """Summed log-probability of each row's completion tokens under a causal LM: ``[N]``.

    Through :func:`~training.core.logps.causal_lm_logps`: the LM head runs on the
    completion tokens only, a chunk at a time, so neither the prompt's logits nor the
    ``[N, T, V]`` float32 logits of the batch are ever materialised.
    """
    from training.core.logps import IGNORE_INDEX, causal_lm_logps

    labels = input_ids.masked_fill(~completion_mask.bool(), IGNORE_INDEX)
    logps, _ = causal_lm_logps(model, input_ids, attention_mask, labels)
    return logps


class _Batches:
    """Groups to batches, in order, for evaluation and precomputation."""

    def __init__(self, groups: Sequence[EncodedGroup], batch_size: int, pad_id: int) -> None:
        self.groups, self.batch_size, self.pad_id = groups, batch_size, pad_id

    def __iter__(self) -> Iterator[tuple[list[EncodedGroup], dict[str, Any]]]:
        for start in range(0, len(self.groups), self.batch_size):
            chunk = list(self.groups[start : start + self.batch_size])
            yield chunk, _collate(chunk, self.pad_id)


def _make_trainer_class() -> type:
    from transformers import Trainer

    class PreferenceTrainer(Trainer):
        """A Trainer whose loss is a pairwise Bradley-Terry (reward) or DPO loss."""

        loss_is_scaled_for_ga = False  # one mean per micro-batch; the Trainer divides by GA

        def __init__(
            self,
            *args: Any,
            kind: str,
            pref_config: RewardConfig | DPOConfig,
            ref_model: Any = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.kind = kind
            self.pref_config = pref_config
            self.ref_model = ref_model
            self.reduction = pref_config.grouped_reduction if pref_config.grouped else "pairs"
            self.listwise = pref_config.loss != "pairwise"
            self._window: list[dict[str, Any]] = []

        # -- loss -----------------------------------------------------------------------

        def reference_logps(self, inputs: dict[str, Any]) -> Any:
            """The reference model's completion log-probs of a batch (a constant)."""
            import torch

            if "ref_logps" in inputs:
                return inputs["ref_logps"]
            args = (inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"])
            with torch.no_grad(), self.accelerator.autocast():
                if self.ref_model is not None:
                    return completion_logps(self.ref_model, *args)
                model: Any = self.model
                if hasattr(model, "disable_adapter"):
                    with model.disable_adapter():
                        return completion_logps(model, *args)
            raise RuntimeError("DPO needs a reference model or precomputed reference log-probs")

        def batch_outputs(self, model: Any, inputs: dict[str, Any]) -> dict[str, Any]:
            """Per-completion rewards (reward) or policy and reference log-probs (DPO)."""
            from training.core.hf import reward_scores

            with self.accelerator.autocast():
                if self.kind == "reward":
                    return {
                        "rewards": reward_scores(
                            model, inputs["input_ids"], inputs["attention_mask"]
                        )
                    }
                policy = completion_logps(
                    model, inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"]
                )
            return {"policy": policy, "ref": self.reference_logps(inputs)}

        def pair_loss(
            self, outputs: dict[str, Any], inputs: dict[str, Any], reduction: str | None = None
        ) -> tuple[Any, dict[str, Any]]:
            from training.core.losses import (
                pairwise_bradley_terry_loss,
                pairwise_dpo_loss,
                plackett_luce_dpo_loss,
                plackett_luce_loss,
                score_regression_loss,
            )

            config = self.pref_config
            if self.listwise:
                # Each completion was forwarded once; every ranking gathers its scores.
                index = inputs["ranking_index"]
                ranking = (inputs["ranking_ranks"], inputs["ranking_mask"])
                if self.kind == "reward" and config.loss == "score_regression":
                    scores = (inputs["ranking_scores"], inputs["ranking_scored"])
                    return score_regression_loss(outputs["rewards"][index], *scores, *ranking)
                if self.kind == "reward":
                    return plackett_luce_loss(outputs["rewards"][index], *ranking)
                assert isinstance(config, DPOConfig)
                return plackett_luce_dpo_loss(
                    outputs["policy"][index], outputs["ref"][index], *ranking, config.beta
                )
            reduction = reduction or self.reduction
            pairs = (inputs["winners"], inputs["losers"], inputs["pair_group"])
            if self.kind == "reward":
                return pairwise_bradley_terry_loss(
                    outputs["rewards"],
                    *pairs,
                    inputs.get("margins"),
                    reduction,  # type: ignore[arg-type]
                )
            assert isinstance(config, DPOConfig)
            return pairwise_dpo_loss(
                outputs["policy"],
                outputs["ref"],
                *pairs,
                config.beta,
                config.label_smoothing,
                reduction,  # type: ignore[arg-type]
            )

        def compute_loss(  # type: ignore[override]
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            loss, metrics = self.pair_loss(self.batch_outputs(model, inputs), inputs)
            if model.training:
                self._window.append(metrics)
            return (loss, metrics) if return_outputs else loss

        # -- logging --------------------------------------------------------------------

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            """Add the window's averaged pair metrics to the Trainer's training log entry."""
            import torch

            from training.core.hf import mean_over_processes

            if "loss" in logs and self._window:
                names = [name for name in self._window[0] if name != "loss"]
                means = torch.stack(
                    [torch.stack([m[name].float() for m in self._window]).mean() for name in names]
                )
                # Every process logs after the same steps: one all-reduce for all metrics.
                means = mean_over_processes(self, means.detach())
                logs.update(zip(names, means.tolist(), strict=True))
                self._window.clear()
            super().log(logs, start_time)

    return PreferenceTrainer


def _evaluate(trainer: Any, groups: Sequence[EncodedGroup], pad_id: int) -> dict[str, float]:
    """The loss and metrics over all of ``groups`` at once (batched forwards, one loss)."""
    import torch

    model = trainer.model
    was_training = model.training
    model.eval()
    outputs: dict[str, list[Any]] = {}
    winners, losers, pair_group, margins = [], [], [], []
    rankings: list[tuple[torch.Tensor, ...]] = []
    offset = group_offset = 0
    any_margins = False
    try:
        with torch.inference_mode():
            for chunk, batch in _Batches(groups, trainer.args.per_device_eval_batch_size, pad_id):
                batch = trainer._prepare_inputs(batch)
                for name, value in trainer.batch_outputs(model, batch).items():
                    outputs.setdefault(name, []).append(value.float().cpu())
                winners.append(batch["winners"].cpu() + offset)
                losers.append(batch["losers"].cpu() + offset)
                pair_group.append(batch["pair_group"].cpu() + group_offset)
                if "margins" in batch:
                    any_margins = True
                    margins.append(batch["margins"].cpu())
                else:
                    margins.append(torch.zeros(batch["winners"].shape[0]))
                if "ranking_index" in batch:
                    rankings.append(
                        (
                            batch["ranking_index"].cpu() + offset,
                            batch["ranking_ranks"].cpu(),
                            batch["ranking_mask"].cpu(),
                            batch["ranking_scores"].cpu(),
                            batch["ranking_scored"].cpu(),
                        )
                    )
                offset += batch["input_ids"].shape[0]
                group_offset += len(chunk)
    finally:
        model.train(was_training)
    inputs = {
        "winners": torch.cat(winners),
        "losers": torch.cat(losers),
        "pair_group": torch.cat(pair_group),
    }
    if any_margins:
        inputs["margins"] = torch.cat(margins)
    if rankings:
        index, ranks, mask, scores, scored = _concat_rankings(rankings)
        inputs.update(
            ranking_index=index,
            ranking_ranks=ranks,
            ranking_mask=mask,
            ranking_scores=scores,
            ranking_scored=scored,
        )
    _, metrics = trainer.pair_loss({k: torch.cat(v) for k, v in outputs.items()}, inputs)
    return {f"eval/{name}": float(value) for name, value in metrics.items()}


def _precompute_reference(trainer: Any, groups: Sequence[EncodedGroup], pad_id: int) -> None:
    """Store every completion's reference log-prob in its group (before any training step)."""
    import torch

    model = trainer.model
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for chunk, batch in _Batches(groups, trainer.args.per_device_eval_batch_size, pad_id):
                batch.pop("ref_logps", None)
                batch = trainer._prepare_inputs(batch)
                if trainer.ref_model is None and not hasattr(model, "disable_adapter"):
                    # No LoRA and no reference copy: the untrained policy is the reference.
                    with trainer.accelerator.autocast():
                        logps = completion_logps(
                            model,
                            batch["input_ids"],
                            batch["attention_mask"],
                            batch["completion_mask"],
                        )
                else:
                    logps = trainer.reference_logps(batch)
                values = logps.float().cpu().tolist()
                for group in chunk:
                    n = len(group.sequences)
                    group.ref_logps, values = values[:n], values[n:]
    finally:
        model.train(was_training)


def _pooling_note(model_path: str) -> str:
    from transformers import AutoConfig

    from training.core.hf import ENCODER_POOLING

    model_type = str(AutoConfig.from_pretrained(model_path).model_type)
    if model_type in ENCODER_POOLING:
        return f"{model_type}: {ENCODER_POOLING[model_type][0]}"
    return f"{model_type}: the score head at the last real token"


def run_preference(spec: RunSpec, data: RunData, reporter: ProgressReporter) -> RunResult:
    """Train a reward model (``spec.kind == "reward"``) or a DPO policy (``"dpo"``).

    Reports every ``logging_steps`` optimizer steps the window's averages of ``loss``,
    ``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``, ``rewards/accuracies``
    (DPO adds ``logps/chosen``, ``logps/rejected``), plus the Trainer's ``learning_rate``
    and ``grad_norm``. At the end evaluates on ``data.eval`` (``eval/loss``,
    ``eval/rewards/*``...) and writes ``final/``: the sequence-classification model (reward)
    or the causal LM (DPO), LoRA merged, with the tokenizer.
    """
    import torch
    from transformers import set_seed

    from training.core import hf

    config = spec.config
    if spec.kind == "reward":
        if not isinstance(config, RewardConfig):
            raise TrainingError(f"a reward run needs a RewardConfig, got {type(config).__name__}")
    elif spec.kind == "dpo":
        if not isinstance(config, DPOConfig):
            raise TrainingError(f"a DPO run needs a DPOConfig, got {type(config).__name__}")
    else:
        raise TrainingError(f"run_preference trains reward or dpo runs, not {spec.kind!r}")

    if not isinstance(data, PreferenceData):
        raise TrainingError(
            f"a {spec.kind} run trains on PreferenceData, got {type(data).__name__}"
        )
    device = hf.resolve_device(spec.device)
    if device.startswith("cuda:"):
        torch.cuda.set_device(torch.device(device))
    if spec.kind == "reward":
        # An architecture no reward model can be built on is refused before any tokenising.
        architecture = hf.reward_architecture(spec.model_path)
        reporter.log(f"reward model base: {architecture}, {_pooling_note(spec.model_path)}")
    tokenizer = hf.load_tokenizer(spec.model_path)
    pad_id = int(tokenizer.pad_token_id)
    use_margin = isinstance(config, RewardConfig) and config.use_margin
    encode = {
        "tokenizer": tokenizer,
        "use_chat_template": spec.use_chat_template,
        "max_length": config.max_length,
        "grouped": config.grouped,
        "use_margin": use_margin,
        "conversation_as_text": spec.kind == "reward",
    }
    train_groups = encode_groups(data.train, **encode)
    if not train_groups:
        raise TrainingError("the training split has no preference pairs")
    eval_groups = encode_groups(data.eval, **encode)
    n_pairs = sum(len(g.pairs) for g in train_groups)
    if config.loss == "score_regression" and not any(g.ranking_scores for g in train_groups):
        raise TrainingError("score regression trains on the rankings' scores, and none has any")
    if config.loss != "pairwise":
        if not any(g.rankings for g in train_groups):
            raise TrainingError(
                f"the {config.loss} loss trains on whole rankings, and the data has none"
            )
        reporter.log(
            f"{sum(len(g.rankings or ()) for g in train_groups)} training rankings "
            f"({n_pairs} pairs) over {len(train_groups)} prompts, "
            f"{sum(len(g.rankings or ()) for g in eval_groups)} held-out rankings"
        )
    else:
        reporter.log(
            f"{n_pairs} training pairs in {len(train_groups)} examples, "
            f"{sum(len(g.pairs) for g in eval_groups)} held-out pairs"
        )

    set_seed(config.seed)  # the new score head and LoRA adapters
    reporter.log(f"loading {spec.model_path} on {device}")
    ref_model = None
    if spec.kind == "reward":
        model = hf.load_reward_model(spec.model_path, tokenizer, seed=config.seed)
        hf.disable_dropout(model)  # before LoRA: lora_dropout stays as configured
        model = hf.apply_lora(model, config, task="SEQ_CLS")
    else:
        model = hf.load_causal_lm(spec.model_path, tokenizer)
        hf.disable_dropout(model)
        model = hf.apply_lora(model, config, task="CAUSAL_LM")
        assert isinstance(config, DPOConfig)
        if not config.use_lora and not config.precompute_ref_log_probs:
            ref_model = hf.load_causal_lm(spec.model_path, tokenizer)
            ref_model.requires_grad_(False)
            ref_model.eval()

    bridge = hf.ReporterCallback(reporter)
    trainer_class = _make_trainer_class()
    trainer = trainer_class(
        model=model,
        args=hf.training_arguments(config, spec.output_dir, device),
        train_dataset=train_groups,
        data_collator=lambda groups: _collate(groups, pad_id),
        processing_class=tokenizer,
        callbacks=[bridge.make()],
        kind=spec.kind,
        pref_config=config,
        ref_model=ref_model,
    )
    if ref_model is not None:
        ref_model.to(trainer.args.device)
    if isinstance(config, DPOConfig) and config.precompute_ref_log_probs:
        reporter.log("computing the reference log-probs")
        _precompute_reference(trainer, [*train_groups, *eval_groups], pad_id)

    stopped = hf.train(trainer, bridge, spec.resume_from)
    steps = int(trainer.state.global_step)
    if stopped:
        return hf.run_cancelled(spec.output_dir, steps)

    eval_metrics: dict[str, float] = {}
    if eval_groups:
        eval_metrics = _evaluate(trainer, eval_groups, pad_id)
        reporter.report(steps, steps, eval_metrics)
    trainer.ref_model = ref_model = None
    return hf.run_finished(
        trainer, tokenizer, spec.output_dir, reporter, steps=steps, eval_metrics=eval_metrics
    )
