"""Multi-process runs (``training.core.launch``): real torchrun process groups of 2 ranks on
the gloo backend, on the tiny model, against the same run in one process.

Why the loss curves must agree to ``LOSS_TOLERANCE`` (1e-4, absolute): the two runs train
on the same global batches in the same order (torchrun's ranks each take one half of every
batch the one-process run takes whole), from the same initial weights, with dropout off.
What differs is only floating-point rounding: each rank's forward runs on half the rows
(other matrix shapes, so other summation orders in the BLAS kernels), and the batch's
gradient is the all-reduced mean of two half-batch means instead of one mean. Each is a
float32 rounding difference of order 1e-7 relative; Adam's update divides by the root of
the gradient's second moment, which can magnify a relative difference in a tiny gradient
entry, but over a handful of steps at these learning rates the losses (about 0.1 to 0.7)
move by far less than 1e-4. A real fault moves them by much more: a rank training on the
wrong half, a batch counted twice, or gradients not averaged (each rank stepping on its own
half) changes the loss from the second step on by 1e-3 or more.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import textwrap
from pathlib import Path

import pytest

from training.core.configs import CommonConfig, DPOConfig, RewardConfig
from training.core.data import PreferenceData, PreferenceGroup
from training.core.launch import (
    LaunchOptions,
    RankFailed,
    launcher_command,
    parallelism_arguments,
    run_launched,
)
from training.core.reporting import ListReporter
from training.core.runners import RunResult, RunSpec, TrainingError, run_training

LOSS_TOLERANCE = 1e-4

# Equal-sized groups: each rank's half of a batch then holds as many pairs as the other,
# and the mean of the two halves' means is the batch's mean (see the module docstring).
REWARD_GROUPS = tuple(
    PreferenceGroup(
        prompt=f"Question number {i}?",
        completions=(f"A careful answer to {i}.", f"No {i * 7}."),
        pairs=((0, 1),),
    )
    for i in range(8)
)
DPO_GROUPS = tuple(
    PreferenceGroup(
        prompt=[{"role": "user", "content": f"Tell me about {topic}."}],
        completions=(f"{topic} is interesting.", "No.", f"I like {topic}."),
        pairs=((0, 1), (2, 1)),
    )
    for topic in ("rain", "bread", "cats", "trains")
)


def _spec(kind: str, config: CommonConfig, model: Path, out: Path, **kw: object) -> RunSpec:
    return RunSpec(
        kind=kind,  # type: ignore[arg-type]
        config=config,
        model_path=str(model),
        output_dir=out,
        device="cpu",
        **kw,  # type: ignore[arg-type]
    )


def _losses(reporter: ListReporter) -> dict[int, float]:
    return {r.step: r.metrics["loss"] for r in reporter.reports if "loss" in r.metrics}


def _assert_same_curve(single: dict[int, float], multi: dict[int, float]) -> None:
    assert list(multi) == list(single)
    for step, loss in single.items():
        assert multi[step] == pytest.approx(loss, abs=LOSS_TOLERANCE), step


def _one_and_two(
    kind: str, config: CommonConfig, data: PreferenceData, model: Path, tmp: Path
) -> tuple[tuple[RunResult, ListReporter], tuple[RunResult, ListReporter]]:
    single, multi = ListReporter(), ListReporter()
    one = run_training(_spec(kind, config, model, tmp / "one"), data, single)
    two_config = dataclasses.replace(config, num_processes=2)
    two = run_launched(_spec(kind, two_config, model, tmp / "two"), data, multi)
    return (one, single), (two, multi)


REWARD = RewardConfig(learning_rate=1e-3, batch_size=4, max_steps=4, logging_steps=1, max_length=64)
DPO = DPOConfig(
    learning_rate=1e-3, beta=0.5, batch_size=2, max_steps=3, logging_steps=1, max_length=64
)


@pytest.mark.slow
def test_it_trains_a_reward_model_in_two_processes_along_the_one_process_curve(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    data = PreferenceData(train=REWARD_GROUPS, eval=REWARD_GROUPS[:2])
    (one, single), (two, multi) = _one_and_two("reward", REWARD, data, tiny_model_path, tmp_path)

    assert two.status == "succeeded" and two.steps == one.steps == 4
    _assert_same_curve(_losses(single), _losses(multi))
    # The other metrics are averaged over both ranks, not rank 0's half alone.
    training = [[r for r in rep.reports if "loss" in r.metrics] for rep in (single, multi)]
    for a, b in zip(*training, strict=True):
        for name in ("rewards/accuracies", "rewards/margins"):
            assert b.metrics[name] == pytest.approx(a.metrics[name], abs=LOSS_TOLERANCE)
    assert two.final_dir == tmp_path / "two" / "final"
    assert (two.final_dir / "model.safetensors").is_file()
    for name, value in one.eval_metrics.items():
        assert two.eval_metrics[name] == pytest.approx(value, abs=LOSS_TOLERANCE)
    # Rank 0's log lines reached the caller, once each.
    assert sum("training pairs" in line for line in multi.lines) == 1
    assert any(line.startswith("launching 2 processes") for line in multi.lines)


@pytest.mark.slow
def test_it_trains_dpo_in_two_processes_along_the_one_process_curve(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    data = PreferenceData(train=DPO_GROUPS, eval=DPO_GROUPS[:1])
    (one, single), (two, multi) = _one_and_two("dpo", DPO, data, tiny_model_path, tmp_path)

    assert two.status == "succeeded" and two.steps == one.steps == 3
    curve = _losses(multi)
    _assert_same_curve(_losses(single), curve)
    assert curve[3] < curve[1]
    assert (tmp_path / "two" / "final" / "model.safetensors").is_file()


@pytest.mark.slow
def test_it_stops_every_rank_at_a_checkpoint_and_resumes_from_it(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    """A stop requested before the group started stops both ranks after their first step
    (the first point where they ask), with a checkpoint of it (the model, the optimizer and
    each rank's RNG state); the resumed group ends on the curve of a one-process run that
    was never stopped."""
    data = PreferenceData(train=REWARD_GROUPS, eval=())
    config = dataclasses.replace(REWARD, num_processes=2)
    out = tmp_path / "two"
    stopping = ListReporter()
    stopping.request_stop()
    stopped = run_launched(_spec("reward", config, tiny_model_path, out), data, stopping)

    assert stopped.status == "cancelled" and stopped.steps == 1
    assert stopped.checkpoint_dir == out / "checkpoints" / "checkpoint-1"
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {
        p.name for p in stopped.checkpoint_dir.iterdir()
    }
    assert any("stop requested" in line for line in stopping.lines)

    resumed = ListReporter()
    spec = _spec("reward", config, tiny_model_path, out, resume_from=stopped.checkpoint_dir)
    done = run_launched(spec, data, resumed)
    assert done.status == "succeeded" and done.steps == 4
    single = ListReporter()
    run_training(_spec("reward", REWARD, tiny_model_path, tmp_path / "one"), data, single)
    _assert_same_curve(_losses(single), {**_losses(stopping), **_losses(resumed)})


# Installed in the ranks through PYTHONPATH (Python imports ``sitecustomize`` at start-up):
# rank 1 raises in the middle of training, after its report of step 2.
_FAILING_RANK = """
import os

if os.environ.get("RANK") == "1":
    from training.core import hf

    real_on_log = hf.ReporterCallback.on_log

    def on_log(self, state, logs):
        if state.global_step >= 2:
            raise ValueError("rank 1 lost its data at step 2")
        return real_on_log(self, state, logs)

    hf.ReporterCallback.on_log = on_log
"""


@pytest.mark.slow
def test_it_fails_with_the_error_of_the_rank_that_raised(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(_FAILING_RANK))
    env = {**os.environ, "PYTHONPATH": str(site)}
    config = dataclasses.replace(REWARD, num_processes=2)
    reporter = ListReporter()
    data = PreferenceData(train=REWARD_GROUPS, eval=())

    with pytest.raises(RankFailed) as failed:
        run_launched(
            _spec("reward", config, tiny_model_path, tmp_path / "run"), data, reporter, env=env
        )

    assert str(failed.value) == "rank 1 failed: ValueError: rank 1 lost its data at step 2"
    # Rank 1's traceback is in the log, line by line, and rank 0 had reported step 1.
    assert "[rank 1] ValueError: rank 1 lost its data at step 2" in reporter.lines
    assert any(line.startswith("[rank 1] Traceback") for line in reporter.lines)
    assert 1 in _losses(reporter)


@pytest.mark.slow
def test_it_fails_with_a_ranks_own_message_for_a_problem_a_person_can_fix(tmp_path: Path) -> None:
    config = dataclasses.replace(REWARD, num_processes=2)
    data = PreferenceData(train=REWARD_GROUPS, eval=())
    missing = tmp_path / "no-such-model"

    with pytest.raises(TrainingError) as failed:
        run_launched(_spec("reward", config, missing, tmp_path / "run"), data, ListReporter())

    assert not isinstance(failed.value, RankFailed)
    assert str(failed.value) == f"model folder {missing} does not exist"


def test_it_refuses_to_train_a_multi_process_config_in_one_process(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    config = dataclasses.replace(REWARD, num_processes=2)
    data = PreferenceData(train=REWARD_GROUPS, eval=())

    with pytest.raises(TrainingError, match="asks for 2 processes but runs in 1"):
        run_training(_spec("reward", config, tiny_model_path, tmp_path), data, ListReporter())


def test_it_launches_one_machine_standalone_and_several_through_a_rendezvous(
    tmp_path: Path,
) -> None:
    one = launcher_command(tmp_path, 2)
    assert one[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in one and "--nproc-per-node=2" in one
    assert one[-4:] == ["-m", "training.core.launch", "rank", str(tmp_path)]

    options = LaunchOptions(num_nodes=3, rdzv_endpoint="trainer-0:29400", run_id="preflab-7")
    second = launcher_command(tmp_path, 8, options, node_rank=1)
    assert "--standalone" not in second
    for arg in (
        "--nnodes=3",
        "--node-rank=1",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=trainer-0:29400",
        "--rdzv-id=preflab-7",
        "--nproc-per-node=8",
    ):
        assert arg in second
    with pytest.raises(TrainingError, match="rendezvous"):
        launcher_command(tmp_path, 8, LaunchOptions(num_nodes=2))


def test_it_passes_the_parallelism_presets_as_the_trainers_own_settings(tmp_path: Path) -> None:
    assert parallelism_arguments(REWARD) == {}
    fsdp = parallelism_arguments(dataclasses.replace(REWARD, parallelism="fsdp"))
    assert fsdp == {"fsdp": "full_shard auto_wrap", "fsdp_config": {}}
    zero3 = parallelism_arguments(dataclasses.replace(REWARD, parallelism="deepspeed_zero3"))
    assert zero3["deepspeed"]["zero_optimization"]["stage"] == 3
    assert zero3["deepspeed"]["train_micro_batch_size_per_gpu"] == "auto"

    custom = tmp_path / "ds.json"
    custom.write_text('{"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}}')
    config = dataclasses.replace(
        REWARD, parallelism="deepspeed_zero2", parallelism_config=str(custom)
    )
    assert parallelism_arguments(config)["deepspeed"]["zero_optimization"]["offload_optimizer"]
    custom.write_text("[1, 2]")
    with pytest.raises(TrainingError, match="not a JSON object"):
        parallelism_arguments(config)
