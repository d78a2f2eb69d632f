from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from labeling.models import DatasetSnapshot
from tests.factories import UserFactory
from tests.labeling.factories import label_queue, make_queue


def _labeled_queue():  # type: ignore[no-untyped-def]
    queue = make_queue(mode="ranking", prompts=6, k=3)
    _label_all(queue)
    return queue


def _label_all(queue) -> None:  # type: ignore[no-untyped-def]
    label_queue(queue, UserFactory(username="ann", roles=["annotator"]))


def test_it_lets_a_researcher_build_and_download_a_snapshot(client: Client, dave) -> None:  # type: ignore[no-untyped-def]
    queue = _labeled_queue()
    client.force_login(dave)
    response = client.post(
        "/labeling/snapshots/",
        {
            "name": "round 1",
            "queues": [queue.pk],
            "aggregation": "all",
            "ties": "drop",
            "min_agreement": 0,
            "eval_fraction": 0.3,
            "seed": 0,
            "exclude_flags": ["unsafe"],
        },
    )
    snapshot = DatasetSnapshot.objects.get()
    assert (
        response.status_code == 302
        and response["Location"] == f"/labeling/snapshots/{snapshot.pk}/"
    )
    assert snapshot.row_count == 18 and snapshot.created_by == dave
    page = client.get(response["Location"]).content.decode()
    assert snapshot.content_hash in page and "Download train" in page
    download = client.get(f"/labeling/snapshots/{snapshot.pk}/export.jsonl?split=train")
    assert download["Content-Disposition"] == 'attachment; filename="round-1-train.jsonl"'
    lines = download.getvalue().decode().splitlines()
    assert len(lines) == snapshot.train_count
    assert {json.loads(line)["snapshot"] for line in lines} == {"round 1"}
    parquet = client.get(f"/labeling/snapshots/{snapshot.pk}/export.parquet?split=train")
    assert parquet.getvalue()[:4] == b"PAR1"
    card = client.get(f"/labeling/snapshots/{snapshot.pk}/README.md").content.decode()
    assert snapshot.content_hash in card


def test_it_explains_an_empty_selection(client: Client, dave) -> None:  # type: ignore[no-untyped-def]
    queue = make_queue(mode="pairwise", k=2)
    client.force_login(dave)
    response = client.post(
        "/labeling/snapshots/",
        {
            "name": "empty",
            "queues": [queue.pk],
            "aggregation": "all",
            "ties": "drop",
            "min_agreement": 0,
            "eval_fraction": 0.1,
            "seed": 0,
        },
    )
    assert response.status_code == 200 and b"no comparison matches" in response.content
    assert not DatasetSnapshot.objects.exists()


def test_it_keeps_snapshots_from_annotators(client: Client, alice) -> None:  # type: ignore[no-untyped-def]
    client.force_login(alice)
    assert client.get("/labeling/snapshots/").status_code == 403


def test_it_builds_and_streams_snapshots_over_the_api(dave, alice) -> None:  # type: ignore[no-untyped-def]
    queue = _labeled_queue()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=dave).key}")
    created = api.post(
        "/api/labeling/snapshots/",
        {"name": "api", "queues": [queue.pk], "eval_fraction": 0},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["row_count"] == 18 and len(body["content_hash"]) == 64
    assert api.get("/api/labeling/snapshots/").json()["results"][0]["name"] == "api"
    export = api.get(f"/api/labeling/snapshots/{body['id']}/export.jsonl")
    assert len(b"".join(export.streaming_content).splitlines()) == 18
    annotator = APIClient()
    annotator.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")
    assert annotator.get("/api/labeling/snapshots/").status_code == 403


def test_it_exports_from_the_command_line(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from labeling import snapshots

    queue = _labeled_queue()
    snapshots.snapshot_build(
        name="cli", spec=snapshots.SnapshotFilter(queues=[queue.pk]), eval_fraction=0.5
    )
    call_command("export_preferences", "cli", "--out", str(tmp_path), stdout=StringIO())
    train = (tmp_path / "train.jsonl").read_text().splitlines()
    held = (tmp_path / "eval.jsonl").read_text().splitlines()
    assert len(train) + len(held) == 18
    assert "cli" in (tmp_path / "README.md").read_text()


def test_it_imports_preferences_and_serves_parquet_over_the_api(carol, dave, alice) -> None:  # type: ignore[no-untyped-def]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=carol).key}")
    content = "\n".join(
        json.dumps({"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"})
        for i in range(5)
    )
    created = api.post(
        "/api/labeling/preferences/import/",
        {"content": content, "format": "trl", "name": "ext"},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["comparisons"] == 5
    bad = api.post(
        "/api/labeling/preferences/import/",
        {"content": '{"prompt": "x"}', "format": "trl", "name": "bad"},
        format="json",
    )
    assert bad.status_code == 400 and bad.json()["line"] == 1
    snap = api.post(
        "/api/labeling/snapshots/",
        {"name": "ext", "queues": [created.json()["queue"]], "eval_fraction": 0},
        format="json",
    ).json()
    parquet = api.get(f"/api/labeling/snapshots/{snap['id']}/export.parquet")
    assert parquet.getvalue()[:4] == b"PAR1"
    annotator = APIClient()
    annotator.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")
    assert (
        annotator.post(
            "/api/labeling/preferences/import/",
            {"content": content, "format": "trl"},
            format="json",
        ).status_code
        == 403
    )


def test_it_rejects_an_unknown_split(client: Client, dave) -> None:  # type: ignore[no-untyped-def]
    queue = _labeled_queue()
    from labeling import snapshots

    snap = snapshots.snapshot_build(name="s", spec=snapshots.SnapshotFilter(queues=[queue.pk]))
    client.force_login(dave)
    for path in ("export.jsonl", "export.parquet"):
        response = client.get(f"/labeling/snapshots/{snap.pk}/{path}?split=test")
        assert response.status_code == 400 and b"split must be train or eval" in response.content
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=dave).key}")
    for path in ("export.jsonl", "export.parquet"):
        response = api.get(f"/api/labeling/snapshots/{snap.pk}/{path}?split=test")
        assert (
            response.status_code == 400
            and response.json()["detail"] == "split must be train or eval"
        )
    assert api.get("/api/labeling/snapshots/999999/README.md").status_code == 404
