"""The transformers backend: batched ``model.generate`` with left padding. The default on CPU.

Prompts become token ids through ``generation.backends.prompting.encode_prompt``, as in the
vLLM backend and in training, so all of them see exactly the same ids for a prompt.
``truncate_at_stop`` is shared with the vLLM backend.
"""

from __future__ import annotations

import gc
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from generation.backends.base import (
    BackendError,
    BackendSpec,
    PromptInput,
    Sample,
    SamplingParams,
)
from generation.backends.prompting import encode_prompt


def truncate_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string. Returns (text, whether one was found)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _tokens_through_stop(tokenizer: Any, tokens: list[int], stop: tuple[str, ...]) -> int:
    """The fewest leading ``tokens`` whose text already contains a stop string.

    That is what an engine that stops on strings (vLLM, OpenAI) would have generated.
    Containment grows with the prefix, so a binary search needs O(log n) decodes.
    """
    low, high = 1, len(tokens)
    while low < high:
        mid = (low + high) // 2
        prefix = tokenizer.decode(
            tokens[:mid], skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        if truncate_at_stop(prefix, stop)[1]:
            high = mid
        else:
            low = mid + 1
    return high


class TransformersBackend:
    """Loads the model once; ``generate`` samples n completions per prompt in batches.

    Options (``spec.options``): ``device`` (cuda when available, else cpu), ``dtype``
    (bfloat16 on cuda, float32 on cpu), ``batch_size`` prompts per ``generate`` call (8;
    each carries its n samples, so a batch is ``batch_size * n`` rows), ``ignore_eos``
    (False; True always generates ``max_new_tokens``, which benchmarks use for equal work).
    """

    def __init__(self, spec: BackendSpec) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.spec = spec
        options = spec.options or {}
        self.device = str(options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype_name = str(
            options.get("dtype") or ("bfloat16" if self.device.startswith("cuda") else "float32")
        )
        dtype = getattr(torch, dtype_name, None)
        if not isinstance(dtype, torch.dtype):
            raise BackendError(f"unknown dtype {dtype_name!r} (try float32 or bfloat16)")
        self.batch_size = max(1, int(options.get("batch_size", 8)))  # type: ignore[call-overload]
        self.ignore_eos = bool(options.get("ignore_eos", False))
        looks_local = spec.source.startswith((".", "/", "~")) or Path(spec.source).exists()
        if not spec.source or (looks_local and not Path(spec.source).expanduser().is_dir()):
            raise BackendError(f"cannot load model {spec.source!r}: no such model folder")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(spec.source)
            self.model = AutoModelForCausalLM.from_pretrained(spec.source, dtype=dtype)
        except (OSError, ValueError, KeyError) as exc:
            raise BackendError(f"cannot load model {spec.source!r}: {exc}") from exc
        # transformers wraps .to() in a decorator typed without binding self.
        self.model.to(self.device).eval()  # type: ignore[arg-type]
        self.tokenizer.padding_side = "left"
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids: set[int] = (
            set() if eos is None else set(eos if isinstance(eos, list) else [eos])
        )
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = min(self.eos_ids) if self.eos_ids else 0
        self.pad_id = int(pad)
        self.max_positions: int | None = getattr(self.model.config, "max_position_embeddings", None)
        self._closed = False

    def generate(
        self, prompts: list[PromptInput], n: int, params: SamplingParams
    ) -> list[list[Sample]]:
        """``n`` samples per prompt, in prompt order.

        With a seed the call is reproducible: the same prompts, n, params and batch size give
        the same texts. The global torch RNG is left as it was (the seed applies to a fork).
        """
        import torch

        if self._closed:
            raise BackendError("this backend was closed")
        if n < 1:
            raise BackendError("n must be >= 1")
        encoded = [encode_prompt(self.tokenizer, p, self.spec.use_chat_template) for p in prompts]
        for index, ids in enumerate(encoded):
            if self.max_positions and len(ids) + params.max_new_tokens > self.max_positions:
                raise BackendError(
                    f"prompt {index} has {len(ids)} tokens; with max_new_tokens="
                    f"{params.max_new_tokens} it exceeds the model's {self.max_positions} positions"
                )
        # Batch prompts of similar length together so that little compute goes to padding.
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        results: list[list[Sample]] = [[] for _ in encoded]
        if params.seed is None:
            rng: Any = nullcontext()
        else:
            rng = torch.random.fork_rng(
                devices=[torch.device(self.device).index or 0]
                if self.device.startswith("cuda")
                else []
            )
        with rng, torch.inference_mode():
            if params.seed is not None:
                torch.manual_seed(params.seed)
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                for index, samples in zip(
                    chunk, self._batch([encoded[i] for i in chunk], n, params), strict=True
                ):
                    results[index] = samples
        return results

    def _batch(
        self, encoded: list[list[int]], n: int, params: SamplingParams
    ) -> list[list[Sample]]:
        """One ``model.generate`` over left-padded prompts: rows are prompt-major, n each."""
        import torch

        width = max(len(ids) for ids in encoded)
        input_ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        sampling = params.temperature > 0
        # Greedy decoding gives one answer; generate it once and repeat it n times.
        per_prompt = n if sampling else 1
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": sampling,
            "num_return_sequences": per_prompt,
            "pad_token_id": self.pad_id,
            "eos_token_id": sorted(self.eos_ids) or None,
            "use_cache": True,
        }
        if sampling:
            # top_k=0 turns off the model's default top-k, as vLLM and OpenAI servers do.
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            # Otherwise generate() warns that the model's sampling defaults are unused.
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            # Ends a row once it contains a stop string; the text is cut below.
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        if self.ignore_eos:
            kwargs["min_new_tokens"] = params.max_new_tokens
        # transformers types from_pretrained's model as a class generate() won't take as self.
        output = self.model.generate(  # type: ignore[misc]
            input_ids=input_ids.to(self.device),
            attention_mask=attention_mask.to(self.device),
            **kwargs,
        )
        new_tokens = output[:, width:].tolist()
        samples: list[list[Sample]] = [[] for _ in encoded]
        for row, tokens in enumerate(new_tokens):
            prompt_index = row // per_prompt
            sample = self._sample(tokens, len(encoded[prompt_index]), params)
            samples[prompt_index].extend([sample] * (n // per_prompt))
        return samples

    def _sample(self, tokens: list[int], prompt_tokens: int, params: SamplingParams) -> Sample:
        """Turn one generated row into a Sample: cut at EOS, padding and stop strings."""
        end = next((i for i, t in enumerate(tokens) if t in self.eos_ids), None)
        if end is not None:
            # The EOS counts as generated (as vLLM counts it); what follows is padding.
            tokens = tokens[: end + 1]
        elif params.stop:
            # A row ended by a stop string is padded to the batch's longest row. Without stop
            # strings a row with no EOS ran to the limit, and a pad token at its end was
            # sampled (a random model does that), so it counts.
            while tokens and tokens[-1] == self.pad_id:
                tokens.pop()
        # Never "clean up tokenization spaces" (some tokenizer configs ask for it): that
        # rewrites what the model wrote (" ." becomes "."), and the text is stored as a fact.
        text = self.tokenizer.decode(
            tokens[:end] if end is not None else tokens,
            skip_special_tokens=True,
            clean_up_tokenization_spaces=False,
        )
        assert isinstance(text, str)  # one sequence decodes to one string
        text, stopped = truncate_at_stop(text, params.stop)
        completion_tokens = len(tokens)
        if stopped:
            completion_tokens = _tokens_through_stop(self.tokenizer, tokens, params.stop)
        # Short of the limit without EOS or a stop string in the text: a stop string that
        # began inside the prompt ended the row.
        hit_limit = end is None and not stopped and len(tokens) >= params.max_new_tokens
        return Sample(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason="length" if hit_limit else "stop",
        )

    def close(self) -> None:
        """Drop the model; on a GPU, hand its memory back to the driver."""
        if self._closed:
            return
        self._closed = True
        del self.model
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
