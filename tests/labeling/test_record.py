"""The record: label versions, frozen snapshots, one meaning of margin, every label kept.

Run on SQLite by default and on PostgreSQL (COPY export path) with DATABASE_URL set.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from generation.models import Completion
from labeling import record, services, snapshots
from labeling.models import (
    Comparison,
    DatasetSnapshot,
    LabelingQueue,
    Ranking,
    RankingVersion,
    SnapshotRanking,
    SnapshotRow,
)
from labeling.snapshots import build
from tests.factories import UserFactory
from tests.labeling.factories import claim_next, judge_queue, label_queue, make_queue
from tests.queries import first_row
from training import datasets


def _claim_submit(queue: LabelingQueue, user, order_of, **kwargs):  # type: ignore[no-untyped-def]
    claim = claim_next(queue, user)
    ids = list(claim.task.slots.order_by("slot").values_list("completion_id", flat=True))
    order = order_of(ids)
    scores = kwargs.pop("scores_of", None)
    return (
        claim,
        ids,
        services.ranking_submit(
            assignment_id=claim.pk,
            user=user,
            submission=services.Submission(
                order=order, scores=scores(ids) if scores else None, **kwargs
            ),
        ),
    )


def _resubmit(claim, user, order, **kwargs):  # type: ignore[no-untyped-def]
    return services.ranking_submit(
        assignment_id=claim.pk, user=user, submission=services.Submission(order=order, **kwargs)
    )


def _build(queues, name: str = "snap", **kwargs) -> DatasetSnapshot:  # type: ignore[no-untyped-def]
    spec_keys = {"annotators", "exclude_flags", "min_agreement", "date_from", "date_to", "both_bad"}
    spec = snapshots.SnapshotFilter(
        queues=[q.pk for q in queues], **{k: kwargs.pop(k) for k in list(kwargs) if k in spec_keys}
    )
    kwargs.setdefault("eval_fraction", 0)
    return snapshots.snapshot_build(name=name, spec=spec, **kwargs)


def _lines(chunks) -> list[dict]:  # type: ignore[no-untyped-def]
    return [json.loads(line) for line in b"".join(chunks).split(b"\n")[:-1]]


# --- versions -------------------------------------------------------------------------------


def test_it_appends_a_version_for_every_submit_edit_undo_and_resubmit(db) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=1, k=2)
    ann = UserFactory(username="ann", roles=["annotator"])
    claim, (a, b), first = _claim_submit(queue, ann, lambda ids: [[ids[0]], [ids[1]]])
    submitted_at = first.created_at
    edited = _resubmit(claim, ann, [[b], [a]], demonstration="Better.")
    assert edited.created_at == submitted_at and edited.updated_at >= submitted_at
    assert edited.version == 2
    # An edit is not a new vote: the comparison keeps the first-submitted time.
    assert Comparison.objects.get().created_at == submitted_at
    services.ranking_undo_last(queue=queue, user=ann)
    assert not Ranking.objects.exists() and not Comparison.objects.exists()
    again = _resubmit(claim, ann, [[a], [b]])
    assert again.version == 4 and again.created_at == submitted_at

    versions = list(RankingVersion.objects.order_by("version"))
    assert [(v.version, v.action) for v in versions] == [
        (1, "submitted"),
        (2, "edited"),
        (3, "undone"),
        (4, "resubmitted"),
    ]
    assert [v.order for v in versions] == [[[a], [b]], [[b], [a]], [], [[a], [b]]]
    assert versions[1].demonstration == "Better." and versions[2].demonstration == ""
    assert {v.first_submitted_at for v in versions} == {submitted_at}
    # An identical re-submit is idempotent: no new version.
    _resubmit(claim, ann, [[a], [b]])
    assert RankingVersion.objects.count() == 4


def test_it_dates_edited_votes_by_their_first_submission(db) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=1, k=2)
    ann = UserFactory(username="ann", roles=["annotator"])
    claim, (a, b), ranking = _claim_submit(queue, ann, lambda ids: [[ids[0]], [ids[1]]])
    cutoff = timezone.now() + timedelta(microseconds=1)
    _resubmit(claim, ann, [[b], [a]])
    with pytest.raises(snapshots.SnapshotError, match="no comparison"):
        _build([queue], name="new votes only", date_from=cutoff)
    old = _build([queue], name="old votes", date_to=cutoff)
    assert old.row_count == 1 and SnapshotRow.objects.get(snapshot=old).chosen_id == b


def test_it_exports_every_version_of_every_label(db, client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=2, k=2)
    ann = UserFactory(username="ann", roles=["annotator"])
    ben = UserFactory(username="ben", roles=["annotator"])
    claim, (a, b), _ = _claim_submit(queue, ann, lambda ids: [[ids[0]], [ids[1]]])
    _resubmit(claim, ann, [[b], [a]], comment="changed my mind")
    services.ranking_undo_last(queue=queue, user=ann)
    label_queue(queue, ben)

    rows = _lines(record.label_versions_export_jsonl())
    assert [(r["annotator"], r["version"], r["action"], r["current"]) for r in rows] == [
        ("ann", 1, "submitted", False),
        ("ann", 2, "edited", False),
        ("ann", 3, "undone", False),
        ("ben", 1, "submitted", True),  # the other task (ann holds the undone one again)
    ]
    assert rows[0]["order"] == [[a], [b]] and rows[1]["comment"] == "changed my mind"
    assert rows[2]["order"] == [] and rows[0]["first_submitted_at"] == rows[2]["first_submitted_at"]
    assert [c["alias"] for c in rows[0]["completions"]] == ["A", "B"]
    assert {c["id"] for c in rows[0]["completions"]} == {a, b}

    dave = UserFactory(username="dave", roles=["researcher"])
    client.force_login(dave)
    api = client.get(f"/api/labeling/labels/export.jsonl?queue={queue.pk}")
    assert api.status_code == 200 and _lines(api.streaming_content) == rows
    page = client.get("/labeling/labels.jsonl")
    assert page.status_code == 200 and _lines(page.streaming_content) == rows
    assert client.get("/api/labeling/labels/export.jsonl?queue=x").status_code == 400
    call_command(
        "export_preferences",
        "--labels",
        "--queue",
        queue.name,
        "--out",
        str(tmp_path),
        stdout=io.StringIO(),
    )
    assert _lines([(tmp_path / "labels.jsonl").read_bytes()]) == rows


def test_it_keeps_label_versions_from_annotators(db, client) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=1, k=2)
    alice = UserFactory(username="alice2", roles=["annotator"])
    client.force_login(alice)
    assert client.get("/api/labeling/labels/export.jsonl").status_code == 403
    assert queue.pk


# --- snapshots freeze everything -------------------------------------------------------------


def _every_export(snap: DatasetSnapshot, tmp_path) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    snap.refresh_from_db()
    exports = {
        f"trl-{split}": b"".join(snapshots.snapshot_export_trl_jsonl(snap, split=split))
        for split in (None, "train", "eval")
    }
    exports["listwise"] = b"".join(snapshots.snapshot_export_rankings_jsonl(snap))
    exports["sft"] = b"".join(snapshots.snapshot_export_sft_jsonl(snap))
    exports["card"] = snapshots.snapshot_data_card(snap).encode()
    path = tmp_path / f"{len(list(tmp_path.iterdir()))}.parquet"
    snapshots.snapshot_export_trl_parquet(snap, str(path))
    exports["parquet"] = path.read_bytes()
    exports["sft-training"] = repr(datasets.snapshot_sft_data(snapshot=snap)).encode()
    exports["pairs-training"] = repr(datasets.snapshot_preference_data(snapshot=snap)).encode()
    return exports


@pytest.mark.parametrize("aggregation", ["all", "majority", "mean-margin"])
def test_it_keeps_every_export_byte_identical_after_edits_undo_and_renames(
    db, tmp_path, aggregation: str
) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", prompts=3, k=3, overlap=2, ask_scores=True)
    ann = UserFactory(username="ann", roles=["annotator"])
    ben = UserFactory(username="ben", roles=["annotator"])
    claims = []
    for _ in range(3):
        claims.append(
            _claim_submit(
                queue,
                ann,
                lambda ids: [[ids[0]], [ids[1]], [ids[2]]],
                scores_of=lambda ids: {str(ids[0]): 7, str(ids[1]): 4},
                demonstration="Ideal.",
                flags=("broken",),
            )
        )
    label_queue(queue, ben)
    snap = _build([queue], aggregation=aggregation, eval_fraction=0.5, seed=1, ties="keep")
    before = _every_export(snap, tmp_path)
    assert before["trl-None"] and before["listwise"] and before["sft"]
    assert snapshots.snapshot_export_digest(snap) == snap.content_hash

    claim, ids, _ = claims[0]
    _resubmit(claim, ann, [[ids[2]], [ids[1]], [ids[0]]], demonstration="Edited text.")
    services.ranking_undo_last(queue=queue, user=ann)
    _resubmit(claim, ann, [[ids[1], ids[2]], [ids[0]]], demonstration="Third try.")
    queue.name = "renamed queue"
    queue.save()
    ann.username = "ann-renamed"
    ann.save()
    DatasetSnapshot.objects.filter(pk=snap.pk).update()  # nothing a snapshot holds moved

    after = _every_export(snap, tmp_path)
    for key in before:
        assert after[key] == before[key], key
    assert snapshots.snapshot_export_digest(snap) == snap.content_hash
    assert b"ann-renamed" not in after["listwise"] + after["sft"] + after["trl-None"]
    assert b"Edited text." not in after["sft"] and b"renamed queue" not in after["trl-None"]


def test_it_hashes_every_format(db) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", prompts=2, k=3)
    ann = UserFactory(username="ann", roles=["annotator"])
    label_queue(queue, ann, demonstration="Ideal.")
    with_demos = _build([queue], name="with demos")
    other = make_queue(mode="ranking", prompts=2, k=3)
    label_queue(other, ann)
    # The same pairs' texts would hash alike before; now listwise and SFT count too.
    assert b"".join(snapshots.snapshot_export_sft_jsonl(with_demos))
    digest = snapshots.snapshot_lines_digest(
        b"".join(snapshots.snapshot_export_trl_jsonl(with_demos)).decode().splitlines(),
        b"".join(snapshots.snapshot_export_rankings_jsonl(with_demos)).decode().splitlines(),
        [],
    )
    assert digest != with_demos.content_hash == snapshots.snapshot_export_digest(with_demos)


def test_its_hash_is_the_sha256_of_every_export_under_its_heading(db) -> None:  # type: ignore[no-untyped-def]
    # Written out by hand, independently of the code that hashes at build (which hashes
    # each line as it writes it) and of the one that recomputes it from the exports.
    ranked = make_queue(mode="ranking", prompts=2, k=3)
    single = make_queue(mode="single", prompts=2, k=2)
    ann = UserFactory(username="ann", roles=["annotator"])
    label_queue(ranked, ann, demonstration="Ideal.")
    judge_queue(single, ann, lambda i, text: "good" if i % 2 else "bad")

    def sections(snap: DatasetSnapshot) -> bytes:
        parts = {
            "trl": b"".join(snapshots.snapshot_export_trl_jsonl(snap)),
            "listwise": b"".join(snapshots.snapshot_export_rankings_jsonl(snap)),
            "sft": b"".join(snapshots.snapshot_export_sft_jsonl(snap)),
        }
        assert all(parts.values())
        return b"".join(name.encode() + b"\n" + data for name, data in parts.items())

    with_singles = _build([ranked, single], name="with singles", ties="keep")
    unpaired = b"".join(snapshots.snapshot_export_unpaired_jsonl(with_singles))
    assert unpaired.count(b"\n") == 4
    expected = hashlib.sha256(sections(with_singles) + b"unpaired\n" + unpaired).hexdigest()
    assert with_singles.content_hash == expected
    # Without single answers there is no unpaired heading.
    pairs_only = _build([ranked], name="pairs only")
    assert pairs_only.content_hash == hashlib.sha256(sections(pairs_only)).hexdigest()


# --- one meaning of margin ---------------------------------------------------------------------


def _votes(queue, users_orders):  # type: ignore[no-untyped-def]
    for user, order_of, scores_of in users_orders:
        label_queue(queue, user, order_of, scores_from=scores_of)


def test_it_aggregates_margins_and_scores_in_one_unit(db) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", prompts=1, k=3, overlap=3, ask_scores=True)
    ann, ben, cat = (UserFactory(username=n, roles=["annotator"]) for n in ("ann", "ben", "cat"))
    # ann: A > B > C scored 6, 6, 2; ben: A > C > B scored 5, -, 3 (B unscored);
    # cat: B > A > C unscored.
    _votes(
        queue,
        [
            (
                ann,
                lambda i: [[i[0]], [i[1]], [i[2]]],
                lambda i: {str(i[0]): 6, str(i[1]): 6, str(i[2]): 2},
            ),
            (ben, lambda i: [[i[0]], [i[2]], [i[1]]], lambda i: {str(i[0]): 5, str(i[2]): 3}),
            (cat, lambda i: [[i[1]], [i[0]], [i[2]]], None),
        ],
    )
    task = queue.tasks.get()
    a, b, c = task.slots.order_by("slot").values_list("completion_id", flat=True)

    every = _build([queue], name="all", aggregation="all")
    rows = SnapshotRow.objects.filter(snapshot=every)
    assert all(r.margin >= 0 and r.margin == r.rank_gap for r in rows)
    ann_ab = rows.get(annotator="ann", chosen_id=a, rejected_id=b)
    # Equal scores on a strict preference: margin 1 rank step, score_diff 0.
    assert (ann_ab.margin, ann_ab.score_diff, ann_ab.is_tie) == (1.0, 0.0, False)
    assert rows.get(annotator="ann", chosen_id=a, rejected_id=c).margin == 2.0

    majority = _build([queue], name="majority", aggregation="majority")
    ab = SnapshotRow.objects.get(snapshot=majority, chosen_id=a, rejected_id=b)
    # A > B: ann (gap 1), ben (gap 2) agree; cat dissents. Mean gap of the agreeing votes.
    assert (ab.margin, ab.votes, ab.agreement) == (1.5, 3, pytest.approx(2 / 3))
    # Aggregated scores: means over the agreeing votes that scored each answer.
    assert (ab.score_chosen, ab.score_rejected, ab.score_diff) == (5.5, 6.0, 0.0)

    mean = _build([queue], name="mean", aggregation="mean-margin")
    ab = SnapshotRow.objects.get(snapshot=mean, chosen_id=a, rejected_id=b)
    # Signed gaps +1, +2, -1: mean 2/3, oriented A > B, never negative.
    assert ab.margin == pytest.approx(2 / 3) and not ab.is_tie
    assert all(r.margin >= 0 for r in SnapshotRow.objects.filter(snapshot=mean))
    record_ab = next(
        r
        for r in _lines(snapshots.snapshot_export_trl_jsonl(mean))
        if r["chosen"] == Completion.objects.get(pk=a).text
        and r["rejected"] == Completion.objects.get(pk=b).text
    )
    assert record_ab["margin"] == record_ab["rank_gap"] == pytest.approx(2 / 3)
    assert record_ab["score_diff"] == 0.0


def test_it_keeps_a_strict_preference_with_equal_scores_strict_under_mean_margin(db) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=1, k=2, ask_scores=True)
    ann = UserFactory(username="ann", roles=["annotator"])
    label_queue(
        queue, ann, lambda i: [[i[1]], [i[0]]], scores_from=lambda i: {str(i[0]): 4, str(i[1]): 4}
    )
    snap = _build([queue], aggregation="mean-margin")
    row = SnapshotRow.objects.get(snapshot=snap)
    assert not row.is_tie and row.margin == 1.0 and row.score_diff == 0.0


def test_it_answers_400_naming_both_answers_for_contradicting_scores(db, client) -> None:  # type: ignore[no-untyped-def]
    from rest_framework.test import APIClient

    queue = make_queue(mode="pairwise", prompts=1, k=2, ask_scores=True)
    alice = UserFactory(username="alice3", roles=["annotator"])
    api = APIClient()
    api.force_authenticate(alice)
    task = api.post(f"/api/labeling/queues/{queue.pk}/next/").json()
    response = api.post(
        f"/api/labeling/queues/{queue.pk}/submit/",
        {"assignment": task["assignment"], "order": [["A"], ["B"]], "scores": {"A": 3, "B": 6}},
        format="json",
    )
    assert response.status_code == 400
    assert "A is ranked above B but scored lower (3 < 6)" in response.json()["detail"]
    assert not Ranking.objects.exists()


# --- every label survives ------------------------------------------------------------------------


def test_it_stores_exports_and_filters_both_bad(db) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=2, k=2)
    ranked = make_queue(mode="ranking", prompts=1, k=3)
    ann = UserFactory(username="ann", roles=["annotator"])
    label_queue(queue, ann, lambda i: [[i[0], i[1]]], both_bad=True)
    label_queue(ranked, ann, lambda i: [[i[0]], [i[1]], [i[2]]], both_bad=True)
    assert Comparison.objects.filter(both_bad=True).count() == 2 + 3

    kept = _build([queue, ranked], name="kept", ties="keep")
    assert kept.stats["both_bad"] == 5
    trl = _lines(snapshots.snapshot_export_trl_jsonl(kept))
    assert len(trl) == 3 and all(r["both_bad"] is True for r in trl)  # ties have no TRL row
    listwise = _lines(snapshots.snapshot_export_rankings_jsonl(kept))
    assert sorted(r["ranks"] for r in listwise) == [[1, 1], [1, 1], [1, 2, 3]]
    assert all(r["both_bad"] is True for r in listwise)  # the pairwise "both bad" is there too

    with pytest.raises(snapshots.SnapshotError, match="no comparison"):
        _build([queue, ranked], name="dropped", ties="keep", both_bad="drop")
    only = _build([queue, ranked], name="only", ties="keep", both_bad="only")
    assert only.row_count == 5
    with pytest.raises(snapshots.SnapshotError, match="both_bad"):
        _build([queue], name="bad", both_bad="maybe")


# --- filters as documented -----------------------------------------------------------------------


def test_it_keeps_or_drops_whole_pairs_by_agreement_under_all(db) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=1, k=2, overlap=3)
    users = [UserFactory(username=n, roles=["annotator"]) for n in ("ann", "ben", "cat")]
    label_queue(queue, users[0], lambda i: [[i[0]], [i[1]]])
    label_queue(queue, users[1], lambda i: [[i[0]], [i[1]]])
    label_queue(queue, users[2], lambda i: [[i[1]], [i[0]]])
    kept = _build([queue], name="kept", min_agreement=0.6)
    # The pair agrees 2/3 >= 0.6: every vote stays, the dissenting one too.
    assert kept.row_count == 3
    with pytest.raises(snapshots.SnapshotError, match="no comparison"):
        _build([queue], name="dropped", min_agreement=0.7)


def test_it_builds_listwise_after_the_snapshots_aggregation_and_filters(db) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", prompts=1, k=3, overlap=3)
    users = [UserFactory(username=n, roles=["annotator"]) for n in ("ann", "ben", "cat")]
    label_queue(queue, users[0], lambda i: [[i[0]], [i[1]], [i[2]]])
    label_queue(queue, users[1], lambda i: [[i[0]], [i[1]], [i[2]]])
    label_queue(queue, users[2], lambda i: [[i[2]], [i[1]], [i[0]]], flags=("unsafe",))
    texts = dict(Completion.objects.values_list("id", "text"))
    a, b, c = queue.tasks.get().slots.order_by("slot").values_list("completion_id", flat=True)

    every = _lines(snapshots.snapshot_export_rankings_jsonl(_build([queue], name="all")))
    assert len(every) == 3 and {r["annotator"] for r in every} == {"ann", "ben", "cat"}

    (majority,) = _lines(
        snapshots.snapshot_export_rankings_jsonl(
            _build([queue], name="maj", aggregation="majority")
        )
    )
    assert majority["completions"] == [texts[a], texts[b], texts[c]]
    assert majority["ranks"] == [1, 2, 3] and majority["votes"] == 3 and majority["annotator"] == ""

    flagged_out = _build([queue], name="no unsafe", exclude_flags=["unsafe"])
    listwise = _lines(snapshots.snapshot_export_rankings_jsonl(flagged_out))
    assert {r["annotator"] for r in listwise} == {"ann", "ben"}
    assert SnapshotRanking.objects.filter(snapshot=flagged_out).count() == 2


def test_it_applies_exclude_flags_to_demonstrations(db) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=2, k=2)
    ann = UserFactory(username="ann", roles=["annotator"])
    _claim_submit(queue, ann, lambda i: [[i[0]], [i[1]]], demonstration="Kept.")
    _claim_submit(
        queue, ann, lambda i: [[i[0]], [i[1]]], demonstration="Flagged.", flags=("unsafe",)
    )
    snap = _build([queue], exclude_flags=["unsafe"])
    sft = _lines(snapshots.snapshot_export_sft_jsonl(snap))
    assert [r["messages"][-1]["content"] for r in sft] == ["Kept."]


# --- opaque ids ----------------------------------------------------------------------------------


def test_it_never_shows_annotators_sequential_completion_ids(db, client) -> None:  # type: ignore[no-untyped-def]
    from rest_framework.test import APIClient

    for mode in ("pairwise", "ranking"):
        queue = make_queue(mode=mode, prompts=1, k=3 if mode == "ranking" else 2, ask_scores=True)
        alice = UserFactory(username=f"alice-{mode}", roles=["annotator"])
        api = APIClient()
        api.force_authenticate(alice)
        payload = api.post(f"/api/labeling/queues/{queue.pk}/next/").json()
        ids = set(queue.tasks.get().slots.values_list("completion_id", flat=True))
        assert [c["id"] for c in payload["completions"]] == [
            c["label"] for c in payload["completions"]
        ]
        assert all(isinstance(c["id"], str) and c["id"] in "ABC" for c in payload["completions"])
        client.force_login(alice)
        page = client.get(f"/labeling/queues/{queue.pk}/").content.decode()
        for completion_id in ids:
            for attribute in (f'_{completion_id}"', f'data-id="{completion_id}"'):
                assert attribute not in page
        order = [[c["id"]] for c in payload["completions"]]
        scores = {c["id"]: 5 for c in payload["completions"]}
        done = api.post(
            f"/api/labeling/queues/{queue.pk}/submit/",
            {"assignment": payload["assignment"], "order": order, "scores": scores},
            format="json",
        )
        assert done.status_code == 201, done.content
        assert done.json()["order"] == order and set(done.json()["scores"]) <= set("ABC")
        mine = api.get("/api/labeling/comparisons/").json()["results"]
        assert all(r["chosen"] in "ABC" and r["rejected"] in "ABC" for r in mine)


@pytest.mark.parametrize("conversational", [False, True])
def test_it_writes_canonical_json_lines(db, conversational: bool) -> None:  # type: ignore[no-untyped-def]
    from generation.models import Prompt

    queue = make_queue(mode="ranking", prompts=2, k=3, ask_scores=True)
    first = first_row(Prompt.objects.order_by("position"))
    first.text = 'Tab\t "quote" \\ \u00e9 \U0001f600 </script>'
    if conversational:
        first.messages = [{"role": "user", "content": first.text}]
    first.save()
    Completion.objects.filter(pk=first_row(Completion.objects.order_by("pk")).pk).update(
        text="line\nbreak \u2028 \x01"
    )
    label_queue(
        queue,
        UserFactory(username='ann "quoted"', roles=["annotator"]),
        scores_from=lambda ids: {str(ids[0]): 7},
    )
    snap = _build([queue], name='naïve "name"', aggregation="mean-margin")
    lines = b"".join(snapshots.snapshot_export_trl_jsonl(snap)).decode().split("\n")[:-1]
    assert lines
    assert snapshots.snapshot_export_digest(snap) == snap.content_hash
    for line in lines:
        # Byte for byte what the standard encoder writes for the same record.
        assert line == build._JSON.encode(json.loads(line))


def test_it_keeps_labels_read_only_in_the_admin(db, client) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", prompts=1, k=2)
    label_queue(queue, UserFactory(username="ann", roles=["annotator"]))
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(admin)
    ranking = Ranking.objects.get()
    for name, pk in (("ranking", ranking.pk), ("rankingversion", RankingVersion.objects.get().pk)):
        page = client.get(f"/admin/labeling/{name}/{pk}/change/")
        assert page.status_code == 200  # a view page
        posted = client.post(f"/admin/labeling/{name}/{pk}/change/", {"order": "[]"})
        assert posted.status_code == 403
        assert (
            client.post(f"/admin/labeling/{name}/{pk}/delete/", {"post": "yes"}).status_code == 403
        )
    ranking.refresh_from_db()
    assert ranking.order and RankingVersion.objects.count() == 1


def test_it_builds_a_both_bad_filtered_snapshot_over_the_api(db) -> None:  # type: ignore[no-untyped-def]
    from rest_framework.test import APIClient

    queue = make_queue(mode="pairwise", prompts=2, k=2)
    ann = UserFactory(username="ann", roles=["annotator"])
    _claim_submit(queue, ann, lambda i: [[i[0]], [i[1]]])
    _claim_submit(queue, ann, lambda i: [[i[0], i[1]]], both_bad=True)
    api = APIClient()
    api.force_authenticate(UserFactory(username="dave2", roles=["researcher"]))
    body = {"name": "bb", "queues": [queue.pk], "ties": "keep", "both_bad": "drop"}
    made = api.post("/api/labeling/snapshots/", body, format="json")
    assert made.status_code == 201, made.content
    assert made.json()["row_count"] == 1 and made.json()["filters"]["both_bad"] == "drop"
    bad = api.post(
        "/api/labeling/snapshots/", {**body, "name": "x", "both_bad": "?"}, format="json"
    )
    assert bad.status_code == 400 and "both_bad" in bad.json()
