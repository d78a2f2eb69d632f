"""The PPO runner on the tiny offline model, against a tiny reward model built from it."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

from generation.backends.base import PromptInput
from training.core.configs import PPOConfig
from training.core.data import PromptData
from training.core.reporting import ListReporter
from training.core.runners import RunSpec, TrainingError, latest_checkpoint

PROMPTS: tuple[PromptInput, ...] = (
    [{"role": "user", "content": "Once upon a time"}],
    "The quick brown fox",
    "What is the capital of France?",
    "Please write a short poem",
    "Summarize the following paragraph",
    "Translate this sentence into French.",
    "How do I bake bread at home?",
    "I think that is a good question.",
)

METRICS = (
    "score",
    "kl",
    "kl_coef",
    "entropy",
    "loss",
    "loss/policy",
    "loss/value",
    "policy/clipfrac",
    "policy/approx_kl",
    "value/clipfrac",
    "response_length",
    "reward",
    "score/task",
)

# Small and quick: 4 prompts x 2 samples of at most 6 tokens per rollout. Raw scores (the
# reward models built here have no stored stats; tests/training/test_rewards_shaping.py
# covers normalisation), with the beta the tests were written for.
FAST = PPOConfig(
    normalize_rewards=False,
    init_kl_coef=0.05,
    learning_rate=1e-3,
    rollout_batch_prompts=4,
    rollout_k=2,
    max_new_tokens=6,
    ppo_epochs=2,
    minibatch_size=4,
    batch_size=2,
    max_steps=3,
    logging_steps=1,
    max_length=64,
    seed=0,
)


def _build_reward_model(tiny_model_path: Path, path: Path) -> Path:
    """A reward model folder as a reward run leaves it: the tiny LM with a seeded score head."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def reward_model_path(tiny_reward_model_path: Path) -> Path:
    return tiny_reward_model_path


def _spec(
    tiny_model_path: Path, reward_model_path: Path | None, output_dir: Path, **config: Any
) -> RunSpec:
    return RunSpec(
        kind="ppo",
        config=dataclasses.replace(FAST, **config),
        model_path=str(tiny_model_path),
        output_dir=output_dir,
        reward_model_path=str(reward_model_path) if reward_model_path else None,
        device="cpu",
    )


def _state(path: Path | None) -> dict[str, Any]:
    assert path is not None
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_it_trains_the_policy_and_reports_every_metric(
    tiny_model_path: Path, reward_model_path: Path, tmp_path: Path
) -> None:
    import torch

    from training.core.ppo import run_ppo

    reporter = ListReporter()
    data = PromptData(train=PROMPTS, eval=PROMPTS[:2])
    spec = _spec(tiny_model_path, reward_model_path, tmp_path, save_steps=2)
    result = run_ppo(spec, data, reporter)

    assert result.status == "succeeded"
    assert result.steps == 3
    train_reports = [r for r in reporter.reports if "score" in r.metrics]
    assert [r.step for r in train_reports] == [1, 2, 3]
    assert all(r.total_steps == 3 for r in train_reports)
    for report in train_reports:
        assert set(METRICS) <= set(report.metrics)
        assert all(math.isfinite(v) for v in report.metrics.values()), report.metrics
        assert 1 <= report.metrics["response_length"] <= FAST.max_new_tokens
    for report in train_reports:
        m = report.metrics
        assert m["reward"] == pytest.approx(m["score"] - m["kl_coef"] * m["kl"], abs=1e-4)
    first = train_reports[0].metrics
    # The first rollout samples from the reference itself: no KL.
    assert abs(first["kl"]) < 1e-4
    assert first["reward"] == pytest.approx(first["score"], abs=1e-3)
    assert result.eval_metrics.keys() == {"eval/score", "eval/kl", "eval/response_length"}
    assert all(math.isfinite(v) for v in result.eval_metrics.values())

    assert result.final_dir == tmp_path / "final"
    before, after = _state(tiny_model_path), _state(result.final_dir)
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert changed, "no weight of the policy moved"
    assert not (tmp_path / "final" / "value_head.pt").exists()
    assert (
        result.checkpoint_dir
        == latest_checkpoint(tmp_path)
        == tmp_path / "checkpoints" / "checkpoint-3"
    )
    assert (tmp_path / "checkpoints" / "checkpoint-3" / "value_head.pt").is_file()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "checkpoint-2",
        "checkpoint-3",
    ]


def test_it_stops_on_request_and_resumes_to_the_full_count(
    tiny_model_path: Path, reward_model_path: Path, tmp_path: Path
) -> None:
    import json

    from training.core.ppo import run_ppo

    data = PromptData(train=PROMPTS)
    spec = _spec(tiny_model_path, reward_model_path, tmp_path)
    stopped = run_ppo(spec, data, ListReporter(stop_at_step=1))

    assert stopped.status == "cancelled"
    assert stopped.steps == 1
    assert stopped.final_dir is None
    assert stopped.checkpoint_dir == tmp_path / "checkpoints" / "checkpoint-1"
    checkpoint = tmp_path / "checkpoints" / "checkpoint-1"
    state = json.loads((checkpoint / "ppo_state.json").read_text())
    assert state["rollout"] == 1
    for name in ("value_head.pt", "optimizer.pt", "rng_state.pt", "policy/model.safetensors"):
        assert (checkpoint / name).is_file(), name

    reporter = ListReporter()
    resumed = run_ppo(dataclasses.replace(spec, resume_from=stopped.checkpoint_dir), data, reporter)

    assert resumed.status == "succeeded"
    assert resumed.steps == 3
    assert [r.step for r in reporter.reports] == [2, 3]
    assert (tmp_path / "final" / "model.safetensors").is_file()


@pytest.mark.parametrize("use_lora", [False, True], ids=["full", "lora"])
def test_it_resumes_exactly_where_an_uninterrupted_run_would_be(
    tiny_model_path: Path, reward_model_path: Path, tmp_path: Path, use_lora: bool
) -> None:
    from training.core.ppo import run_ppo

    data = PromptData(train=PROMPTS)
    straight = ListReporter()
    # Adaptive KL, so that the coefficient a checkpoint must carry changes at every rollout.
    options = {"max_steps": 2, "adaptive_kl": True, "kl_horizon": 8, "use_lora": use_lora}
    run_ppo(_spec(tiny_model_path, reward_model_path, tmp_path / "a", **options), data, straight)
    spec = _spec(tiny_model_path, reward_model_path, tmp_path / "b", **options)
    stopped = run_ppo(spec, data, ListReporter(stop_at_step=1))
    resumed = ListReporter()
    run_ppo(dataclasses.replace(spec, resume_from=stopped.checkpoint_dir), data, resumed)

    expected = straight.reports[1].metrics
    got = resumed.reports[0].metrics
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name] == pytest.approx(expected[name], rel=1e-4, abs=1e-5), name


def test_it_trains_lora_adapters_on_one_model_and_merges_them(
    tiny_model_path: Path, reward_model_path: Path, tmp_path: Path
) -> None:
    import torch

    from training.core.ppo import run_ppo

    reporter = ListReporter()
    spec = _spec(tiny_model_path, reward_model_path, tmp_path, use_lora=True, lora_r=4, max_steps=2)
    result = run_ppo(spec, PromptData(train=PROMPTS), reporter)

    assert result.status == "succeeded"
    assert abs(reporter.reports[0].metrics["kl"]) < 1e-4
    # The second rollout samples from the adapted policy, the reference is the base model
    # with the adapters disabled: they now differ.
    assert reporter.reports[1].metrics["kl"] != 0.0
    checkpoint = tmp_path / "checkpoints" / "checkpoint-2"
    assert (checkpoint / "policy" / "adapter_model.safetensors").is_file()
    final = tmp_path / "final"
    assert result.final_dir == final
    assert not (final / "adapter_config.json").exists()
    assert not (final / "adapter_model.safetensors").exists()
    before, after = _state(tiny_model_path), _state(final)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[name], after[name]) for name in before)


def test_it_adapts_the_kl_coefficient(
    tiny_model_path: Path, reward_model_path: Path, tmp_path: Path
) -> None:
    from training.core.ppo import run_ppo

    reporter = ListReporter()
    spec = _spec(
        tiny_model_path,
        reward_model_path,
        tmp_path,
        adaptive_kl=True,
        init_kl_coef=0.2,
        kl_target=6.0,
        kl_horizon=8,
        max_steps=2,
    )
    run_ppo(spec, PromptData(train=PROMPTS), reporter)

    coefs = [r.metrics["kl_coef"] for r in reporter.reports]
    # KL starts near 0, far under the target of 6: beta shrinks by the clipped 20% error
    # times n_steps / horizon = 8 / 8.
    assert coefs[0] == pytest.approx(0.2)
    assert coefs[1] == pytest.approx(0.2 * 0.8, rel=1e-6)


def test_it_rejects_a_missing_or_unloadable_reward_model(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    from training.core.ppo import run_ppo

    data = PromptData(train=PROMPTS)
    with pytest.raises(TrainingError, match="reward model"):
        run_ppo(_spec(tiny_model_path, None, tmp_path), data, ListReporter())
    with pytest.raises(TrainingError, match="does not exist"):
        run_ppo(_spec(tiny_model_path, tmp_path / "nowhere", tmp_path), data, ListReporter())
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingError, match="cannot load the reward model"):
        run_ppo(_spec(tiny_model_path, tmp_path / "empty", tmp_path), data, ListReporter())


def test_it_rejects_a_run_without_prompts(
    tiny_model_path: Path, reward_model_path: Path, tmp_path: Path
) -> None:
    from training.core.ppo import run_ppo

    with pytest.raises(TrainingError, match="no prompts"):
        run_ppo(
            _spec(tiny_model_path, reward_model_path, tmp_path),
            PromptData(train=()),
            ListReporter(),
        )


def test_it_computes_the_log_probs_the_completions_were_sampled_with(
    tiny_model_path: Path,
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from generation.backends.prompting import encode_prompt
    from training.core.losses import token_logps
    from training.core.rl.experience import forward_response as _forward
    from training.core.rl.experience import pack_rollout as _pack
    from training.core.rollouts import _neutral_generation_config

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()
    with torch.no_grad():
        # Sharpen the random model's attention, which at init is almost uniform, so that
        # attending to a padding token would change the predictions.
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(30)
            layer.self_attn.k_proj.weight.mul_(30)
    # Prompts of different lengths, so left padding and position ids are exercised.
    prompts = [encode_prompt(tokenizer, p, False) for p in ("Hi", PROMPTS[2], PROMPTS[6])]
    input_ids, attention_mask, _, _ = _pack(prompts, [[]] * 3, tokenizer.pad_token_id)
    torch.manual_seed(0)
    with _neutral_generation_config(model), torch.no_grad():
        output = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            do_sample=True,
            temperature=0.7,
            top_k=0,
            top_p=1.0,
            max_new_tokens=8,
            eos_token_id=[tokenizer.eos_token_id],
            pad_token_id=tokenizer.pad_token_id,
            output_scores=True,
            return_dict_in_generate=True,
        )
    sampled = output.sequences[:, input_ids.shape[1] :]
    sampler_logps = (
        torch.stack(output.scores, dim=1).log_softmax(-1).gather(-1, sampled[..., None])[..., 0]
    )

    ids, mask, response_ids, response_mask = _pack(
        prompts, sampled.tolist(), tokenizer.pad_token_id
    )
    with torch.no_grad():
        logits, _ = _forward(model, None, ids, mask, response_ids.shape[1], 0.7)
    trainer_logps = token_logps(logits, response_ids, response_mask)

    torch.testing.assert_close(trainer_logps, sampler_logps, atol=1e-5, rtol=0)


def _build_policy_that_often_stops(tiny_model_path: Path, path: Path) -> Path:
    """The tiny LM rigged to sample EOS about half the time, from the first token on.

    Every embedding gets a constant first coordinate, which dominates the normalised
    hidden state (about 8 after the final RMSNorm); EOS's output row reads it with a
    weight that lifts its logit to about log(vocab), level with all other tokens together.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 1.0
        model.lm_head.weight[tokenizer.eos_token_id, 0] = math.log(model.config.vocab_size) / 8
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_it_trains_on_completions_that_are_only_an_eos(
    tiny_model_path: Path, reward_model_path: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    from generation.backends.prompting import encode_prompt
    from training.core.hf import load_tokenizer
    from training.core.ppo import run_ppo
    from training.core.rollouts import TransformersRolloutSampler

    policy_path = _build_policy_that_often_stops(tiny_model_path, tmp_path / "policy")
    tokenizer = load_tokenizer(str(policy_path))
    eos = tokenizer.eos_token_id
    sampler = TransformersRolloutSampler(
        AutoModelForCausalLM.from_pretrained(policy_path).eval(),
        eos_ids=[eos],
        pad_id=tokenizer.pad_token_id,
        device="cpu",
    )
    prompt_ids = [encode_prompt(tokenizer, p, True) for p in PROMPTS[:4]]
    rows = sampler.sample(prompt_ids, n=2, max_new_tokens=6, temperature=1.0, seed=0)
    assert [eos] in rows, "the rig should produce empty completions"
    assert all(row[-1] == eos or len(row) == 6 for row in rows)

    reporter = ListReporter()
    spec = dataclasses.replace(
        _spec(tiny_model_path, reward_model_path, tmp_path / "run", max_steps=2),
        model_path=str(policy_path),
    )
    result = run_ppo(spec, PromptData(train=PROMPTS), reporter)

    assert result.status == "succeeded"
    for report in reporter.reports:
        assert all(math.isfinite(v) for v in report.metrics.values()), report.metrics
        # The EOS is a completion token: an empty completion still has one.
        assert 1 <= report.metrics["response_length"] < 4


def _build_reward_model_for_a_direction(tiny_model_path: Path, path: Path) -> Path:
    """A reward model whose score is (about) how well the text's tokens align with ``d``.

    The real sequence-classification class with edited weights: the first layer's
    attention is made uniform (zero queries) with identity value and output maps, every
    other block is switched off, so the hidden state at the last token is the mean of the
    normalised embeddings of all tokens; the score head reads a fixed random direction
    ``d`` from it. A policy raises its score by favouring tokens whose embeddings point
    along ``d``: a reward that depends smoothly on the sampled tokens and can be learned
    in a few rollouts.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    model.config.pad_token_id = tokenizer.pad_token_id
    hidden = model.config.hidden_size
    assert model.config.num_key_value_heads * model.config.head_dim == hidden
    with torch.no_grad():
        for index, layer in enumerate(model.model.layers):
            layer.mlp.down_proj.weight.zero_()
            if index == 0:
                layer.self_attn.q_proj.weight.zero_()
                layer.self_attn.v_proj.weight.copy_(torch.eye(hidden))
                layer.self_attn.o_proj.weight.copy_(torch.eye(hidden))
            else:
                layer.self_attn.o_proj.weight.zero_()
        direction = torch.randn(hidden, generator=torch.Generator().manual_seed(0))
        model.score.weight.copy_(direction[None] / direction.norm())
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_it_raises_the_reward_models_score(tiny_model_path: Path, tmp_path: Path) -> None:
    from training.core.ppo import run_ppo

    reward_path = _build_reward_model_for_a_direction(tiny_model_path, tmp_path / "reward")
    reporter = ListReporter()
    spec = _spec(
        tiny_model_path,
        reward_path,
        tmp_path / "run",
        learning_rate=1e-2,
        rollout_batch_prompts=8,
        rollout_k=2,
        minibatch_size=8,
        batch_size=8,
        ppo_epochs=4,
        max_new_tokens=4,
        init_kl_coef=0.01,
        max_steps=20,
        seed=3,
    )
    run_ppo(spec, PromptData(train=PROMPTS), reporter)

    scores = [r.metrics["score"] for r in reporter.reports]
    assert len(scores) == 20
    # Over seeds 0-9 the mean of the first three rollouts was -0.2..0.05 and of the last
    # three 0.7..2.3 (0.74 for this seed); rollouts before learning sets in wander by +-0.3.
    assert sum(scores[-3:]) / 3 > sum(scores[:3]) / 3 + 0.5, scores


def test_it_counts_rollouts_from_epochs_when_max_steps_is_zero(
    tiny_model_path: Path, reward_model_path: Path, tmp_path: Path
) -> None:
    from training.core.ppo import run_ppo

    reporter = ListReporter()
    # The other options off their defaults, to run every branch: 9 prompts, 4 per rollout,
    # 2 epochs -> ceil(18 / 4) = 5 rollouts, the third straddling the two epochs.
    spec = _spec(
        tiny_model_path,
        reward_model_path,
        tmp_path,
        max_steps=0,
        num_epochs=2,
        whiten_rewards=True,
        kl_estimator="k3",
        gamma=0.9,
        lam=0.5,
        minibatch_size=3,
        batch_size=2,
        max_grad_norm=0.0,
        ppo_epochs=1,
    )
    result = run_ppo(spec, PromptData(train=(*PROMPTS, "Yes. No. Maybe.")), reporter)

    assert result.steps == 5
    assert [r.step for r in reporter.reports] == [1, 2, 3, 4, 5]
    assert all(r.total_steps == 5 for r in reporter.reports)
    for report in reporter.reports:
        assert all(math.isfinite(v) for v in report.metrics.values()), report.metrics
        assert report.metrics["kl"] >= 0  # k3 is never negative
