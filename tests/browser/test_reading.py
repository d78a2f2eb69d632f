"""An annotator reads a chat prompt as turns and Markdown answers, stacks them, and leaves a
text box with Escape to use the shortcuts again."""

from __future__ import annotations

import pytest

from generation.models import Completion, Prompt
from labeling.models import Ranking
from tests.browser.conftest import login
from tests.factories import PASSWORD
from tests.labeling.factories import make_queue

pytestmark = [pytest.mark.browser]


def test_it_renders_chat_and_markdown_and_lets_the_annotator_stack_answers(  # type: ignore[no-untyped-def]
    page, live_server, alice
) -> None:
    queue = make_queue(mode="pairwise", prompts=2, k=2, name="chat")
    Prompt.objects.update(
        messages=[
            {"role": "user", "content": "How do I sort?"},
            {"role": "assistant", "content": "With **sorted**."},
            {"role": "user", "content": "Show me code."},
        ]
    )
    Completion.objects.update(
        text="Here:\n\n```python\nsorted([3, 1, 2])\n```\n\n- short\n- stable"
    )
    login(page, live_server, "alice", PASSWORD)
    page.goto(f"{live_server.url}/labeling/queues/{queue.pk}/")
    page.wait_for_selector("#task[data-mode=pairwise]")
    page.wait_for_load_state("load")

    turns = page.locator("#prompt-text .turn")
    assert turns.count() == 3
    assert turns.nth(1).locator(".turn-role").inner_text().lower() == "assistant"
    assert turns.nth(1).locator("strong").inner_text() == "sorted"
    code = page.locator("#task .candidate[data-letter=A] .codehilite code")
    assert "sorted([3, 1, 2])" in code.inner_text()
    mono = code.evaluate("el => getComputedStyle(el).fontFamily")
    prose = page.locator("#task .candidate[data-letter=A] li").first.evaluate(
        "el => getComputedStyle(el).fontFamily"
    )
    assert "mono" in mono.lower() and mono != prose  # code monospace, prose proportional
    head = page.locator("#task .candidate[data-letter=A] .candidate-head")
    assert head.evaluate("el => getComputedStyle(el).position") == "sticky"

    def columns() -> int:
        return len(
            page.locator("#task .pair")
            .evaluate("el => getComputedStyle(el).gridTemplateColumns")
            .split()
        )

    assert columns() == 2
    page.get_by_role("button", name="Stack the answers").click()
    assert columns() == 1
    page.reload()
    page.wait_for_selector("#task .pair")
    assert columns() == 1  # remembered
    assert (
        page.get_by_role("button", name="Answers side by side").get_attribute("aria-pressed")
        == "true"
    )

    raw = page.locator("#task .candidate[data-letter=A] .raw-answer")
    assert not raw.is_visible()
    page.get_by_role("button", name="Show raw text").click()
    assert raw.is_visible() and "```python" in raw.inner_text()
    assert not page.locator("#task .candidate[data-letter=A] .completion.answer").is_visible()
    page.get_by_role("button", name="Show formatted").click()

    # Type a comment, leave the box with Escape, then "1" picks A instead of typing "1".
    page.click("summary:has-text('Comment, flags')")
    page.fill("textarea[name=comment]", "clear answer")
    page.focus("textarea[name=comment]")
    page.keyboard.press("Escape")
    page.keyboard.press("1")
    page.wait_for_selector("text=You: 1 done")
    ranking = Ranking.objects.get(annotator=alice)
    assert ranking.comment == "clear answer"
