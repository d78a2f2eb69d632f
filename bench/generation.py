"""Generation throughput: the transformers backend batched vs one prompt at a time.

Both arms run in this process on the same prompts, k and sampling parameters, and every
sample runs to exactly ``max_new_tokens`` (the backends' ``ignore_eos`` option), so each arm
does the same work and tokens/s compare directly. The sequential arm (``batch_size=1``; its
k samples still share one ``generate``) is the baseline. With --vllm, or automatically on a
GPU where vLLM is installed, the vLLM backend does the same work too.

    .venv/bin/python bench/generation.py [--quick] [--model PATH] [--vllm]

Prints the headline last, as key=value pairs:
batched_tok_s sequential_tok_s ratio [vllm_tok_s vllm_vs_batched].
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from generation.backends import BackendSpec, PromptInput, Sample, SamplingParams

_WORDS = "once upon a time in a land far away there lived a small fox who loved bread".split()


def bench_prompts(count: int) -> list[PromptInput]:
    """Prompts of a few different lengths; every fourth is a conversation."""
    prompts: list[PromptInput] = []
    for i in range(count):
        text = f"Prompt {i}: " + " ".join(_WORDS[: 4 + (i * 5) % len(_WORDS)])
        prompts.append([{"role": "user", "content": text}] if i % 4 == 3 else text)
    return prompts


Arm = Callable[[], list[list[Sample]]]


def measure(arms: dict[str, Arm], repeats: int) -> dict[str, tuple[float, int, float]]:
    """Tokens/s of each arm, the median of ``repeats`` timed runs (warm the engine up first).

    The arms take turns run by run, so that a neighbour's load on a shared machine falls
    on all of them alike. Returns, per arm: (tokens per second, completion tokens of one
    run, seconds of the median run).
    """
    runs: dict[str, list[tuple[float, int]]] = {name: [] for name in arms}
    for _ in range(repeats):
        for name, arm in arms.items():
            start = time.perf_counter()
            result = arm()
            elapsed = time.perf_counter() - start
            runs[name].append((elapsed, sum(s.completion_tokens or 0 for g in result for s in g)))
    figures = {}
    for name, timings in runs.items():
        elapsed, tokens = sorted(timings)[len(timings) // 2]
        figures[name] = (tokens / elapsed, tokens, elapsed)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="32 prompts, 32 new tokens (< 1 min on 2 cores)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per arm (median)")
    parser.add_argument("--model", help="a local model folder; default: a freshly built tiny model")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--k", type=int, default=4, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per batch")
    parser.add_argument("--vllm", action="store_true", help="also measure the vLLM backend")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.max_new_tokens = 32, 32

    model = args.model
    if model is None:
        from generation.tiny_model import build_tiny_model

        model = str(build_tiny_model(Path(tempfile.mkdtemp()) / "tiny"))
    prompts = bench_prompts(args.prompts)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, seed=0)

    import torch

    from generation.backends.transformers import TransformersBackend

    on_gpu = torch.cuda.is_available()
    print(
        f"model={model} device={'cuda' if on_gpu else 'cpu'} threads={torch.get_num_threads()} "
        f"prompts={len(prompts)} k={args.k} max_new_tokens={args.max_new_tokens} "
        f"repeats={args.repeats}",
        flush=True,
    )
    expected_tokens = len(prompts) * args.k * args.max_new_tokens
    # One model for both arms (no second copy in memory); only the batch size differs.
    backend = TransformersBackend(
        BackendSpec(kind="transformers", source=model, options={"ignore_eos": True})
    )

    def with_batch_size(size: int) -> Arm:
        def run() -> list[list[Sample]]:
            backend.batch_size = size
            return backend.generate(prompts, args.k, params)

        return run

    sizes = {"batched": args.batch_size, "sequential": 1}
    backend.generate(prompts[:2], args.k, params)  # warm-up: lazy init, allocator, kernels
    results = measure({name: with_batch_size(size) for name, size in sizes.items()}, args.repeats)
    backend.close()
    if args.vllm or (on_gpu and importlib.util.find_spec("vllm") is not None):
        from generation.backends.vllm import VLLMBackend

        engine = VLLMBackend(
            BackendSpec(
                kind="vllm", source=model, options={"max_model_len": 1024, "ignore_eos": True}
            )
        )
        engine.generate(prompts[:2], args.k, params)
        results |= measure({"vllm": lambda: engine.generate(prompts, args.k, params)}, args.repeats)
        engine.close()

    for name, (rate, tokens, seconds) in results.items():
        if tokens != expected_tokens:
            raise SystemExit(f"{name}: {tokens} tokens, expected {expected_tokens}")
        engine_name = "vllm" if name == "vllm" else f"transformers batch_size={sizes[name]}"
        print(
            f"{name:<10} {engine_name:<30} tokens={tokens} seconds={seconds:.2f} tok_s={rate:.0f}"
        )
    figures = {f"{name}_tok_s": rate for name, (rate, _, _) in results.items()}
    headline = {
        "batched_tok_s": f"{figures['batched_tok_s']:.0f}",
        "sequential_tok_s": f"{figures['sequential_tok_s']:.0f}",
        "ratio": f"{figures['batched_tok_s'] / figures['sequential_tok_s']:.2f}",
    }
    if "vllm_tok_s" in figures:
        headline["vllm_tok_s"] = f"{figures['vllm_tok_s']:.0f}"
        headline["vllm_vs_batched"] = f"{figures['vllm_tok_s'] / figures['batched_tok_s']:.2f}"
    print(" ".join(f"{key}={value}" for key, value in headline.items()))


if __name__ == "__main__":
    main()
