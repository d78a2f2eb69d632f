"""Snapshots of single-answer labels: frozen as TRL unpaired records, hashed, exported."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from labeling import review, snapshots
from labeling.models import Ranking, SnapshotSingle
from tests.labeling.factories import judge_queue, label_queue, make_queue

pytestmark = pytest.mark.django_db


def _good_if_even(i: int, text: str) -> str:
    return "good" if text.split()[1] in ("0", "2") else "bad"


def _build(queue_ids: list[int], name: str = "thumbs", **kwargs):  # type: ignore[no-untyped-def]
    spec_keys = {"min_agreement", "include_ai"}
    spec = snapshots.SnapshotFilter(
        queues=queue_ids, **{k: kwargs.pop(k) for k in list(kwargs) if k in spec_keys}
    )
    return snapshots.snapshot_build(name=name, spec=spec, **kwargs)


def _lines(chunks) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    return [json.loads(x) for x in b"".join(chunks).decode().split("\n")[:-1]]


def test_it_freezes_every_verdict_in_trls_unpaired_format(alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="single", prompts=2, k=2, ask_scores=True, name="thumbs q")
    judge_queue(queue, alice, _good_if_even, lambda v: 6 if v == "good" else 2)

    snapshot = _build([queue.pk])

    rows = _lines(snapshots.snapshot_export_unpaired_jsonl(snapshot))
    assert len(rows) == 4 and snapshot.stats["single_answers"] == 4
    assert snapshot.stats["single_good"] == 2 and snapshot.row_count == 0
    assert snapshot.prompt_count == 2
    for row in rows:
        assert list(row) == [
            "prompt",
            "completion",
            "label",
            "score",
            "votes",
            "agreement",
            "annotator",
            "queue",
            "snapshot",
        ]
        good = row["completion"].startswith("answer 0")
        assert row["label"] is good and row["score"] == (6 if good else 2)
        assert (row["annotator"], row["queue"], row["snapshot"]) == ("alice", "thumbs q", "thumbs")
        # Each answer beside its own prompt ("answer j to i" answers "Prompt i: ...").
        assert row["prompt"] == f"Prompt {row['completion'][-1]}: once upon a"
    # The content hash covers the unpaired lines, and exports give the frozen bytes.
    assert snapshot.content_hash == snapshots.snapshot_export_digest(snapshot)
    assert b"".join(snapshots.snapshot_export_trl_jsonl(snapshot)) == b""


def test_it_loads_as_an_unpaired_preference_dataset(alice, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from datasets import load_dataset
    from trl.data_utils import is_conversational

    queue = make_queue(mode="single", prompts=2, k=2)
    judge_queue(queue, alice, _good_if_even)
    snapshot = _build([queue.pk])
    path = tmp_path / "unpaired.jsonl"
    path.write_bytes(b"".join(snapshots.snapshot_export_unpaired_jsonl(snapshot)))

    dataset = load_dataset("json", data_files=str(path), split="train")

    assert dataset.features["label"].dtype == "bool"
    assert {"prompt", "completion", "label"} <= set(dataset.column_names)  # TRL's unpaired
    assert sorted(dataset["label"]) == [False, False, True, True]
    assert not is_conversational(dataset[0])


def test_it_keeps_the_hash_of_snapshots_without_single_answers(alice) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=2, k=2)
    label_queue(queue, alice)
    snapshot = _build([queue.pk], name="pairs")
    pairs = [x.line for x in snapshot.rows.order_by("id")]
    listwise = [x.line for x in snapshot.listwise.order_by("id")]
    # The three sections it always had, and no fourth.
    assert snapshot.content_hash == snapshots.snapshot_lines_digest(pairs, listwise, [])
    assert not SnapshotSingle.objects.exists()
    assert "single answers" not in snapshots.snapshot_data_card(snapshot)


def test_it_aggregates_verdicts_per_answer_by_majority(alice, bob, carol) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="single", prompts=1, k=2, overlap=3)
    judge_queue(queue, alice, lambda i, text: "good")
    judge_queue(queue, bob, lambda i, text: "good" if text.startswith("answer 0") else "bad")
    judge_queue(queue, carol, lambda i, text: "bad")

    majority = _build([queue.pk], name="majority", aggregation="majority")
    rows = {r["completion"]: r for r in _lines(snapshots.snapshot_export_unpaired_jsonl(majority))}
    assert rows["answer 0 to 0"]["label"] is True and rows["answer 1 to 0"]["label"] is False
    assert {r["votes"] for r in rows.values()} == {3}
    assert rows["answer 0 to 0"]["agreement"] == pytest.approx(2 / 3)
    assert {r["annotator"] for r in rows.values()} == {""}
    # Every vote under `all`; a minimum agreement above 2/3 leaves none.
    assert _build([queue.pk], name="all").stats["single_answers"] == 6
    with pytest.raises(snapshots.SnapshotError, match="no comparison matches"):
        _build([queue.pk], name="strict", aggregation="majority", min_agreement=0.9)


def test_it_drops_contested_answers_and_rejected_labels(alice, bob, carol) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="single", prompts=1, k=1, overlap=2)
    judge_queue(queue, alice, lambda i, text: "good")
    judge_queue(queue, bob, lambda i, text: "bad")
    with pytest.raises(snapshots.SnapshotError):
        _build([queue.pk], name="contested", aggregation="majority")
    review.label_review(
        ranking=Ranking.objects.get(annotator=bob), status="rejected", reason="no", reviewer=carol
    )
    kept = _build([queue.pk], name="after review", aggregation="majority")
    (row,) = _lines(snapshots.snapshot_export_unpaired_jsonl(kept))
    assert row["label"] is True and row["votes"] == 1


def test_it_exports_single_answers_from_the_page_the_api_and_the_command(
    client: Client, alice, dave, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="single", prompts=2, k=1)
    judge_queue(queue, alice, _good_if_even)
    snapshot = _build([queue.pk], eval_fraction=0.5, seed=1)
    frozen = b"".join(snapshots.snapshot_export_unpaired_jsonl(snapshot))

    client.force_login(dave)
    page = client.get(f"/labeling/snapshots/{snapshot.pk}/").content.decode()
    assert f"/labeling/snapshots/{snapshot.pk}/unpaired.jsonl" in page
    download = client.get(f"/labeling/snapshots/{snapshot.pk}/unpaired.jsonl")
    assert download.getvalue() == frozen
    assert (
        client.get(f"/labeling/snapshots/{snapshot.pk}/unpaired.jsonl?split=x").status_code == 400
    )

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=dave).key}")
    response = api.get(f"/api/labeling/snapshots/{snapshot.pk}/unpaired.jsonl")
    assert b"".join(response.streaming_content) == frozen
    split = {
        s: b"".join(
            api.get(
                f"/api/labeling/snapshots/{snapshot.pk}/unpaired.jsonl?split={s}"
            ).streaming_content
        )
        for s in ("train", "eval")
    }
    assert sorted((split["train"] + split["eval"]).splitlines()) == sorted(frozen.splitlines())
    bad = api.get(f"/api/labeling/snapshots/{snapshot.pk}/unpaired.jsonl?split=both")
    assert bad.status_code == 400 and bad.json()["field"] == "split"
    assert api.get("/api/labeling/snapshots/999999/unpaired.jsonl").status_code == 404

    out = tmp_path / "export"
    call_command("export_preferences", "thumbs", "--out", str(out), stdout=StringIO())
    assert (out / "unpaired.jsonl").read_bytes() == frozen
    assert "single answers (KTO) | 2" in (out / "README.md").read_text()
    stdout = StringIO()
    call_command("export_preferences", "thumbs", "--unpaired", stdout=stdout)
