"""``training.core.hf``: loading, LoRA, pooling, TrainingArguments, the reporter bridge."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    TrainerControl,
    TrainerState,
)

from training.core.configs import CommonConfig, RewardConfig, SFTConfig
from training.core.hf import (
    ReporterCallback,
    apply_lora,
    disable_dropout,
    load_causal_lm,
    load_reward_model,
    load_tokenizer,
    pad_right,
    resolve_device,
    reward_scores,
    save_final,
    training_arguments,
)
from training.core.reporting import ListReporter
from training.core.runners import TrainingError


def test_resolve_device_keeps_an_explicit_device_and_otherwise_picks_what_exists() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("cuda:1") == "cuda:1"
    assert resolve_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")


def test_load_tokenizer_pads_with_eos_when_the_tokenizer_has_no_pad(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).pad_token_id is None

    loaded = load_tokenizer(str(tmp_path))

    assert loaded.pad_token_id == loaded.eos_token_id is not None


def test_loading_a_missing_model_folder_is_a_training_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="does not exist"):
        load_tokenizer(str(tmp_path / "missing"))
    with pytest.raises(TrainingError, match="does not exist"):
        load_causal_lm(str(tmp_path / "missing"), None)


def test_load_reward_model_seeds_the_new_head(tiny_model_path: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_model_path))

    a = load_reward_model(str(tiny_model_path), tokenizer, seed=1)
    b = load_reward_model(str(tiny_model_path), tokenizer, seed=1)
    c = load_reward_model(str(tiny_model_path), tokenizer, seed=2)

    assert a.config.num_labels == 1 and a.config.pad_token_id == tokenizer.pad_token_id
    assert torch.equal(a.score.weight, b.score.weight)
    assert not torch.equal(a.score.weight, c.score.weight)


def test_reward_scores_pool_the_last_real_token_even_when_eos_pads(tiny_model_path: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_model_path))
    model = load_reward_model(str(tiny_model_path), tokenizer, seed=0).eval()
    eos = tokenizer.eos_token_id
    sequences = [[5, 6, 7, 8, eos], [9, 10, eos]]
    # Pad with EOS, the fallback for tokenizers without a pad token: pad-token detection
    # would then pool the wrong position; the attention mask does not.
    ids, mask = pad_right(sequences, pad_id=eos)

    with torch.no_grad():
        pooled = reward_scores(model, ids, mask)
        one_by_one = [model(input_ids=torch.tensor([s])).logits[0, 0] for s in sequences]
        model.config.pad_token_id = tokenizer.pad_token_id  # unambiguous: HF pools right
        hf_padded = model(*pad_right(sequences, tokenizer.pad_token_id)).logits[:, 0]

    assert pooled.dtype == torch.float32 and pooled.shape == (2,)
    assert pooled.tolist() == pytest.approx([float(v) for v in one_by_one], abs=1e-5)
    assert pooled.tolist() == pytest.approx(hf_padded.tolist(), abs=1e-5)


def test_disable_dropout_makes_training_forwards_deterministic(tiny_model_path: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_path, attention_dropout=0.5, attn_implementation="eager"
    ).train()
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        assert not torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)

        disable_dropout(model)

        in_training = model(input_ids=ids).logits
        model.eval()
        assert torch.equal(in_training, model(input_ids=ids).logits)


def test_lora_on_a_reward_model_trains_the_whole_head_and_adapters_only(
    tiny_model_path: Path,
) -> None:
    tokenizer = load_tokenizer(str(tiny_model_path))
    model = load_reward_model(str(tiny_model_path), tokenizer, seed=0)
    ids, mask = pad_right([[5, 6, 7], [8, 9]], tokenizer.pad_token_id)
    with torch.no_grad():
        before = reward_scores(model, ids, mask)

    wrapped = apply_lora(model, RewardConfig(use_lora=True, lora_r=4), task="SEQ_CLS")

    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert any("score" in n and "lora" not in n for n in trainable)
    assert not any("score" in n and "lora" in n for n in trainable)
    assert all("lora" in n or "score" in n for n in trainable)
    with torch.no_grad():
        assert torch.allclose(reward_scores(wrapped, ids, mask), before, atol=1e-6)


def test_lora_takes_a_comma_separated_module_list(tiny_model_path: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_model_path))
    model = load_causal_lm(str(tiny_model_path), tokenizer)
    config = SFTConfig(use_lora=True, lora_target_modules="q_proj, v_proj")

    wrapped = apply_lora(model, config, task="CAUSAL_LM")

    adapted = {n.split(".")[-4] for n, p in wrapped.named_parameters() if p.requires_grad}
    assert adapted == {"q_proj", "v_proj"}
    with pytest.raises(TrainingError, match="LoRA"):
        apply_lora(
            load_causal_lm(str(tiny_model_path), tokenizer),
            SFTConfig(use_lora=True, lora_target_modules="no_such_module"),
            task="CAUSAL_LM",
        )


def test_save_final_merges_lora_into_a_plain_model(tiny_model_path: Path, tmp_path: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_model_path))
    model = apply_lora(
        load_causal_lm(str(tiny_model_path), tokenizer),
        SFTConfig(use_lora=True),
        task="CAUSAL_LM",
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.fill_(0.01)  # a non-trivial adapter
    model.eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        expected = model(input_ids=ids).logits

    save_final(model, tokenizer, tmp_path / "final")

    files = {p.name for p in (tmp_path / "final").iterdir()}
    assert "model.safetensors" in files and "tokenizer.json" in files
    assert not any(name.startswith("adapter") for name in files)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "final").eval()
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, expected, atol=1e-4)
    assert AutoTokenizer.from_pretrained(tmp_path / "final").pad_token_id is not None


def test_save_final_keeps_a_sequence_classifier_loadable(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    tokenizer = load_tokenizer(str(tiny_model_path))
    model = load_reward_model(str(tiny_model_path), tokenizer, seed=0)

    save_final(model, tokenizer, tmp_path / "final")

    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "final")
    assert torch.equal(loaded.score.weight, model.score.weight)


def test_training_arguments_map_the_common_config(tmp_path: Path) -> None:
    config = CommonConfig(
        learning_rate=3e-4,
        num_epochs=2,
        batch_size=3,
        gradient_accumulation_steps=2,
        max_grad_norm=0.5,
        seed=7,
        logging_steps=5,
    )

    args = training_arguments(config, tmp_path, "cpu")

    assert Path(str(args.output_dir)) == tmp_path / "checkpoints"
    assert args.learning_rate == 3e-4 and args.num_train_epochs == 2
    assert args.max_steps == -1  # 0: run the epochs
    assert args.per_device_train_batch_size == 3 and args.gradient_accumulation_steps == 2
    assert args.max_grad_norm == 0.5 and args.seed == 7 and args.logging_steps == 5
    assert args.save_strategy == "no"  # save_steps=0: only when stopped
    assert args.use_cpu and not args.bf16 and not args.gradient_checkpointing
    assert args.report_to in ("none", [], ["none"]) and not args.save_only_model


def test_training_arguments_with_periodic_saves_and_no_clipping(tmp_path: Path) -> None:
    config = CommonConfig(max_steps=20, save_steps=4, max_grad_norm=0.0)

    args = training_arguments(config, tmp_path, "cpu")

    assert args.max_steps == 20
    assert args.save_strategy == "steps" and args.save_steps == 4
    assert args.max_grad_norm == 0.0


def test_reporter_callback_forwards_metrics_and_asks_to_stop() -> None:
    reporter = ListReporter(stop_at_step=3)
    bridge = ReporterCallback(reporter)
    callback = bridge.make()
    state, control = TrainerState(), TrainerControl()
    state.max_steps = 10

    state.global_step = 2
    callback.on_log(None, state, control, logs={"loss": 0.5, "epoch": 0.2, "grad_norm": 1.0})
    callback.on_step_end(None, state, control)
    assert not control.should_training_stop
    state.global_step = 3
    callback.on_log(None, state, control, logs={"loss": 0.25, "rewards/accuracies": 1.0})
    callback.on_log(None, state, control, logs={"train_runtime": 1.5, "train_loss": 0.3})

    assert [(r.step, r.total_steps) for r in reporter.reports] == [(2, 10), (3, 10)]
    assert reporter.reports[0].metrics == {"loss": 0.5, "grad_norm": 1.0}
    assert reporter.reports[1].metrics == {"loss": 0.25, "rewards/accuracies": 1.0}
    assert control.should_save and control.should_training_stop and bridge.stopped
    assert any("1.5 s" in line for line in reporter.lines)
