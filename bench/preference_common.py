"""Shared pieces of the preference-training benchmarks (bench/reward_training.py, bench/dpo.py).

Both compare a grouped trainer (each of a prompt's k completions forwarded once, all its
C(k, 2) pairs scored from those outputs) with TRL's trainer on the same rankings expanded
into pairs, on the same model, data and pairs per optimizer step. Timing starts after the
first optimizer step (lazy initialisation, allocator warm-up) and ends at the last one, so
loading, tokenisation and saving count for neither arm.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.core.data import PreferenceGroup

_WORDS = (
    "once upon a time in a land far away there lived a small fox who loved bread and the "
    "reward model scores each response while the policy learns to prefer the chosen one"
).split()


def synthetic_rankings(prompts: int, k: int, *, seed: int = 0) -> list[PreferenceGroup]:
    """``prompts`` prompts with ``k`` completions each, fully ranked: every C(k, 2) pair.

    Completions vary in length (16 to 48 words) as real samples do; the ranking is a
    seeded random permutation, so there is no signal to learn, only work to time.
    """
    rng = random.Random(seed)
    groups = []
    for i in range(prompts):
        prompt = f"Question {i}: " + " ".join(rng.choices(_WORDS, k=rng.randint(8, 20)))
        completions = tuple(" ".join(rng.choices(_WORDS, k=rng.randint(16, 48))) for _ in range(k))
        order = list(range(k))
        rng.shuffle(order)  # order[0] is the best
        pairs = tuple((order[a], order[b]) for a in range(k) for b in range(a + 1, k))
        groups.append(PreferenceGroup(prompt=prompt, completions=completions, pairs=pairs))
    return groups


def expanded_pairs(groups: list[PreferenceGroup]) -> list[tuple[Any, str, str]]:
    """Every pair of every group as (prompt, chosen text, rejected text), in group order."""
    return [(g.prompt, g.completions[w], g.completions[r]) for g in groups for w, r in g.pairs]


def build_bench_model(path: Path, *, hidden: int, layers: int) -> Path:
    """A random-init Llama with the tiny model's tokenizer, big enough that compute dominates.

    ``hidden`` / 64 heads of 64; written with save_pretrained like any local model.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from generation.tiny_model import TinyModelSpec, build_tiny_model

    build_tiny_model(path, TinyModelSpec())  # tokenizer + config files
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 64),
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path, safe_serialization=True)
    return path


@dataclass
class StepClock:
    """Wall-clock time at the end of each optimizer step; the rate skips the first step."""

    times: list[float] = field(default_factory=list)

    def tick(self) -> None:
        self.times.append(time.perf_counter())

    def seconds(self) -> float:
        if len(self.times) < 2:
            raise RuntimeError("need at least two optimizer steps to time")
        return self.times[-1] - self.times[0]

    @property
    def timed_steps(self) -> int:
        return len(self.times) - 1


def device_name() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
