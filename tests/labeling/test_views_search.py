"""The search page (labels and prompts) and one prompt's record."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from labeling import snapshots
from labeling.models import Ranking
from tests.labeling.factories import label_queue, make_queue


@pytest.fixture
def labeled(db, alice, bob):  # type: ignore[no-untyped-def]
    """Two queues of 2 prompts x 2 answers; alice and bob label the first, alice the second."""
    first = make_queue(mode="pairwise", prompts=2, k=2, overlap=2, name="chat", ask_scores=True)
    second = make_queue(mode="pairwise", prompts=2, k=2, name="code")
    label_queue(first, alice, scores_from=lambda ids: {str(ids[0]): 6, str(ids[1]): 2})
    # bob prefers the second answer everywhere: he disagrees with alice on every task.
    label_queue(
        first,
        bob,
        order=lambda ids: [[ids[1]], [ids[0]]],
        scores_from=lambda ids: {str(ids[1]): 3, str(ids[0]): 1},
        flags=("unsafe",),
        comment="the first answer is rude",
    )
    label_queue(second, alice)
    return first, second


def results(client: Client, **params: str | float) -> list[Ranking]:
    response = client.get("/labeling/search/", {name: str(value) for name, value in params.items()})
    assert response.status_code == 200
    return [row.label for row in response.context["rows"]]


def test_it_is_for_researchers_and_admins(client: Client, alice, dave, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(alice)
    assert client.get("/labeling/search/").status_code == 403
    for user in (dave, carol):
        client.force_login(user)
        assert client.get("/labeling/search/").status_code == 200
    assert client.post("/labeling/search/").status_code == 405


def test_it_finds_labels_by_annotator_queue_flag_and_text(client: Client, dave, labeled) -> None:  # type: ignore[no-untyped-def]
    first, second = labeled
    client.force_login(dave)
    assert len(results(client, kind="labels")) == 6
    assert {r.annotator.username for r in results(client, annotator="bob")} == {"bob"}
    assert len(results(client, annotator="bob")) == 2
    assert {r.task.queue_id for r in results(client, queue=second.pk)} == {second.pk}
    assert {r.annotator.username for r in results(client, flagged="yes")} == {"bob"}
    assert len(results(client, flagged="no")) == 4
    # The comment, then an answer's text, then the prompt's text.
    assert {r.annotator.username for r in results(client, q="RUDE")} == {"bob"}
    answer = first.tasks.first().slots.first().completion  # type: ignore[union-attr]
    answer.text = "a quite unusual answer about otters"
    answer.save(update_fields=["text"])
    by_answer = results(client, q="OTTERS")
    assert len(by_answer) == 2  # alice's and bob's labels of that task
    assert all(r.task.prompt_id == answer.prompt_id for r in by_answer)
    prompt_text = second.tasks.first().prompt.text  # type: ignore[union-attr]
    assert {r.task.prompt.text for r in results(client, q=prompt_text, queue=second.pk)} == {
        prompt_text
    }


def test_it_filters_by_score_agreement_and_date(client: Client, dave, labeled) -> None:  # type: ignore[no-untyped-def]
    first, _second = labeled
    client.force_login(dave)
    assert {r.annotator.username for r in results(client, min_score=5)} == {"alice"}
    assert {r.annotator.username for r in results(client, max_score=1)} == {"bob"}
    # alice and bob disagree on every task of "chat": agreement 0 there.
    contested = results(client, max_agreement=0.4)
    assert len(contested) == 4 and {r.task.queue_id for r in contested} == {first.pk}
    assert results(client, min_agreement=0.5) == []
    Ranking.objects.filter(annotator__username="bob").update(
        created_at=timezone.now() - timedelta(days=10)
    )
    today = timezone.now().date().isoformat()
    assert {r.annotator.username for r in results(client, since=today)} == {"alice"}


def test_it_refuses_bad_filters_with_the_field_named(client: Client, dave, labeled) -> None:  # type: ignore[no-untyped-def]
    client.force_login(dave)
    for params, field in (
        ({"min_score": 10**30}, "min_score"),
        ({"min_score": 5, "max_score": 2}, "max_score"),
        ({"max_agreement": 2}, "max_agreement"),
        ({"since": "yesterday"}, "since"),
        ({"queue": 10**30}, "queue"),
        ({"q": "x" * 201}, "q"),
    ):
        response = client.get("/labeling/search/", params)
        assert response.status_code == 200, params
        assert field in response.context["form"].errors, params
        assert "rows" not in response.context


def test_it_renders_results_alone_for_htmx_and_keeps_filters_across_pages(  # type: ignore[no-untyped-def]
    client: Client, dave, labeled, monkeypatch
) -> None:
    from labeling import search_views

    monkeypatch.setattr(search_views, "PAGE_SIZE", 2)
    client.force_login(dave)
    partial = client.get(
        "/labeling/search/", {"annotator": "alice"}, headers={"HX-Request": "true"}
    )
    body = partial.content.decode()
    assert "<html" not in body and 'id="search-results"' in body
    assert "annotator=alice&amp;page=2" in body


def test_it_finds_prompts_by_text_and_escapes_them(client: Client, dave, labeled) -> None:  # type: ignore[no-untyped-def]
    first, _ = labeled
    prompt = first.tasks.first().prompt  # type: ignore[union-attr]
    prompt.text = "<script>alert(1)</script> " + prompt.text
    prompt.save(update_fields=["text"])
    client.force_login(dave)
    response = client.get("/labeling/search/", {"kind": "prompts", "q": "<script>"})
    assert [p.pk for p in response.context["page"].object_list] == [prompt.pk]
    assert "<script>alert" not in response.content.decode()


def test_it_shows_a_prompts_answers_labels_and_snapshots(client: Client, dave, labeled) -> None:  # type: ignore[no-untyped-def]
    first, _ = labeled
    task = first.tasks.first()
    prompt = task.prompt  # type: ignore[union-attr]
    snapshot = snapshots.snapshot_build(
        name="chat labels", spec=snapshots.SnapshotFilter(queues=[first.pk])
    )
    client.force_login(dave)
    response = client.get(f"/labeling/prompts/{prompt.pk}/")
    assert response.status_code == 200
    body = response.content.decode()
    for slot in task.slots.all():  # type: ignore[union-attr]
        assert slot.completion.text in body
    assert "A &gt; B" in body and "B &gt; A" in body  # alice's and bob's labels, by letter
    assert "the first answer is rude" in body and "agreement 0.00" in body
    assert snapshot.name in body
    assert client.get("/labeling/prompts/999999999/").status_code == 404


def test_it_renders_a_conversation_prompt_as_turns(client: Client, dave, labeled) -> None:  # type: ignore[no-untyped-def]
    first, _ = labeled
    prompt = first.tasks.first().prompt  # type: ignore[union-attr]
    prompt.messages = [
        {"role": "user", "content": "Hi <b>there</b>"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Tell me a joke."},
    ]
    prompt.save(update_fields=["messages"])
    client.force_login(dave)
    body = client.get(f"/labeling/prompts/{prompt.pk}/").content.decode()
    assert body.count('<li class="turn turn-') == 3
    assert '<span class="turn-role">assistant</span>' in body
    assert "Hi &lt;b&gt;there&lt;/b&gt;" in body
