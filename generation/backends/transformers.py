"""The transformers backend: batched ``generate`` with left padding. The default on CPU."""

from __future__ import annotations

from typing import Any

from generation.backends.base import (
    BackendError,
    BackendSpec,
    PromptInput,
    Sample,
    SamplingParams,
)


def render_prompt(tokenizer: Any, prompt: PromptInput, use_chat_template: bool) -> str:
    """A conversation (or any prompt when the model wants it) goes through the chat template."""
    if isinstance(prompt, list) or use_chat_template:
        if not getattr(tokenizer, "chat_template", None):
            raise BackendError("this prompt needs a chat template, and the tokenizer has none")
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        return str(
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )
    return prompt


def truncate_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string. Returns (text, whether one was found)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class TransformersBackend:
    """Loads the model once; ``generate`` samples n completions per prompt in batches.

    Options (``spec.options``): ``device`` (default cuda when available, else cpu),
    ``dtype`` (bfloat16 on cuda, float32 on cpu), ``batch_size`` prompts per forward (8).
    """

    def __init__(self, spec: BackendSpec) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.spec = spec
        options = spec.options or {}
        self.device = str(options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype_name = str(
            options.get("dtype") or ("bfloat16" if self.device == "cuda" else "float32")
        )
        self.batch_size = int(options.get("batch_size", 8))  # type: ignore[call-overload]
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(spec.source)
            self.model = AutoModelForCausalLM.from_pretrained(
                spec.source, dtype=getattr(torch, dtype_name)
            )
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load model {spec.source!r}: {exc}") from exc
        self.model.to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def generate(
        self, prompts: list[PromptInput], n: int, params: SamplingParams
    ) -> list[list[Sample]]:
        import torch

        texts = [render_prompt(self.tokenizer, p, self.spec.use_chat_template) for p in prompts]
        results: list[list[Sample]] = []
        if params.seed is not None:
            torch.manual_seed(params.seed)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                results.extend(self._batch(texts[start : start + self.batch_size], n, params))
        return results

    def _batch(self, texts: list[str], n: int, params: SamplingParams) -> list[list[Sample]]:
        tok = self.tokenizer
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.device
        )
        prompt_lengths = enc["attention_mask"].sum(dim=1).tolist()
        sampling = params.temperature > 0
        # Greedy decoding gives one answer; generate it once and repeat it n times.
        per_prompt = n if sampling else 1
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": sampling,
            "num_return_sequences": per_prompt,
            "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.eos_token_id,
            "use_cache": True,
        }
        if sampling:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        output = self.model.generate(**enc, **kwargs)
        new_tokens = output[:, enc["input_ids"].shape[1] :]
        samples: list[list[Sample]] = [[] for _ in texts]
        for row, tokens in enumerate(new_tokens.tolist()):
            prompt_index = row // per_prompt
            ended = tok.eos_token_id in tokens
            if ended:
                tokens = tokens[: tokens.index(tok.eos_token_id)]
            else:
                # Padding after an early end in a batch; none when the row ran to the limit.
                while tokens and tokens[-1] == tok.pad_token_id:
                    tokens.pop()
            text = tok.decode(tokens, skip_special_tokens=True)
            text, stopped = truncate_at_stop(text, params.stop)
            finish = "stop" if ended or stopped else "length"
            sample = Sample(
                text=text,
                prompt_tokens=int(prompt_lengths[prompt_index]),
                completion_tokens=len(tokens),
                finish_reason=finish,
            )
            samples[prompt_index].extend([sample] * (n // per_prompt))
        return samples

    def close(self) -> None:
        import gc

        del self.model
        gc.collect()
