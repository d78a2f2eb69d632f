"""Build a tiny random-init causal LM and its tokenizer without touching a model hub.

The result is an ordinary ``save_pretrained`` folder that ``AutoTokenizer``,
``AutoModelForCausalLM``, ``AutoModelForSequenceClassification`` and vLLM load with
``HF_HUB_OFFLINE=1``. Tests and the demo use it so that generation and every training
kind run end to end on a laptop CPU; its outputs are gibberish by design.

Django-free: importable by workers, benchmarks and tests alike.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

BOS = "<|bos|>"
EOS = "<|eos|>"
PAD = "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")

# Messages become "<|role|>\ncontent<|eos|>\n"; the generation prompt opens an assistant turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|eos|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

# Local training text for the BPE merges: English prose, dialogue and code, so that the
# tokenizer splits ordinary prompts into a sensible number of tokens.
_CORPUS = """
Once upon a time there was a small village by the sea. Once upon a banana, said the child.
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a step.
Human: How do I bake bread at home? Assistant: Mix flour, water, salt and yeast, knead the dough,
let it rise for an hour, shape it, and bake it at a high temperature until the crust is brown.
Human: What is the capital of France? Assistant: The capital of France is Paris.
Human: Can you explain photosynthesis? Assistant: Plants use light to turn water and carbon
dioxide into sugar and oxygen. Please write a short poem about autumn leaves falling slowly.
Summarize the following paragraph in one sentence. Translate this sentence into French.
def fibonacci(n):
    if n < 2:
        return n
    return fibonacci(n - 1) + fibonacci(n - 2)
for i in range(10):
    print(i * i)
import numpy as np
x = np.array([1, 2, 3])
SELECT name, count(*) FROM users GROUP BY name ORDER BY 2 DESC;
The reward model scores each response; the policy learns to prefer the chosen one.
Reinforcement learning from human feedback trains a language model with a learned reward.
Direct preference optimization skips the reward model and trains on pairs directly.
I think that is a good question. Here are three ideas: first, second, and third.
Yes. No. Maybe. Thank you! You're welcome. Sorry, I cannot help with that request.
0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14 2.71 42 % $ # @ ! ? ( ) [ ] { } < > = + - * / \\ | ~ ^ & ; : ' " ,
"""


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of the tiny model. vLLM's CPU attention needs head_dim >= 32."""

    vocab_size: int = 1024
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    # Room for every prompt of the demo's HH-RLHF file (the longest is ~1,500 tokens); RoPE
    # has no position table, so this costs no parameters.
    max_position_embeddings: int = 2048
    seed: int = 0


def build_tokenizer(spec: TinyModelSpec) -> object:
    """Train a byte-level BPE on the local corpus and wrap it as a fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=[PAD, BOS, EOS, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        chat_template=CHAT_TEMPLATE,
        model_max_length=spec.max_position_embeddings,
        padding_side="left",
    )


def build_tiny_model(path: str | Path, spec: TinyModelSpec | None = None) -> Path:
    """Write a random-init Llama-architecture causal LM and its tokenizer to ``path``.

    Deterministic for a given spec (the seed fixes the weights). Returns the folder.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    spec = spec or TinyModelSpec()
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer(spec)
    vocab = len(tokenizer)  # type: ignore[arg-type]
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_attention_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,  # type: ignore[attr-defined]
        eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
        tie_word_embeddings=False,
        dtype="float32",
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        do_sample=True,
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)  # type: ignore[attr-defined]
    (out / "preflab_tiny_model.json").write_text(json.dumps(asdict(spec), indent=2) + "\n")
    return out


def is_tiny_model(path: str | Path) -> bool:
    """True when ``path`` holds a model written by :func:`build_tiny_model`."""
    return (Path(path) / "preflab_tiny_model.json").is_file()


# Encoder architectures :func:`build_tiny_encoder` can write (reward-model bases).
TINY_ENCODER_TYPES = ("bert", "deberta-v2", "roberta", "distilbert", "electra")


def build_tiny_encoder(
    path: str | Path, model_type: str = "bert", spec: TinyModelSpec | None = None
) -> Path:
    """Write a random-init encoder (BERT by default) and a WordPiece tokenizer to ``path``.

    The reward-model counterpart of :func:`build_tiny_model`, for tests: a bare encoder
    (``BertModel``...) as a pretrained checkpoint is saved, which
    ``AutoModelForSequenceClassification`` loads with a new head, offline. The tokenizer
    (lower-cased WordPiece trained on the same local text, ``[CLS] ... [SEP]``, no chat
    template) is shared by every ``model_type`` of :data:`TINY_ENCODER_TYPES`.
    """
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import AutoConfig, AutoModel, BertTokenizer  # the fast one in v5

    if model_type not in TINY_ENCODER_TYPES:
        raise ValueError(f"model_type must be one of {', '.join(TINY_ENCODER_TYPES)}")
    spec = spec or TinyModelSpec(max_position_embeddings=512)
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=spec.vocab_size, special_tokens=specials, show_progress=False
    )
    wordpiece.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    cls, sep = wordpiece.token_to_id("[CLS]"), wordpiece.token_to_id("[SEP]")
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tokenizer = BertTokenizer(
        tokenizer_object=wordpiece,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_max_length=spec.max_position_embeddings,
    )
    shape: dict[str, object] = {
        "vocab_size": len(tokenizer),
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "max_position_embeddings": spec.max_position_embeddings + 2,  # RoBERTa's offset
        "pad_token_id": tokenizer.pad_token_id,
    }
    if model_type == "distilbert":
        shape = {
            "vocab_size": shape["vocab_size"],
            "dim": spec.hidden_size,
            "hidden_dim": spec.intermediate_size,
            "n_layers": spec.num_hidden_layers,
            "n_heads": spec.num_attention_heads,
            "max_position_embeddings": shape["max_position_embeddings"],
            "pad_token_id": shape["pad_token_id"],
        }
    if model_type == "electra":
        shape["embedding_size"] = spec.hidden_size
    config = AutoConfig.for_model(model_type, **shape)
    torch.manual_seed(spec.seed)
    AutoModel.from_config(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
