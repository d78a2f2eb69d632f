"""Training configs: defaults, validation, JSON round trips and field listing."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

import pytest

from training.core.configs import (
    CONFIG_CLASSES,
    CommonConfig,
    ConfigError,
    DPOConfig,
    GRPOConfig,
    KTOConfig,
    PPOConfig,
    RewardConfig,
    RLConfig,
    SFTConfig,
    config_fields,
    from_dict,
)

KINDS = sorted(CONFIG_CLASSES)


def test_it_maps_each_kind_to_its_class() -> None:
    assert CONFIG_CLASSES == {
        "reward": RewardConfig,
        "dpo": DPOConfig,
        "ppo": PPOConfig,
        "grpo": GRPOConfig,
        "sft": SFTConfig,
        "kto": KTOConfig,
    }


@pytest.mark.parametrize("kind", KINDS)
def test_it_validates_the_defaults(kind: str) -> None:
    config = CONFIG_CLASSES[kind]()

    assert config.errors() == []
    assert config.validate() is config


def test_it_has_the_documented_defaults() -> None:
    dpo, ppo, reward = DPOConfig(), PPOConfig(), RewardConfig()

    assert (dpo.beta, dpo.label_smoothing, dpo.precompute_ref_log_probs, dpo.grouped) == (
        0.1,
        0.0,
        False,
        True,
    )
    assert reward.grouped is True and reward.use_margin is False
    assert (ppo.init_kl_coef, ppo.adaptive_kl, ppo.kl_target, ppo.kl_horizon) == (
        0.3,
        False,
        6.0,
        10000,
    )
    assert (ppo.ppo_epochs, ppo.gamma, ppo.lam, ppo.clip_range, ppo.clip_range_value) == (
        4,
        1.0,
        0.95,
        0.2,
        0.2,
    )
    assert (ppo.vf_coef, ppo.whiten_rewards) == (0.1, False)
    assert (ppo.rollout_backend, ppo.vllm_gpu_memory_utilization) == ("transformers", 0.3)
    assert (ppo.normalize_rewards, ppo.reward_clip, ppo.length_penalty) == (True, 0.0, 0.0)
    grpo = GRPOConfig()
    assert (grpo.rollout_k, grpo.advantage, grpo.init_kl_coef) == (4, "grpo", 0.3)
    assert not hasattr(grpo, "vf_coef") and not hasattr(grpo, "gamma")


BAD_VALUES: list[tuple[str, str, Any]] = [
    ("sft", "learning_rate", 0.0),
    ("sft", "learning_rate", -1e-5),
    ("sft", "num_epochs", 0),
    ("sft", "max_steps", -1),
    ("sft", "batch_size", 0),
    ("sft", "gradient_accumulation_steps", 0),
    ("sft", "max_length", 1),
    ("sft", "max_grad_norm", -1.0),
    ("sft", "seed", -1),
    ("sft", "logging_steps", 0),
    ("sft", "save_steps", -5),
    ("reward", "batch_size", 0),
    ("dpo", "beta", 0.0),
    ("dpo", "beta", -0.1),
    ("dpo", "label_smoothing", 0.5),
    ("dpo", "label_smoothing", -0.1),
    ("ppo", "init_kl_coef", -0.01),
    ("ppo", "rollout_k", 0),
    ("ppo", "rollout_batch_prompts", 0),
    ("ppo", "max_new_tokens", 0),
    ("ppo", "temperature", 0.0),
    ("ppo", "ppo_epochs", 0),
    ("ppo", "minibatch_size", 0),
    ("ppo", "minibatch_size", 9),  # more than rollout_k * rollout_batch_prompts = 8
    ("ppo", "gamma", 1.5),
    ("ppo", "gamma", -0.1),
    ("ppo", "lam", 1.01),
    ("ppo", "lam", -0.5),
    ("ppo", "clip_range", 0.0),
    ("ppo", "clip_range_value", -0.2),
    ("ppo", "vf_coef", -1.0),
    ("ppo", "vllm_gpu_memory_utilization", 0.0),
    ("ppo", "vllm_gpu_memory_utilization", 1.5),
    ("ppo", "rollout_backend", "sglang"),
    ("ppo", "rollout_sample_batch", 0),
    ("ppo", "reward_clip", -1.0),
    ("ppo", "length_penalty", -0.01),
    ("grpo", "rollout_k", 1),
    ("grpo", "advantage", "ppo"),
    ("grpo", "clip_range", 0.0),
]


@pytest.mark.parametrize(("kind", "field", "value"), BAD_VALUES)
def test_it_rejects_a_bad_value_naming_the_field(kind: str, field: str, value: Any) -> None:
    config = dataclasses.replace(CONFIG_CLASSES[kind](), **{field: value})

    with pytest.raises(ConfigError) as excinfo:
        config.validate()

    assert excinfo.value.field == field
    assert str(excinfo.value).startswith(f"{field}: ")
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize(
    ("field", "value"), [("lora_r", 0), ("lora_alpha", 0), ("lora_dropout", 1.0)]
)
def test_it_checks_lora_settings_only_when_lora_is_on(field: str, value: Any) -> None:
    off = RewardConfig(**{field: value})
    on = RewardConfig(use_lora=True, **{field: value})

    assert off.errors() == []
    with pytest.raises(ConfigError, match=field):
        on.validate()


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"rollout_batch_prompts": 6}, "rollout_batch_prompts", "multiple of the number"),
        ({"batch_size": 4, "minibatch_size": 4}, "minibatch_size", ">= batch_size * num_"),
        ({"rollout_backend": "vllm"}, "rollout_backend", "vllm samples in one process"),
        ({"num_nodes": 2}, "num_nodes", "one machine"),
        ({"parallelism": "fsdp"}, "parallelism", "ddp only"),
    ],
)
@pytest.mark.parametrize("kind", ["ppo", "grpo"])
def test_it_refuses_an_rl_run_in_processes_it_cannot_share(
    kind: str, config: dict[str, Any], field: str, message: str
) -> None:
    # Valid in 4 processes: 8 prompts (2 each), minibatches of 8 micro-batches of 1.
    rl: type[RLConfig] = PPOConfig if kind == "ppo" else GRPOConfig
    four = rl(num_processes=4, batch_size=1, minibatch_size=8)
    assert four.validate() is four
    # batch_size is each process's micro-batch here, not a global batch to split.
    assert dataclasses.replace(four, batch_size=2, minibatch_size=8).validate()

    with pytest.raises(ConfigError) as excinfo:
        dataclasses.replace(four, **config).validate()

    assert excinfo.value.field == field and message in str(excinfo.value)


def test_it_checks_the_adaptive_kl_settings_only_when_adaptive() -> None:
    assert PPOConfig(kl_target=0.0, kl_horizon=0).errors() == []

    problems = PPOConfig(adaptive_kl=True, kl_target=0.0, kl_horizon=0).errors()

    assert [p.field for p in problems] == ["kl_target", "kl_horizon"]


def test_it_lists_every_problem_in_field_order() -> None:
    config = DPOConfig(learning_rate=0.0, batch_size=0, beta=0.0)

    assert [p.field for p in config.errors()] == ["learning_rate", "batch_size", "beta"]


def test_it_reports_a_wrongly_typed_field_instead_of_crashing() -> None:
    config = SFTConfig(batch_size="4")  # type: ignore[arg-type]

    with pytest.raises(ConfigError, match="batch_size: must be an integer"):
        config.validate()


@pytest.mark.parametrize("kind", KINDS)
def test_it_round_trips_through_json(kind: str) -> None:
    config = CONFIG_CLASSES[kind](learning_rate=3e-4, num_epochs=2, seed=7, use_lora=True)

    loaded = from_dict(kind, json.loads(json.dumps(config.to_dict())))

    assert loaded == config
    assert type(loaded) is type(config)


def test_it_builds_from_a_class_as_well_as_a_kind() -> None:
    config = from_dict(DPOConfig, {"beta": 0.5})

    assert isinstance(config, DPOConfig)
    assert config.beta == 0.5
    assert config.batch_size == DPOConfig().batch_size  # missing keys take their defaults


def test_it_rejects_unknown_keys_naming_them() -> None:
    with pytest.raises(ConfigError) as excinfo:
        from_dict("dpo", {"beta": 0.2, "bta": 0.1, "kl_coef": 1.0})

    assert excinfo.value.field == "bta, kl_coef"
    assert "unknown" in str(excinfo.value)


def test_it_rejects_a_field_of_another_kind() -> None:
    with pytest.raises(ConfigError, match="beta"):
        from_dict("ppo", {"beta": 0.1})


def test_it_rejects_an_unknown_kind() -> None:
    with pytest.raises(ConfigError, match="kind"):
        from_dict("a2c", {})


def test_it_coerces_lossless_json_numbers() -> None:
    config = from_dict("ppo", {"num_epochs": 2.0, "learning_rate": 1, "init_kl_coef": 0})

    assert config.num_epochs == 2 and type(config.num_epochs) is int
    assert config.learning_rate == 1.0 and type(config.learning_rate) is float
    assert isinstance(config, PPOConfig) and type(config.init_kl_coef) is float


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_epochs", "2"),
        ("num_epochs", 2.5),
        ("num_epochs", True),
        ("learning_rate", "1e-5"),
        ("learning_rate", float("nan")),
        ("learning_rate", float("inf")),
        ("learning_rate", None),
        ("use_lora", 1),
        ("use_lora", "true"),
        ("lora_target_modules", 3),
        ("grouped_reduction", "mean"),
    ],
)
def test_it_rejects_wrong_json_types(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as excinfo:
        from_dict("dpo", {field: value})

    assert excinfo.value.field == field


def test_it_validates_what_it_loads() -> None:
    with pytest.raises(ConfigError, match="beta"):
        from_dict("dpo", {"beta": -1.0})


@pytest.mark.parametrize("kind", KINDS)
def test_it_lists_fields_with_type_default_and_help(kind: str) -> None:
    fields = config_fields(kind)
    cls = CONFIG_CLASSES[kind]

    assert [f.name for f in fields] == [f.name for f in dataclasses.fields(cls)]
    defaults = cls().to_dict()
    for field in fields:
        name, type_, default, help_text = field
        assert default == defaults[name]
        assert help_text and "\n" not in help_text, f"{kind}.{name} has no one-line help"
        assert type_ in (int, float, bool, str) or typing.get_origin(type_) is typing.Literal


def test_it_lists_the_common_fields_first_and_the_choices_of_literals() -> None:
    fields = {f.name: f for f in config_fields("ppo")}
    common = [f.name for f in dataclasses.fields(CommonConfig)]

    assert [f.name for f in config_fields("ppo")][: len(common)] == common
    assert fields["kl_estimator"].choices == ("k1", "k2", "k3")
    assert fields["gamma"].choices == ()
    assert fields["learning_rate"].help == "Peak learning rate of the AdamW optimizer."


def test_configs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DPOConfig().beta = 0.5  # type: ignore[misc]


def test_it_checks_the_listwise_and_regression_options() -> None:
    assert from_dict("reward", {"loss": "score_regression"}).loss == "score_regression"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError) as caught:
        from_dict("reward", {"loss": "plackett_luce", "use_margin": True})
    assert caught.value.field == "use_margin"
    with pytest.raises(ConfigError) as caught:
        from_dict("dpo", {"loss": "plackett_luce", "grouped": False})
    assert caught.value.field == "grouped"
    with pytest.raises(ConfigError) as caught:
        from_dict("dpo", {"loss": "plackett_luce", "label_smoothing": 0.1})
    assert caught.value.field == "label_smoothing"
    with pytest.raises(ConfigError) as caught:
        from_dict("dpo", {"loss": "score_regression"})
    assert caught.value.field == "loss"
