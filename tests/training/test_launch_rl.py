"""PPO and GRPO in several processes (``training.core.rl.distributed``): real torchrun process
groups of 2 ranks on gloo, on the tiny model, against the same run in one process.

Why the per-rollout metrics must agree to ``TOLERANCE`` (1e-4, absolute): both runs take the
same prompts in each rollout and sample the same tokens for them. Sampling is seeded per
``generate`` call from the rollout and the position of the call's first completion in the
rollout; with ``rollout_sample_batch`` = 4 the one-process run samples its 8 completions in
two calls of 4 and each rank samples its 4 in one call seeded as that half is in one process.
The experience is computed in micro-batches of the same rows (``batch_size`` 2 divides a
rank's share), the advantages on the merged rollout, and each optimizer step sums the same
micro-batches' gradients, only split between the ranks and added in another order. What is
left is float32 rounding, about 1e-7 relative per operation; Adam's step divides by the
gradient's root mean square and can magnify a relative difference in a tiny gradient entry,
but over two rollouts of two epochs at these learning rates the metrics (scores of order 1,
losses and KLs of order 0.01-1) move by far less than 1e-4. A real fault moves them by much
more: a rank that samples the other's prompts or its own seed (scores change by 0.1 or
more), advantages whitened over half the rollout, gradients not summed (the second rollout's
``kl`` and losses differ from 1e-3 on), or a KL coefficient adapted to one rank's KL.
Measured here: the largest difference of any metric was 1.3e-7.
"""

from __future__ import annotations

import dataclasses
import json
import os
import textwrap
from pathlib import Path

import pytest

from tests.training.test_runner_grpo import GRPO_FAST
from tests.training.test_runner_ppo import FAST, PROMPTS, _build_reward_model
from training.core.configs import RLConfig
from training.core.data import PromptData
from training.core.launch import LaunchOptions, RankFailed, run_launched
from training.core.reporting import ListReporter
from training.core.runners import RunSpec, run_training

TOLERANCE = 1e-4

# Each rank: 2 prompts x 2 samples = 4 completions, one sampling call, two micro-batches.
PPO = dataclasses.replace(
    FAST, max_steps=2, rollout_sample_batch=4, adaptive_kl=True, whiten_rewards=True
)
GRPO = dataclasses.replace(GRPO_FAST, max_steps=2, rollout_sample_batch=4, adaptive_kl=True)
DATA = PromptData(train=PROMPTS, eval=PROMPTS[:3])
FAST_POLL = LaunchOptions(poll_s=0.05)


@pytest.fixture(scope="module")
def reward_model_path(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_reward_model(tiny_model_path, tmp_path_factory.mktemp("rm") / "reward")


def _spec(kind: str, config: RLConfig, model: Path, reward: Path, out: Path) -> RunSpec:
    return RunSpec(
        kind=kind,  # type: ignore[arg-type]
        config=config,
        model_path=str(model),
        output_dir=out,
        reward_model_path=str(reward),
        device="cpu",
    )


def _per_rollout(reporter: ListReporter) -> dict[int, dict[str, float]]:
    return {r.step: r.metrics for r in reporter.reports if "score" in r.metrics}


# --- the pieces, in one process ----------------------------------------------------------


def test_it_samples_a_share_of_a_rollout_as_the_whole_rollout_samples_it(
    tiny_model_path: Path,
) -> None:
    from transformers import AutoModelForCausalLM

    from training.core.hf import load_tokenizer
    from training.core.rollouts import TransformersRolloutSampler

    tokenizer = load_tokenizer(str(tiny_model_path))
    sampler = TransformersRolloutSampler(
        AutoModelForCausalLM.from_pretrained(tiny_model_path).eval(),
        eos_ids=[tokenizer.eos_token_id],
        pad_id=tokenizer.pad_token_id,
        device="cpu",
        batch_size=4,
    )
    prompts = [tokenizer(text)["input_ids"] for text in PROMPTS[1:5]]
    kw = {"n": 2, "max_new_tokens": 6, "temperature": 1.0, "seed": 11}

    whole = sampler.sample(prompts, **kw)  # type: ignore[arg-type]
    second_half = sampler.sample(prompts[2:], first_row=4, **kw)  # type: ignore[arg-type]
    as_if_first = sampler.sample(prompts[2:], **kw)  # type: ignore[arg-type]

    assert second_half == whole[4:]
    assert as_if_first != second_half  # the position, not the call, seeds a row


def test_it_merges_the_ranks_rollouts_into_the_one_process_rollout() -> None:
    import torch

    from training.core.rl.experience import Rollout, merge_rollouts, pack_rollout

    prompts = [[5, 6, 7], [8], [9, 9], [4, 3, 2, 1]]
    responses = [[1], [2, 3, 4], [5, 6], [7]]

    def rollout(rows: slice, entropy: float) -> tuple[Rollout, torch.Tensor]:
        ids, attn, response_ids, mask = pack_rollout(prompts[rows], responses[rows], pad_id=0)
        per_token = torch.where(mask, response_ids.float() / 10, 0.0)  # a value per token
        scores = torch.tensor([float(len(r)) for r in responses[rows]])
        values = 2 * per_token
        batch = Rollout(
            ids, attn, response_ids, mask, per_token, -per_token, values, torch.tensor(entropy)
        )
        return batch, scores

    whole, whole_scores = rollout(slice(0, 4), 0.0)
    # Rank 0's 4 completion tokens have mean entropy 1, rank 1's 3 tokens 2.
    merged, scores = merge_rollouts([rollout(slice(0, 2), 1.0), rollout(slice(2, 4), 2.0)], 0)

    for name in ("input_ids", "attention_mask", "response_ids", "response_mask", "logprobs"):
        torch.testing.assert_close(getattr(merged, name), getattr(whole, name), msg=name)
    torch.testing.assert_close(merged.ref_logprobs, whole.ref_logprobs)
    torch.testing.assert_close(merged.values, whole.values)
    torch.testing.assert_close(scores, whole_scores)
    torch.testing.assert_close(merged.entropy, torch.tensor((4 * 1.0 + 3 * 2.0) / 7))


# --- 2 ranks under torchrun ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "config"), [("ppo", PPO), ("grpo", GRPO)])
def test_it_trains_in_two_processes_along_the_one_process_run(
    kind: str, config: RLConfig, tiny_model_path: Path, reward_model_path: Path, tmp_path: Path
) -> None:
    single, multi = ListReporter(), ListReporter()
    one = run_training(
        _spec(kind, config, tiny_model_path, reward_model_path, tmp_path / "one"), DATA, single
    )
    two_config = dataclasses.replace(config, num_processes=2)
    two_spec = _spec(kind, two_config, tiny_model_path, reward_model_path, tmp_path / "two")
    two = run_launched(two_spec, DATA, multi)

    assert two.status == one.status == "succeeded" and two.steps == 2
    expected, got = _per_rollout(single), _per_rollout(multi)
    assert list(got) == list(expected) == [1, 2]
    for step, metrics in expected.items():
        assert set(got[step]) == set(metrics)
        for name, value in metrics.items():
            assert got[step][name] == pytest.approx(value, abs=TOLERANCE), (step, name)
    # The adaptive beta moved, alike in both: from the whole rollout's KL.
    assert got[2]["kl_coef"] != got[1]["kl_coef"]
    for name, value in one.eval_metrics.items():
        assert two.eval_metrics[name] == pytest.approx(value, abs=TOLERANCE), name
    assert (tmp_path / "two" / "final" / "model.safetensors").is_file()
    assert sum("saved the trained model" in line for line in multi.lines) == 1


@pytest.mark.slow
def test_it_stops_every_rank_with_a_checkpoint_and_resumes_from_it(
    tiny_model_path: Path, reward_model_path: Path, tmp_path: Path
) -> None:
    config = dataclasses.replace(PPO, num_processes=2, max_steps=4)
    spec = _spec("ppo", config, tiny_model_path, reward_model_path, tmp_path / "run")
    stopping = ListReporter(stop_at_step=1)  # asked once rank 0 reported its first rollout
    stopped = run_launched(spec, DATA, stopping, FAST_POLL)

    assert stopped.status == "cancelled" and 1 <= stopped.steps < 4
    assert any("stop requested" in line for line in stopping.lines)
    checkpoint = stopped.checkpoint_dir
    assert checkpoint == tmp_path / "run" / "checkpoints" / f"checkpoint-{stopped.steps}"
    state = json.loads((checkpoint / "ppo_state.json").read_text())
    assert state["rollout"] == stopped.steps
    assert (checkpoint / "value_head.pt").is_file() and (checkpoint / "policy").is_dir()
    assert not (tmp_path / "run" / "final").exists()

    resumed = ListReporter()
    done = run_launched(dataclasses.replace(spec, resume_from=checkpoint), DATA, resumed)
    assert done.status == "succeeded" and done.steps == 4
    assert list(_per_rollout(resumed)) == list(range(stopped.steps + 1, 5))
    assert _per_rollout(resumed)[stopped.steps + 1]["kl_coef"] == pytest.approx(state["kl_coef"])
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


# Installed in the ranks through PYTHONPATH (Python imports ``sitecustomize`` at start-up):
# rank 1 raises in its second rollout, after rank 0 reported the first.
_FAILING_RANK = """
import os

if os.environ.get("RANK") == "1":
    from training.core.rl import experience

    real = experience.RLExperience.sample_and_score
    calls = []

    def sample_and_score(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("rank 1 lost its prompts in rollout 2")
        return real(self, *args, **kwargs)

    experience.RLExperience.sample_and_score = sample_and_score
"""


@pytest.mark.slow
def test_it_fails_with_the_error_of_the_rank_that_raised(
    tiny_model_path: Path, reward_model_path: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(_FAILING_RANK))
    env = {**os.environ, "PYTHONPATH": str(site)}
    config = dataclasses.replace(GRPO, num_processes=2, max_steps=3)
    spec = _spec("grpo", config, tiny_model_path, reward_model_path, tmp_path / "run")
    reporter = ListReporter()

    with pytest.raises(RankFailed) as failed:
        run_launched(spec, DATA, reporter, env=env)

    assert str(failed.value) == "rank 1 failed: ValueError: rank 1 lost its prompts in rollout 2"
    assert "[rank 1] ValueError: rank 1 lost its prompts in rollout 2" in reporter.lines
    assert list(_per_rollout(reporter)) == [1]
    assert not (tmp_path / "run" / "final").exists()
