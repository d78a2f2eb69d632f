"""The annotator's day and the admin's dashboard, in a real browser."""

from __future__ import annotations

import pytest

from generation.models import Completion
from labeling.models import Comparison, Ranking
from tests.browser.conftest import login
from tests.factories import PASSWORD
from tests.labeling.factories import label_queue, make_queue

pytestmark = [pytest.mark.browser]


def test_it_lets_an_annotator_label_with_the_keyboard_and_by_dragging(
    page, live_server, alice
) -> None:  # type: ignore[no-untyped-def]
    pairwise = make_queue(mode="pairwise", prompts=5, k=2, name="Pairs")
    ranking = make_queue(mode="ranking", prompts=1, k=4, name="Ranks")
    login(page, live_server, "alice", PASSWORD)

    page.goto(f"{live_server.url}/labeling/")
    page.get_by_role("link", name="Pairs").click()
    page.wait_for_selector("#task[data-mode=pairwise]")
    page.wait_for_load_state("load")  # the keyboard handler is attached by then
    for key in ("1", "ArrowRight", "t"):
        before = page.input_value("input[name=assignment]")
        page.keyboard.press(key)
        page.wait_for_function(
            "prev => document.querySelector('input[name=assignment]')?.value !== prev", arg=before
        )
    assert "You: 3 done" in page.inner_text("#progress-text")
    # Write a demonstration by editing response B of the next task, then pick A.
    page.click("summary:has-text('Comment, flags')")
    page.click("button[data-start-from=B]")
    b_text = page.inner_text("#task .candidate[data-letter=B] .completion")
    assert page.input_value("#id_demonstration") == b_text
    page.fill("#id_demonstration", b_text + " (edited)")
    page.get_by_role("button", name="A is better").click()
    page.wait_for_selector("text=You: 4 done")
    from labeling.models import Demonstration

    assert Demonstration.objects.get(annotator=alice).text == b_text + " (edited)"
    assert Ranking.objects.filter(task__queue=pairwise).count() == 4

    page.keyboard.press("u")  # undo the last one
    page.wait_for_selector("text=Undone")
    assert "You: 3 done" in page.inner_text("#progress-text")
    assert Ranking.objects.filter(task__queue=pairwise).count() == 3
    assert not Demonstration.objects.exists()  # it belonged to the undone submission

    page.goto(f"{live_server.url}/labeling/queues/{ranking.pk}/")
    page.wait_for_selector("#ranking > li")
    page.wait_for_load_state("load")
    items = page.locator("#ranking > li")
    letters = [items.nth(i).get_attribute("data-letter") for i in range(4)]
    assert letters == ["A", "B", "C", "D"]
    # Drag D to the top, then give C rank 1 with the keyboard: C moves there, the others
    # shift down, and nothing ties.
    source = items.nth(3).locator(".handle").bounding_box()
    target = items.nth(0).locator(".handle").bounding_box()
    page.mouse.move(source["x"] + 4, source["y"] + 4)
    page.mouse.down()
    page.mouse.move(target["x"] + 4, target["y"] + 2, steps=12)
    page.mouse.up()
    page.wait_for_function("() => document.querySelector('#ranking > li').dataset.letter === 'D'")
    page.locator("#ranking > li[data-letter=C]").focus()
    page.keyboard.press("1")
    assert _order(page) == [("C", "1"), ("D", "2"), ("A", "3"), ("B", "4")]
    # The case: focus A and press 4. A moves to 4 and B shifts up: no tie.
    page.locator("#ranking > li[data-letter=A]").focus()
    page.keyboard.press("4")
    assert _order(page) == [("C", "1"), ("D", "2"), ("B", "3"), ("A", "4")]
    assert page.locator("#ranking .tie-badge:visible").count() == 0
    # A tie only by an explicit action, and it shows.
    page.locator("#ranking > li[data-letter=D]").focus()
    page.keyboard.press("=")
    assert _order(page) == [("C", "1"), ("D", "1"), ("B", "2"), ("A", "3")]
    assert page.locator("#ranking > li[data-letter=D] .tie-badge").is_visible()
    page.keyboard.press("Enter")
    page.wait_for_selector("text=All done here")

    saved = Ranking.objects.get(task__queue=ranking)
    ids = dict(
        (label, c.pk)
        for label, c in zip(
            "ABCD", [s.completion for s in saved.task.slots.order_by("slot")], strict=True
        )
    )
    assert saved.order == [sorted([ids["C"], ids["D"]]), [ids["B"]], [ids["A"]]]
    assert Comparison.objects.filter(ranking=saved).count() == 6
    assert Comparison.objects.filter(ranking=saved, is_tie=True).count() == 1


def _order(page) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(letter, rank) of the ranking list, top to bottom."""
    return [
        tuple(x)
        for x in page.eval_on_selector_all(
            "#ranking > li",
            "els => els.map(li => [li.dataset.letter,"
            " li.querySelector('select[name^=rank_]').value])",
        )
    ]


def test_it_warns_before_submitting_scores_that_contradict_the_ranking(
    page, live_server, alice
) -> None:  # type: ignore[no-untyped-def]
    ranking = make_queue(mode="ranking", prompts=1, k=3, name="Scored", ask_scores=True)
    login(page, live_server, "alice", PASSWORD)
    page.goto(f"{live_server.url}/labeling/queues/{ranking.pk}/")
    page.wait_for_selector("#ranking > li")
    page.wait_for_load_state("load")
    page.select_option("select[name=score_A]", "3")
    page.select_option("select[name=score_C]", "6")
    warning = page.locator("#score-warning")
    assert warning.is_visible()
    assert "A is ranked above C but scored lower (3 < 6)" in warning.inner_text()
    assert page.locator("[data-key=submit]").is_disabled()
    # Rank C first: the scores agree again and the ranking can be sent.
    page.select_option("select[name=rank_C]", "1")
    assert not warning.is_visible()
    page.click("[data-key=submit]")
    page.wait_for_selector("text=All done here")
    saved = Ranking.objects.get(task__queue=ranking)
    assert len(saved.order) == 3 and saved.scores


def test_it_never_runs_script_from_completions_or_guidelines(page, live_server, alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(
        mode="pairwise",
        k=2,
        guidelines='Be kind. <script>window.pwned = "guidelines"</script><img src=x onerror="window.pwned=\'img\'">',
    )
    Completion.objects.update(
        text='<script>window.pwned="completion"</script><img src=x onerror="window.pwned=1">'
    )
    login(page, live_server, "alice", PASSWORD)
    page.goto(f"{live_server.url}/labeling/queues/{queue.pk}/")
    page.click("summary:has-text('Guidelines')")
    page.wait_for_selector("#task .completion")
    page.wait_for_timeout(300)
    assert page.evaluate("window.pwned") is None
    assert page.dialogs == []
    assert '<script>window.pwned="completion"</script>' in page.inner_text(
        "#task .completion >> nth=0"
    )


def test_it_shows_agreement_to_an_admin(page, live_server, alice, bob, carol) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=3, k=2, overlap=2, name="Agreed")
    for user in (alice, bob):
        label_queue(queue, user, lambda ids: [[ids[0]], [ids[1]]])
    login(page, live_server, "carol", PASSWORD)
    page.goto(f"{live_server.url}/labeling/queues/{queue.pk}/dashboard/")
    assert "Pairwise agreement: 100%" in page.inner_text("#stat-agreement")
    assert "Krippendorff" in page.inner_text("#stat-agreement")
    page.wait_for_selector("#chart-annotators canvas")
    page.wait_for_selector("#chart-hours canvas")
    assert page.locator("#annotator-table tbody tr").count() == 2
