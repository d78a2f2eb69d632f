"""Reward models on encoders (BERT, DeBERTa...): tiny random encoders built offline, on CPU."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from generation.tiny_model import TINY_ENCODER_TYPES, build_tiny_encoder
from training.core.configs import RewardConfig
from training.core.data import PreferenceData, PreferenceGroup, encode_completion
from training.core.hf import load_reward_model, load_tokenizer, reward_architecture
from training.core.losses import bradley_terry_loss
from training.core.reporting import ListReporter
from training.core.runners import RunResult, RunSpec, TrainingError, run_training
from training.core.scoring import RewardScorer

GROUPS = (
    PreferenceGroup(
        prompt="What is the capital of France?",
        completions=("Paris.", "The capital of France is Paris.", "Berlin."),
        pairs=((1, 0), (0, 2), (1, 2)),
    ),
    PreferenceGroup(
        # A conversation: an encoder has no chat template, so it reads the plain rendering.
        prompt=[
            {"role": "user", "content": "Say something nice."},
            {"role": "assistant", "content": "Why?"},
            {"role": "user", "content": "Please."},
        ],
        completions=("Thank you, you are kind!", "No."),
        pairs=((0, 1),),
    ),
)


@pytest.fixture(scope="module", params=TINY_ENCODER_TYPES)
def encoder_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp(request.param) / "encoder", request.param)


@pytest.fixture(scope="module")
def bert_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("bert") / "encoder", "bert")


def config(**changes: object) -> RewardConfig:
    base = RewardConfig(
        learning_rate=1e-3, batch_size=2, max_steps=3, logging_steps=1, max_length=64
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def run(model_path: Path, output_dir: Path, cfg: RewardConfig) -> tuple[RunResult, ListReporter]:
    reporter = ListReporter()
    spec = RunSpec(
        kind="reward", config=cfg, model_path=str(model_path), output_dir=output_dir, device="cpu"
    )
    return run_training(spec, PreferenceData(train=GROUPS, eval=GROUPS[:1]), reporter), reporter


def forward_alone(model_path: Path, items: Sequence[tuple[object, str]]) -> list[float]:
    """Each item's score from the classifier's own forward, one unpadded sequence at a time."""
    tokenizer = load_tokenizer(str(model_path))
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=1).eval()
    scores = []
    with torch.no_grad():
        for prompt, completion in items:
            ids, _ = encode_completion(
                tokenizer,
                prompt,  # type: ignore[arg-type]
                completion,
                use_chat_template=False,
                max_length=64,
                conversation_as_text=True,
            )
            scores.append(float(model(input_ids=torch.tensor([ids])).logits[0, 0]))
    return scores


def test_it_reads_an_encoder_input_as_cls_prompt_sep_completion_sep(bert_path: Path) -> None:
    tokenizer = load_tokenizer(str(bert_path))

    ids, prompt_length = encode_completion(
        tokenizer,
        [{"role": "user", "content": "Hello"}],
        "Hi",
        use_chat_template=False,
        max_length=64,
        conversation_as_text=True,
    )

    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == "[CLS]" and tokens[prompt_length - 1] == "[SEP]" and tokens[-1] == "[SEP]"
    assert tokenizer.decode(ids[1 : prompt_length - 1]) == "user : hello"
    assert tokenizer.decode(ids[prompt_length:-1]) == "hi"


def test_it_tells_encoders_from_decoders_by_their_config(
    encoder_path: Path, tiny_model_path: Path
) -> None:
    assert reward_architecture(str(encoder_path)) == "encoder"
    assert reward_architecture(str(tiny_model_path)) == "decoder"


@pytest.mark.parametrize(
    ("model_type", "message"), [("t5", "encoder-decoder"), ("vit", "is a vit")]
)
def test_it_refuses_an_unsupported_architecture_before_tokenising(
    model_type: str, message: str, tmp_path: Path
) -> None:
    # A config and nothing else: no tokenizer, no weights. Had the data been tokenised
    # first, the missing tokenizer would be the error.
    folder = tmp_path / model_type
    AutoConfig.for_model(model_type).save_pretrained(folder)
    reporter = ListReporter()
    spec = RunSpec(kind="reward", config=config(), model_path=str(folder), output_dir=tmp_path)

    with pytest.raises(TrainingError, match=message) as caught:
        run_training(spec, PreferenceData(train=GROUPS), reporter)

    assert "encoder (bert, deberta" in str(caught.value)
    assert not any("training pairs" in line for line in reporter.lines)


def test_it_trains_an_encoder_reward_model_pooled_as_its_architecture_expects(
    encoder_path: Path, tmp_path: Path
) -> None:
    init = tmp_path / "init"
    tokenizer = load_tokenizer(str(encoder_path))
    load_reward_model(str(encoder_path), tokenizer, seed=0).save_pretrained(init)
    tokenizer.save_pretrained(init)
    items = [(g.prompt, c) for g in GROUPS for c in g.completions]
    initial = forward_alone(init, items)
    offsets = [0, 3]
    chosen = [initial[o + w] for g, o in zip(GROUPS, offsets, strict=True) for w, _ in g.pairs]
    rejected = [initial[o + r] for g, o in zip(GROUPS, offsets, strict=True) for _, r in g.pairs]
    expected, _ = bradley_terry_loss(torch.tensor(chosen), torch.tensor(rejected))

    result, reporter = run(
        encoder_path, tmp_path / "run", config(grouped_reduction="pairs", max_steps=4)
    )

    losses = [r.metrics["loss"] for r in reporter.reports if "loss" in r.metrics]
    assert result.status == "succeeded" and result.final_dir is not None
    # Both groups fit in the first batch: step 1's loss is over every pair.
    assert losses[0] == pytest.approx(float(expected), abs=1e-5)
    assert losses[-1] < losses[0]
    assert any("reward model base: encoder" in line for line in reporter.lines)
    # The saved model scores batched (padded) exactly as its own forward does alone.
    scorer = RewardScorer(str(result.final_dir), device="cpu", max_length=64)
    assert scorer.score(items) == pytest.approx(forward_alone(result.final_dir, items), abs=1e-5)
    assert set(forward_alone(result.final_dir, items)) != set(initial)


def test_it_trains_lora_adapters_on_an_encoder_and_its_head_in_full(
    bert_path: Path, tmp_path: Path
) -> None:
    result, _ = run(bert_path, tmp_path, config(use_lora=True, learning_rate=1e-2))

    assert result.status == "succeeded" and result.final_dir is not None
    assert not (result.final_dir / "adapter_config.json").exists()
    trained = AutoModelForSequenceClassification.from_pretrained(result.final_dir)
    assert trained.config.model_type == "bert"
    tokenizer = load_tokenizer(str(bert_path))
    fresh = load_reward_model(str(bert_path), tokenizer, seed=0)
    assert not torch.equal(trained.classifier.weight, fresh.classifier.weight)
