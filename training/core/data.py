"""Training data as plain Python: what a runner trains on, and how it becomes token ids.

The Django side reads a frozen ``DatasetSnapshot`` and hands a runner one of
:class:`PreferenceData` (reward, DPO), :class:`SFTData` (SFT) or :class:`PromptData` (PPO).
Nothing here imports Django; torch and transformers are not needed either (tokenizers are
passed in).

Prompts and completions are tokenized exactly as the generation backends do it
(:func:`generation.backends.prompting.encode_prompt`, the one home of prompt rendering), so a model is trained on the same
token ids it is later sampled with: the prompt (raw text with the tokenizer's special tokens,
or the chat template's text), then the completion's tokens, then EOS.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from generation.backends.base import PromptInput
from generation.backends.prompting import encode_prompt, render_messages

__all__ = [
    "PairRecord",
    "PreferenceData",
    "PreferenceGroup",
    "PromptData",
    "RankingRecord",
    "RunData",
    "SFTData",
    "SFTExample",
    "UnpairedData",
    "UnpairedExample",
    "encode_completion",
    "preference_groups",
    "ranking_groups",
]


@dataclass(frozen=True)
class PreferenceGroup:
    """One prompt, its distinct completions, and the preferences among them.

    ``pairs`` index ``completions``: ``(chosen, rejected)``. ``margins`` holds one value per
    pair (a preference strength, from rank gaps or scores) or is empty when none is known.
    Each completion appears once however many pairs it is in, so a grouped trainer forwards
    it once (InstructGPT's trick).

    ``rankings`` (listwise data, see :func:`ranking_groups`) holds each annotator's whole
    ranking of the prompt's completions: tie groups best first, each a tuple of indices
    into ``completions``. Empty for pair data. ``ranking_scores`` holds, per ranking, the
    annotator's score of each of its completions in that flattened order (None where not
    scored), or is empty when no ranking has scores.
    """

    prompt: PromptInput
    completions: tuple[str, ...]
    pairs: tuple[tuple[int, int], ...]
    margins: tuple[float, ...] = ()
    rankings: tuple[tuple[tuple[int, ...], ...], ...] = ()
    ranking_scores: tuple[tuple[float | None, ...], ...] = ()

    def __post_init__(self) -> None:
        n = len(self.completions)
        for chosen, rejected in self.pairs:
            if not (0 <= chosen < n and 0 <= rejected < n) or chosen == rejected:
                raise ValueError(f"pair {(chosen, rejected)} does not index {n} completions")
        if self.margins and len(self.margins) != len(self.pairs):
            raise ValueError("margins must be empty or have one value per pair")
        for ranking in self.rankings:
            members = [c for group in ranking for c in group]
            if len(set(members)) != len(members) or not all(0 <= c < n for c in members):
                raise ValueError(f"ranking {ranking} does not index {n} distinct completions")
        if self.ranking_scores and [len(s) for s in self.ranking_scores] != [
            sum(len(group) for group in r) for r in self.rankings
        ]:
            raise ValueError("ranking_scores must hold one score (or None) per ranked completion")


@dataclass(frozen=True)
class PairRecord:
    """One preference pair as a snapshot stores it; the keys identify prompts/completions."""

    prompt_key: Hashable
    prompt: PromptInput
    chosen_key: Hashable
    chosen: str
    rejected_key: Hashable
    rejected: str
    margin: float | None = None


def preference_groups(records: Iterable[PairRecord]) -> list[PreferenceGroup]:
    """Group flat pairs by prompt, each distinct completion once, in first-seen order.

    A pair repeated (two annotators agreeing) stays repeated: it weighs twice, as in the
    export. Margins are kept only when every pair of the group has one.
    """
    prompts: dict[Hashable, PromptInput] = {}
    completions: dict[Hashable, dict[Hashable, int]] = {}
    texts: dict[Hashable, list[str]] = {}
    pairs: dict[Hashable, list[tuple[int, int]]] = {}
    margins: dict[Hashable, list[float | None]] = {}
    for r in records:
        if r.prompt_key not in prompts:
            prompts[r.prompt_key] = r.prompt
            completions[r.prompt_key], texts[r.prompt_key] = {}, []
            pairs[r.prompt_key], margins[r.prompt_key] = [], []
        index = completions[r.prompt_key]
        for key, text in ((r.chosen_key, r.chosen), (r.rejected_key, r.rejected)):
            if key not in index:
                index[key] = len(texts[r.prompt_key])
                texts[r.prompt_key].append(text)
        pairs[r.prompt_key].append((index[r.chosen_key], index[r.rejected_key]))
        margins[r.prompt_key].append(r.margin)
    groups = []
    for key, prompt in prompts.items():
        group_margins = margins[key]
        known = all(m is not None for m in group_margins)
        groups.append(
            PreferenceGroup(
                prompt=prompt,
                completions=tuple(texts[key]),
                pairs=tuple(pairs[key]),
                margins=tuple(float(m) for m in group_margins if m is not None) if known else (),
            )
        )
    return groups


@dataclass(frozen=True)
class RankingRecord:
    """One annotator's whole ranking of a prompt's completions, as a snapshot froze it.

    ``order`` holds tie groups best first; each member is ``(completion key, text)``.
    ``scores`` maps a completion key to the annotator's score of it (1-7), where given.
    """

    prompt_key: Hashable
    prompt: PromptInput
    order: tuple[tuple[tuple[Hashable, str], ...], ...]
    scores: tuple[tuple[Hashable, float], ...] = ()


def ranking_groups(records: Iterable[RankingRecord]) -> list[PreferenceGroup]:
    """Group whole rankings by prompt, each distinct completion once, in first-seen order.

    Every ranking of a prompt (one per annotator) is kept as given, in ``rankings``; its
    non-tied pairs are also listed in ``pairs`` (each ranking's ``C(k, 2)`` minus ties), so
    pair metrics and pairwise losses read the same data.
    """
    prompts: dict[Hashable, PromptInput] = {}
    index: dict[Hashable, dict[Hashable, int]] = {}
    texts: dict[Hashable, list[str]] = {}
    rankings: dict[Hashable, list[tuple[tuple[int, ...], ...]]] = {}
    scores: dict[Hashable, list[tuple[float | None, ...]]] = {}
    for record in records:
        if record.prompt_key not in prompts:
            prompts[record.prompt_key] = record.prompt
            index[record.prompt_key], texts[record.prompt_key] = {}, []
            rankings[record.prompt_key], scores[record.prompt_key] = [], []
        seen = index[record.prompt_key]
        given = dict(record.scores)
        order, ranking_scores = [], []
        for group in record.order:
            members = []
            for key, text in group:
                if key not in seen:
                    seen[key] = len(texts[record.prompt_key])
                    texts[record.prompt_key].append(text)
                members.append(seen[key])
                ranking_scores.append(given.get(key))
            if members:
                order.append(tuple(members))
        rankings[record.prompt_key].append(tuple(order))
        scores[record.prompt_key].append(tuple(ranking_scores))
    groups = []
    for key, prompt in prompts.items():
        pairs = [
            (winner, loser)
            for ranking in rankings[key]
            for rank, group in enumerate(ranking)
            for winner in group
            for below in ranking[rank + 1 :]
            for loser in below
        ]
        groups.append(
            PreferenceGroup(
                prompt=prompt,
                completions=tuple(texts[key]),
                pairs=tuple(pairs),
                rankings=tuple(rankings[key]),
                ranking_scores=(
                    tuple(scores[key]) if any(v is not None for r in scores[key] for v in r) else ()
                ),
            )
        )
    return groups


@dataclass(frozen=True)
class SFTExample:
    """A prompt and the completion to imitate."""

    prompt: PromptInput
    completion: str


@dataclass(frozen=True)
class PreferenceData:
    """Reward-model and DPO data: preference groups, train and held-out."""

    train: Sequence[PreferenceGroup]
    eval: Sequence[PreferenceGroup] = ()


@dataclass(frozen=True)
class SFTData:
    """SFT data: demonstrations (or chosen completions), train and held-out."""

    train: Sequence[SFTExample]
    eval: Sequence[SFTExample] = ()


@dataclass(frozen=True)
class PromptData:
    """PPO data: prompts to roll out on, train and held-out."""

    train: Sequence[PromptInput]
    eval: Sequence[PromptInput] = field(default_factory=tuple)


@dataclass(frozen=True)
class UnpairedExample:
    """One answer to a prompt, labeled desirable (good) or not (KTO's unpaired format)."""

    prompt: PromptInput
    completion: str
    desirable: bool


@dataclass(frozen=True)
class UnpairedData:
    """KTO data: single labeled answers, train and held-out."""

    train: Sequence[UnpairedExample]
    eval: Sequence[UnpairedExample] = ()


RunData = PreferenceData | SFTData | PromptData | UnpairedData


def encode_completion(
    tokenizer: Any,
    prompt: PromptInput,
    completion: str,
    *,
    use_chat_template: bool,
    max_length: int,
    conversation_as_text: bool = False,
) -> tuple[list[int], int]:
    """Token ids of ``prompt`` + ``completion`` + EOS, and how many of them are the prompt.

    The prompt is encoded as the generation backends encode it, so training sees the ids
    sampling produced. Longer than ``max_length``: the completion keeps at least half of the
    budget (cut at its end, where it matters least for a preference), and the prompt keeps
    its last tokens, nearest the completion. Always leaves at least one prompt token and
    one completion token.

    A tokenizer with no EOS (an encoder's: BERT, DeBERTa) ends the completion with its
    separator token instead, so the input reads ``[CLS] prompt [SEP] completion [SEP]``.
    ``conversation_as_text`` (reward models, which never generate): a conversation given to
    a tokenizer with no chat template is read as its plain-text rendering
    (``User: ...\n\nAssistant: ...``, as a prompt's stored text renders it) rather than
    refused.
    """
    if max_length < 2:
        raise ValueError("max_length must be >= 2")
    if conversation_as_text and isinstance(prompt, list):
        if not getattr(tokenizer, "chat_template", None):
            prompt = render_messages(prompt)  # type: ignore[arg-type]
    prompt_ids = encode_prompt(tokenizer, prompt, use_chat_template)
    completion_ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
    end = tokenizer.eos_token_id
    if end is None:
        end = getattr(tokenizer, "sep_token_id", None)
    if end is not None:
        completion_ids.append(int(end))
    if not completion_ids:
        raise ValueError("a completion needs at least one token (the tokenizer has no EOS)")
    if len(prompt_ids) + len(completion_ids) > max_length:
        prompt_budget = max(1, min(len(prompt_ids), max_length - len(completion_ids)))
        prompt_budget = max(prompt_budget, min(len(prompt_ids), max_length - max_length // 2))
        prompt_ids = prompt_ids[-prompt_budget:]
        completion_ids = completion_ids[: max_length - len(prompt_ids)]
    return prompt_ids + completion_ids, len(prompt_ids)
