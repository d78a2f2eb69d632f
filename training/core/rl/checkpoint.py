"""Loading an RL run's policy (fresh or from a checkpoint) and its reward model, and
saving resumable checkpoints.

A checkpoint (``output_dir/checkpoints/checkpoint-<rollout>/``) holds ``policy/`` (the
adapter with LoRA, else the full model), ``optimizer.pt``, ``rng_state.pt``,
``ppo_state.json`` and, for PPO, ``value_head.pt``; it is written to a temporary folder
and renamed, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.core.configs import RLConfig
from training.core.runners import RunSpec, TrainingError

__all__ = ["Policy", "load_policy", "load_scorer", "save_checkpoint"]

STATE_FILE = "ppo_state.json"
POLICY_DIR = "policy"
VALUE_HEAD_FILE = "value_head.pt"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng_state.pt"


@dataclass
class Policy:
    """What :func:`load_policy` loads: the models, the optimizer and where the run stands."""

    model: Any
    ref_model: Any
    """A frozen copy of the base model, or None with LoRA (the adapters are disabled)."""
    value_head: Any
    """PPO's ``Linear(hidden, 1)`` on the policy's last hidden state; None for GRPO."""
    optimizer: Any
    tokenizer: Any
    rollouts_done: int
    kl_coef: float


def load_scorer(spec: RunSpec, config: RLConfig, device: str) -> Any:
    from training.core.scoring import RewardScorer

    assert spec.reward_model_path is not None
    try:
        return RewardScorer(
            spec.reward_model_path,
            device=device,
            max_length=config.max_length,
            use_chat_template=spec.use_chat_template,
        )
    except TrainingError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingError(
            f"cannot load the reward model {spec.reward_model_path}: {exc}"
        ) from exc


def load_policy(spec: RunSpec, config: RLConfig, device: str, *, value_head: bool) -> Policy:
    """The policy (and reference), PPO's value head (``value_head``) and the optimizer;
    restored when resuming."""
    import torch

    from training.core.hf import apply_lora, disable_dropout, load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(spec.model_path)
    tokenizer.padding_side = "left"
    state: dict[str, Any] = {}
    resume = Path(spec.resume_from) if spec.resume_from else None
    if resume is not None:
        try:
            state = json.loads((resume / STATE_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise TrainingError(f"cannot resume from {resume}: {exc}") from exc
        if bool(state.get("use_lora")) != config.use_lora:
            raise TrainingError(f"checkpoint {resume.name} was saved with another use_lora")

    ref_model = None
    if config.use_lora:
        base = load_causal_lm(spec.model_path, tokenizer)
        if resume is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(base, str(resume / POLICY_DIR), is_trainable=True)
        else:
            # LoRA's A matrices start random: seed them, so a run is reproducible.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                model = apply_lora(base, config, task="CAUSAL_LM")
    else:
        source = str(resume / POLICY_DIR) if resume is not None else spec.model_path
        model = load_causal_lm(source, tokenizer)
        ref_model = load_causal_lm(spec.model_path, tokenizer)
        ref_model.requires_grad_(False)
        ref_model.to(device).eval()
    model.to(device).eval()
    if config.gradient_checkpointing:
        # Checkpointing runs only in train mode; with every dropout at 0 that mode computes
        # what eval mode does, so the update's log-probs stay those of the rollout.
        disable_dropout(model)
        model.gradient_checkpointing_enable()

    head = None
    params = [p for p in model.parameters() if p.requires_grad]
    if value_head:
        head = torch.nn.Linear(int(model.config.hidden_size), 1)
        # Zero start: values begin at 0, and the first advantages are returns, not head noise.
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
        head.to(device)
        params += list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    if resume is not None:
        if head is not None:
            head.load_state_dict(torch.load(resume / VALUE_HEAD_FILE, map_location=device))
        optimizer.load_state_dict(torch.load(resume / OPTIMIZER_FILE, map_location=device))
        set_rng_state(torch.load(resume / RNG_FILE, weights_only=False))
    return Policy(
        model=model,
        ref_model=ref_model,
        value_head=head,
        optimizer=optimizer,
        tokenizer=tokenizer,
        rollouts_done=int(state.get("rollout", 0)),
        kl_coef=float(state.get("kl_coef", config.init_kl_coef)),
    )


def save_checkpoint(path: Path, policy: Policy, *, state: dict[str, Any]) -> Path:
    """Write a resumable checkpoint to ``path`` via a temporary folder and a rename."""
    import torch

    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # With LoRA, save_pretrained writes only the adapter; the base comes from model_path.
    policy.model.save_pretrained(str(tmp / POLICY_DIR), safe_serialization=True)
    policy.tokenizer.save_pretrained(str(tmp / POLICY_DIR))
    if policy.value_head is not None:
        torch.save(policy.value_head.state_dict(), tmp / VALUE_HEAD_FILE)
    torch.save(policy.optimizer.state_dict(), tmp / OPTIMIZER_FILE)
    torch.save(rng_state(), tmp / RNG_FILE)
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return path


def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
