"""Chunked per-token log-probabilities (``training.core.logps``): the same numbers and
gradients as the full logits, without the ``[N, T, V]`` float32 tensor."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from training.core.logps import IGNORE_INDEX, causal_lm_logps, hidden_label_logps
from training.core.losses import token_logps

ROOT = Path(__file__).resolve().parents[2]


def batch(vocab: int, *, rows: int = 3, length: int = 12) -> tuple[torch.Tensor, ...]:
    """Right-padded ids, their mask, and labels with a masked prompt and padding."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (rows, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # padding
    mask[2, 5:] = 0
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    labels[:, :4] = IGNORE_INDEX  # a prompt
    labels[2] = IGNORE_INDEX  # a row with nothing to score
    return ids, mask, labels


def plain_logps(model, ids, mask, labels):  # type: ignore[no-untyped-def]
    logits = model(input_ids=ids, attention_mask=mask).logits
    targets = labels[:, 1:]
    return token_logps(logits[:, :-1], targets, targets != IGNORE_INDEX).sum(dim=-1)


def gradients(model) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.slow
@pytest.mark.parametrize(
    ("dtype", "tolerance"),
    # In float64 the head's matmul is exact to 1e-6 whatever its shape; in float32 the
    # chunks' matmuls round differently from the full one's, by float32's own 1e-6 or so.
    [(torch.float64, 1e-6), (torch.float32, 1e-5)],
    ids=["float64", "float32"],
)
def test_it_matches_the_full_logits_and_their_gradients(
    tiny_model_path: Path, dtype: torch.dtype, tolerance: float
) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=dtype).eval()
    ids, mask, labels = batch(model.config.vocab_size)
    weights = torch.tensor([1.0, -2.0, 0.5])  # any loss of the sums

    expected = plain_logps(model, ids, mask, labels)
    (expected * weights).sum().backward()
    expected_grads = gradients(model)
    # Three tokens a chunk: the 13 scored tokens take five chunks, the last one short.
    chunk_bytes = 3 * 4 * model.config.vocab_size
    chunked, counts = causal_lm_logps(model, ids, mask, labels, chunk_bytes=chunk_bytes)
    (chunked * weights).sum().backward()
    chunked_grads = gradients(model)

    assert counts.tolist() == [8, 5, 0]
    assert chunked[2] == 0
    torch.testing.assert_close(chunked, expected, rtol=tolerance, atol=tolerance)
    assert chunked_grads.keys() == expected_grads.keys() and chunked_grads
    for name, grad in expected_grads.items():
        torch.testing.assert_close(
            chunked_grads[name], grad, rtol=tolerance, atol=tolerance, msg=name
        )


def test_it_gives_each_row_its_label_log_softmax() -> None:
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(7, 5, generator=generator, requires_grad=True)
    head = torch.nn.Linear(5, 11)
    labels = torch.randint(0, 11, (7,), generator=generator)

    chunked = hidden_label_logps(hidden, head, labels, chunk=2)
    full = torch.log_softmax(head(hidden), dim=-1)[torch.arange(7), labels]

    torch.testing.assert_close(chunked, full)
    chunked.sum().backward()
    assert hidden.grad is not None
    chunk_grad = hidden.grad.clone()
    hidden.grad = None
    full.sum().backward()
    torch.testing.assert_close(chunk_grad, hidden.grad)


def test_it_only_runs_the_head_on_chunks_of_scored_tokens(tiny_model_path: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()
    ids, mask, labels = batch(model.config.vocab_size)
    seen: list[tuple[int, ...]] = []
    hook = model.lm_head.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    with torch.no_grad():
        causal_lm_logps(model, ids, mask, labels, chunk_bytes=4 * 4 * model.config.vocab_size)
    hook.remove()

    vocab = model.config.vocab_size
    # The model's own forward: the last position only; then 13 scored tokens, 4 at a time.
    assert seen[0] == (3, 1, vocab)
    assert [s[0] for s in seen[2:]] == [4, 4, 4, 1]
    assert max(s[0] * s[-1] for s in seen) < ids.numel() * vocab


def test_it_scores_a_model_with_transformed_logits_through_its_own_logits(
    tiny_model_path: Path,
) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()
    ids, mask, labels = batch(model.config.vocab_size)

    def softcap(module, args, kwargs, output):  # type: ignore[no-untyped-def]
        output.logits = 2.0 * torch.tanh(output.logits / 2.0)  # unknown to the config
        return output

    hook = model.register_forward_hook(softcap, with_kwargs=True)
    with torch.no_grad(), pytest.warns(RuntimeWarning, match="full logits"):
        chunked, _ = causal_lm_logps(model, ids, mask, labels)
        expected = plain_logps(model, ids, mask, labels)
    hook.remove()

    torch.testing.assert_close(chunked, expected)


PEAK_SCRIPT = """
import sys
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from training.core.logps import LOGITS_CHUNK_BYTES, causal_lm_logps

rows, length, vocab = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
config = LlamaConfig(
    vocab_size=vocab, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
    num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False,
)
model = LlamaForCausalLM(config)
ids = torch.randint(0, vocab, (rows, length))
mask = torch.ones_like(ids)
labels = ids.clone()
labels[:, : length // 4] = -100
with torch.no_grad():  # lazy initialisation outside the measurement
    model(input_ids=ids[:, :4], attention_mask=mask[:, :4])
for p in model.parameters():
    p.grad = torch.zeros_like(p)
def high_water():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
# Reset the high-water mark to what is resident now (Linux >= 4.0): imports and compiling
# them in a fresh clone peak higher than the log-probs do, which would hide them.
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
before = high_water()
logps, _ = causal_lm_logps(model, ids, mask, labels)
logps.sum().backward()
after = high_water()
print(after - before, LOGITS_CHUNK_BYTES)
"""


@pytest.mark.slow
def test_its_peak_memory_stays_far_below_the_full_logits() -> None:
    # VmHWM is the process's high-water mark of resident memory, which counts every tensor
    # torch writes (tracemalloc does not see torch's allocator). A fresh process resets it
    # after the model is built and reads its growth after forward and backward: the peak
    # the log-probs and their gradient add (about 270 MB here, the full logits 1.24 GB).
    rows, length, vocab = 4, 512, 151_936
    # glibc would serve big tensors from heap memory that imports freed earlier, which the
    # high-water mark already counts (the growth then reads 0); a fixed mmap threshold maps
    # every allocation over 128 KiB afresh and unmaps it when freed, so the growth is the
    # peak of the tensors alive during forward and backward.
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "MALLOC_MMAP_THRESHOLD_": str(128 * 1024),
    }
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PEAK_SCRIPT), str(rows), str(length), str(vocab)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
        timeout=550,
    )
    peak, chunk_bytes = map(int, done.stdout.split()[-2:])

    full_logits = rows * length * vocab * 4  # 1.24 GB of float32
    # The measure sees torch: the chunk's logits exist at the peak.
    assert peak >= chunk_bytes
    assert peak < full_logits / 2, f"peak {peak / 2**20:.0f} MiB"
