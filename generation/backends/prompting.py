"""Prompts as a model reads them: one home for rendering and encoding, shared by sampling
(every generation backend) and training (``training.core.data``, ``training.core.rl``), so a
model is trained on exactly the token ids it is later sampled with.

Imports nothing heavy: no Django, torch or transformers (tokenizers are passed in).
"""

from __future__ import annotations

from typing import Any

from generation.backends.base import BackendError, Message, PromptInput


def render_messages(messages: list[Message]) -> str:
    """A readable rendering of a conversation, for display and search."""
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    return "\n\n".join(f"{names[m['role']]}: {m['content']}" for m in messages)


def render_prompt(tokenizer: Any, prompt: PromptInput, use_chat_template: bool) -> str | None:
    """The chat-template text for a conversation (or for any prompt when the model wants it).

    Returns None for a plain string fed as raw text. A plain string under
    ``use_chat_template`` becomes a single user message.
    """
    if not isinstance(prompt, list) and not use_chat_template:
        return None
    if not getattr(tokenizer, "chat_template", None):
        raise BackendError("this prompt needs a chat template, and the tokenizer has none")
    messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    try:
        return str(
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )
    except Exception as exc:  # jinja and the tokenizer raise many types; name the cause
        raise BackendError(f"the chat template rejected the conversation: {exc}") from exc


def encode_prompt(tokenizer: Any, prompt: PromptInput, use_chat_template: bool) -> list[int]:
    """Token ids for one prompt.

    Raw text gets the tokenizer's usual special tokens (a BOS for Llama-style tokenizers),
    as vLLM would add them. Chat-template text does not: templates write their own BOS,
    and adding another would double it.
    """
    text = render_prompt(tokenizer, prompt, use_chat_template)
    if text is None:
        ids = list(tokenizer(prompt)["input_ids"])
    else:
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if not ids:
        # Generation needs at least one position to condition on.
        if tokenizer.bos_token_id is None:
            raise BackendError("an empty prompt needs a BOS token, and the tokenizer has none")
        ids = [int(tokenizer.bos_token_id)]
    return ids
