from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from generation.models import PromptSet


@pytest.mark.slow
def test_it_builds_a_tiny_model_that_transformers_loads(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "tiny"
    call_command("build_tiny_model", str(out), stdout=StringIO())
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    reward = AutoModelForSequenceClassification.from_pretrained(out, num_labels=1)
    assert tokenizer.pad_token and tokenizer.eos_token and tokenizer.chat_template
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Once upon a"}], tokenize=False, add_generation_prompt=True
    )
    assert isinstance(text, str) and text.endswith("<|assistant|>\n")
    assert model.config.hidden_size // model.config.num_attention_heads >= 32  # vLLM CPU needs it
    ids = tokenizer("Once upon a time", return_tensors="pt")
    assert reward(**ids).logits.shape == (1, 1)


def test_it_imports_prompts_from_the_command_line(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "one"}\n{"prompt": "two"}\n')
    out = StringIO()
    call_command("import_prompts", str(path), "--set", "cli", stdout=out)
    assert "Imported 2 prompts" in out.getvalue()
    path.write_text('{"prompt": "three"}\n{"oops": 1}\n')
    with pytest.raises(CommandError, match="line 2"):
        call_command("import_prompts", str(path), "--set", "cli", stdout=StringIO())
    assert PromptSet.objects.get(name="cli").prompts.count() == 2
