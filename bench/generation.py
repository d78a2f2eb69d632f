"""Generation throughput: the transformers backend batched vs one prompt at a time.

Both arms run in this process on the same prompts, k and sampling parameters; the
sequential arm is the baseline. With --vllm (or automatically on a GPU with vLLM
installed) vLLM is measured on the same work too.

    .venv/bin/python bench/generation.py [--quick] [--model PATH] [--vllm]

Prints the headline last: batched_tok_s sequential_tok_s ratio [vllm_tok_s vllm_ratio].
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from generation.backends import BackendSpec, SamplingParams
from generation.backends.base import GenerationBackend


def _tokens_per_second(
    backend: GenerationBackend, prompts: list[str], k: int, params: SamplingParams
) -> tuple[float, int]:
    backend.generate(prompts[:2], k, params)  # warm-up: lazy init, caches
    start = time.perf_counter()
    result = backend.generate(prompts, k, params)
    elapsed = time.perf_counter() - start
    tokens = sum(s.completion_tokens or 0 for group in result for s in group)
    return tokens / elapsed, tokens


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="16 prompts, 32 new tokens (< 1 min on 2 cores)"
    )
    parser.add_argument("--model", help="a local model folder; default: a freshly built tiny model")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--vllm", action="store_true", help="also measure the vLLM backend")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.max_new_tokens = 16, 32

    model = args.model
    if model is None:
        from generation.tiny_model import build_tiny_model

        model = str(build_tiny_model(Path(tempfile.mkdtemp()) / "tiny"))
    prompts = [f"Prompt {i}: once upon a time, in a land far away," for i in range(args.prompts)]
    params = SamplingParams(max_new_tokens=args.max_new_tokens, seed=0)

    from generation.backends.transformers import TransformersBackend

    figures: dict[str, float] = {}
    for name, batch_size in (("batched", args.batch_size), ("sequential", 1)):
        backend = TransformersBackend(
            BackendSpec(kind="transformers", source=model, options={"batch_size": batch_size})
        )
        rate, tokens = _tokens_per_second(backend, prompts, args.k, params)
        backend.close()
        figures[f"{name}_tok_s"] = rate
        print(
            f"transformers {name:<10} batch_size={batch_size:<3} tokens={tokens} tok_s={rate:.0f}",
            flush=True,
        )

    try:
        import torch

        on_gpu = torch.cuda.is_available()
    except ImportError:
        on_gpu = False
    if args.vllm or (on_gpu and importlib.util.find_spec("vllm") is not None):
        from generation.backends.vllm import VLLMBackend

        backend = VLLMBackend(
            BackendSpec(kind="vllm", source=model, options={"max_model_len": 1024})
        )
        rate, tokens = _tokens_per_second(backend, prompts, args.k, params)
        backend.close()
        figures["vllm_tok_s"] = rate
        print(f"vllm                                  tokens={tokens} tok_s={rate:.0f}", flush=True)

    line = (
        f"batched_tok_s={figures['batched_tok_s']:.0f} sequential_tok_s={figures['sequential_tok_s']:.0f} "
        f"ratio={figures['batched_tok_s'] / figures['sequential_tok_s']:.2f}"
    )
    if "vllm_tok_s" in figures:
        line += f" vllm_tok_s={figures['vllm_tok_s']:.0f} vllm_ratio={figures['vllm_tok_s'] / figures['batched_tok_s']:.2f}"
    print(line)


if __name__ == "__main__":
    main()
