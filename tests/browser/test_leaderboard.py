"""An admin opens a labeled evaluation and reads its leaderboard, chart and win-rates."""

from __future__ import annotations

from pathlib import Path

import pytest

from generation.models import Completion, GenerationJob
from tests.browser.conftest import login
from tests.factories import PASSWORD, UserFactory
from tests.generation.factories import prompt_set_with_prompts
from tests.labeling.factories import label_queue
from tests.training.factories import tiny_policy
from training import evaluations

pytestmark = [pytest.mark.browser]


def test_it_shows_the_leaderboard_of_a_labeled_evaluation(  # type: ignore[no-untyped-def]
    page, live_server, carol, tmp_path: Path
) -> None:
    strong = tiny_policy(tmp_path, name="strong <b>model</b>")
    weak = tiny_policy(tmp_path, name="weak model")
    prompts = prompt_set_with_prompts(4, name="held-out")
    evaluation = evaluations.evaluation_create(
        name="strong vs weak", models=[strong, weak], prompt_set=prompts
    )
    for entry in evaluation.entries.select_related("job", "model"):  # type: ignore[attr-defined]
        for prompt in prompts.prompts.all():
            Completion.objects.create(
                job=entry.job,
                prompt=prompt,
                sample_index=0,
                text=f"answer {entry.position}",
                model=entry.model,
            )
    GenerationJob.objects.filter(evaluation_entry__evaluation=evaluation).update(
        status="succeeded", prompts_done=4
    )
    evaluation = evaluations.evaluation_advance(evaluation=evaluation)

    def strong_first(ids: list[int]) -> list[list[int]]:
        first = Completion.objects.get(pk=ids[0])
        return [[ids[0]], [ids[1]]] if first.model == strong else [[ids[1]], [ids[0]]]

    def weak_once(ids: list[int]) -> list[list[int]]:
        # One upset, so the bootstrap sees outcomes that vary.
        order = strong_first(ids)
        return order[::-1] if Completion.objects.get(pk=ids[0]).prompt.position == 0 else order

    assert evaluation.queue is not None
    evaluation.queue.overlap = 2
    evaluation.queue.save(update_fields=["overlap"])
    label_queue(evaluation.queue, UserFactory(username="ann", roles=["annotator"]), strong_first)
    label_queue(evaluation.queue, UserFactory(username="ben", roles=["annotator"]), weak_once)

    login(page, live_server, "carol", PASSWORD)
    page.goto(f"{live_server.url}/training/runs/")
    page.get_by_role("link", name="Evaluations").first.click()
    page.get_by_role("link", name="strong vs weak").click()
    page.wait_for_selector("h1:has-text('strong vs weak')")

    rows = page.locator("#leaderboard tbody tr")
    assert rows.count() == 2
    first = rows.nth(0).inner_text()
    assert "strong <b>model</b>" in first  # shown as text, not markup
    assert first.split("\t")[-3:] == ["7", "0", "1"]  # wins, ties, losses
    page.wait_for_selector("#leaderboard-chart canvas")
    box = page.locator("#leaderboard-chart canvas").first.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 100
    # The chart drew something: some canvas pixels are the accent colour of the whiskers.
    drawn = page.evaluate(
        """() => {
          const c = document.querySelector('#leaderboard-chart canvas');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let i = 0; i < d.length; i += 4) if (d[i] === 0x29 && d[i + 1] === 0x52 && d[i + 2] === 0xcc) n++;
          return n;
        }"""
    )
    assert drawn > 20
    matrix = page.locator("#winrate-matrix").inner_text()
    assert "88%" in matrix and "12%" in matrix and "n=8" in matrix  # 7 of 8
    assert not page.dialogs  # type: ignore[attr-defined]
