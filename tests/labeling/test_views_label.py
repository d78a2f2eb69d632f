from __future__ import annotations

from django.test import Client

from labeling.models import Assignment, Comparison, Demonstration, Ranking
from tests.labeling.factories import make_queue


def _page(client: Client, queue, **headers) -> str:  # type: ignore[no-untyped-def]
    return client.get(f"/labeling/queues/{queue.pk}/", headers=headers).content.decode()


def test_it_shows_a_pairwise_task_with_keyboard_hints(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", k=2, guidelines="Prefer **kind** answers.")
    client.force_login(alice)
    body = _page(client, queue)
    assert "A is better" in body and "<kbd>t</kbd> tie" in body
    assert "<strong>kind</strong>" in body
    assert Assignment.objects.filter(annotator=alice, status="active").count() == 1


def test_it_submits_a_choice_and_swaps_in_the_next_task(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=2, k=2)
    client.force_login(alice)
    _page(client, queue)
    claim = Assignment.objects.get(annotator=alice)
    response = client.post(
        f"/labeling/queues/{queue.pk}/submit/",
        {"assignment": claim.pk, "choice": "b", "comment": "B is clearer", "flags": ["off-topic"]},
        headers={"HX-Request": "true"},
    )
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body and 'id="task"' in body
    assert "You: <strong>1</strong> done" in body
    ranking = Ranking.objects.get()
    a, b = claim.task.slots.order_by("slot").values_list("completion_id", flat=True)
    assert ranking.order == [[b], [a]] and ranking.flags == ["off-topic"]
    assert list(Comparison.objects.values_list("chosen_id", "rejected_id")) == [(b, a)]
    assert Assignment.objects.filter(annotator=alice, status="active").count() == 1  # the next one


def test_it_redirects_without_htmx(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", k=2)
    client.force_login(alice)
    _page(client, queue)
    claim = Assignment.objects.get(annotator=alice)
    response = client.post(
        f"/labeling/queues/{queue.pk}/submit/", {"assignment": claim.pk, "choice": "tie"}
    )
    assert response.status_code == 302 and response["Location"] == f"/labeling/queues/{queue.pk}/"
    assert Comparison.objects.get().is_tie


def test_it_ranks_with_rank_fields_scores_and_a_demonstration(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", k=4, ask_scores=True)
    client.force_login(alice)
    _page(client, queue)
    claim = Assignment.objects.get(annotator=alice)
    ids = list(claim.task.slots.order_by("slot").values_list("completion_id", flat=True))
    data = {"assignment": claim.pk, "choice": "rank", "demonstration": "The ideal answer."}
    for rank, alias in zip([2, 1, 4, 3], "ABCD", strict=True):
        data[f"rank_{alias}"] = rank  # fields are named by alias, never by completion id
        data[f"score_{alias}"] = 8 - rank
    client.post(f"/labeling/queues/{queue.pk}/submit/", data, headers={"HX-Request": "true"})
    ranking = Ranking.objects.get()
    assert ranking.order == [[ids[1]], [ids[0]], [ids[3]], [ids[2]]]
    assert Comparison.objects.count() == 6
    assert Demonstration.objects.get().text == "The ideal answer."


def test_it_shows_an_error_in_place_for_a_bad_ranking(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", k=3)
    client.force_login(alice)
    _page(client, queue)
    claim = Assignment.objects.get(annotator=alice)
    response = client.post(
        f"/labeling/queues/{queue.pk}/submit/",
        {"assignment": claim.pk, "choice": "rank"},
        headers={"HX-Request": "true"},
    )
    assert "give every completion a rank" in response.content.decode()
    assert not Ranking.objects.exists()


def test_it_skips_and_undoes(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=3, k=2)
    client.force_login(alice)
    _page(client, queue)
    first = Assignment.objects.get(annotator=alice)
    client.post(f"/labeling/queues/{queue.pk}/submit/", {"assignment": first.pk, "choice": "skip"})
    first.refresh_from_db()
    assert first.status == "skipped"
    _page(client, queue)
    second = Assignment.objects.get(annotator=alice, status="active")
    client.post(f"/labeling/queues/{queue.pk}/submit/", {"assignment": second.pk, "choice": "a"})
    body = client.post(
        f"/labeling/queues/{queue.pk}/undo/", headers={"HX-Request": "true"}
    ).content.decode()
    assert "Undone" in body and not Ranking.objects.exists()
    second.refresh_from_db()
    assert second.status == "active"


def test_it_escapes_completions_and_sanitises_guidelines(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    from generation.models import Completion

    queue = make_queue(
        mode="pairwise",
        k=2,
        guidelines='Hi <script>alert(1)</script> <img src=x onerror="alert(2)">',
    )
    Completion.objects.update(text='<script>alert("c")</script><img src=x onerror=alert(3)>')
    client.force_login(alice)
    body = _page(client, queue)
    assert "<script>alert" not in body and "onerror=" not in body.replace(
        "onerror=alert(3)&gt;", ""
    )
    assert "&lt;script&gt;alert(&quot;c&quot;)&lt;/script&gt;" in body


def test_it_404s_another_annotators_assignment(client: Client, alice, bob) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", k=2)
    client.force_login(alice)
    _page(client, queue)
    claim = Assignment.objects.get(annotator=alice)
    client.force_login(bob)
    response = client.post(
        f"/labeling/queues/{queue.pk}/submit/", {"assignment": claim.pk, "choice": "a"}
    )
    assert response.status_code == 404
    assert not Ranking.objects.exists()


def test_it_404s_a_queue_reserved_for_others(client: Client, alice, bob) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", k=2)
    queue.annotators.add(bob)
    client.force_login(alice)
    assert client.get(f"/labeling/queues/{queue.pk}/").status_code == 404
    assert client.get("/labeling/").content.decode().count(queue.name) == 0


def test_it_rejects_get_on_submit_and_keeps_researchers_out(client: Client, alice, dave) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", k=2)
    client.force_login(alice)
    assert client.get(f"/labeling/queues/{queue.pk}/submit/").status_code == 405
    client.force_login(dave)
    assert client.get(f"/labeling/queues/{queue.pk}/").status_code == 403


def test_it_says_when_the_queue_is_done(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=1, k=2)
    client.force_login(alice)
    _page(client, queue)
    claim = Assignment.objects.get(annotator=alice)
    client.post(f"/labeling/queues/{queue.pk}/submit/", {"assignment": claim.pk, "choice": "a"})
    assert "All done here" in _page(client, queue)


def test_it_renders_a_conversation_as_turns_and_answers_as_markdown(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    from generation.models import Completion, Prompt

    queue = make_queue(mode="pairwise", prompts=1, k=2)
    Prompt.objects.update(
        messages=[
            {"role": "user", "content": "Sort a list <fast>"},
            {"role": "assistant", "content": "Use **sorted**."},
            {"role": "user", "content": "Show me."},
        ]
    )
    Completion.objects.update(text="Like this:\n\n```python\nsorted(xs)\n```\n\n<b>done</b>")
    client.force_login(alice)
    body = _page(client, queue)
    assert body.count('<li class="turn turn-') == 3
    assert "Sort a list &lt;fast&gt;" in body  # a user's turn is plain, escaped text
    assert "Use <strong>sorted</strong>." in body  # an assistant's turn is Markdown
    # Each answer: Markdown with a highlighted code block; its raw HTML stays text.
    assert body.count('<div class="codehilite">') == 2
    assert '<span class="hl-nb">sorted</span>' in body
    assert "&lt;b&gt;done&lt;/b&gt;" in body and "<b>done</b>" not in body
    # The exact text is kept beside the rendering, for "start from A".
    assert body.count('<div class="raw-answer text">Like this:') == 2


def test_it_gives_back_the_comment_flags_and_response_after_an_undo(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=2, k=2)
    client.force_login(alice)
    _page(client, queue)
    claim = Assignment.objects.get(annotator=alice, status="active")
    client.post(
        f"/labeling/queues/{queue.pk}/submit/",
        {
            "assignment": claim.pk,
            "choice": "a",
            "comment": "A is <clearer>",
            "flags": ["unsafe"],
            "demonstration": "An even better answer.",
        },
    )
    body = client.post(
        f"/labeling/queues/{queue.pk}/undo/", headers={"HX-Request": "true"}
    ).content.decode()
    assert "Undone" in body
    assert (
        '<textarea id="id_comment" name="comment" rows="2">A is &lt;clearer&gt;</textarea>' in body
    )
    assert 'value="unsafe" checked' in body and 'value="broken" checked' not in body
    assert ">An even better answer.</textarea>" in body
    assert '<details class="extras" open>' in body
    # The next, untouched task starts empty.
    client.post(f"/labeling/queues/{queue.pk}/submit/", {"assignment": claim.pk, "choice": "a"})
    fresh = _page(client, queue)
    assert '<textarea id="id_comment" name="comment" rows="2"></textarea>' in fresh
    assert "checked" not in fresh.split('class="extras"')[1].split("</details>")[0]
