from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from generation.models import Completion, GenerationJob, Prompt

# The auth group of the pseudo-users through which a reward model labels a queue (the "AI
# labeler"): their labels stay out of human agreement, overlap and, by default, snapshots.
AI_LABELER_GROUP = "ai-labeler"


class Verdict(models.TextChoices):
    """A single-answer label: the answer is good (desirable) or bad (undesirable)."""

    GOOD = "good"
    BAD = "bad"


class LabelingQueue(models.Model):
    """Tasks built from one or more generation jobs; several models in one queue are blind."""

    class Mode(models.TextChoices):
        PAIRWISE = "pairwise", "Pairwise (A or B)"
        RANKING = "ranking", "Full ranking of all k"
        SINGLE = "single", "Single answer (good or bad)"

    class TaskOrder(models.TextChoices):
        POSITION = "position", "In order (shuffled once at creation)"
        UNCERTAINTY = "uncertainty", "Uncertainty first (smallest reward gap first)"

    name = models.CharField(max_length=200, unique=True)
    jobs = models.ManyToManyField(GenerationJob, related_name="labeling_queues")
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.PAIRWISE)
    ask_scores = models.BooleanField(default=False, help_text="Ask a 1–7 score per response.")
    overlap = models.PositiveSmallIntegerField(
        default=1, help_text="How many different annotators see each task."
    )
    pairs_per_prompt = models.PositiveSmallIntegerField(
        default=1, help_text="Pairwise mode: how many pairs to draw from each prompt's completions."
    )
    guidelines = models.TextField(blank=True, help_text="Markdown, shown to annotators.")
    lease_seconds = models.PositiveIntegerField(
        default=900, help_text="A claimed task returns to the pool after this long."
    )
    annotators = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="labeling_queues",
        help_text="Who may label this queue; empty means every annotator.",
    )
    is_active = models.BooleanField(default=True)
    seed = models.BigIntegerField(default=0)
    # Position order, or each task's ``priority`` first (set through a hook by an app above,
    # e.g. training's reward-model assistance: the smallest reward gap per task).
    task_order = models.CharField(
        max_length=12, choices=TaskOrder.choices, default=TaskOrder.POSITION
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("labeling:queue-label", args=[self.pk])


class LabelingTask(models.Model):
    """One prompt with the completions an annotator compares, in display order."""

    queue = models.ForeignKey(LabelingQueue, on_delete=models.CASCADE, related_name="tasks")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="labeling_tasks")
    completions = models.ManyToManyField(Completion, through="TaskCompletion", related_name="+")
    position = models.PositiveIntegerField()
    is_gold = models.BooleanField(default=False)
    # Submissions so far, kept by the services under the task's row lock, so that claims
    # walking the (queue, position) index skip finished tasks without counting their
    # assignments. (An index on this column made the planner sort every open task instead.)
    submitted_count = models.PositiveIntegerField(default=0)
    # Gold tasks: the known best-first order, as a list of tie groups of completion ids.
    gold_order = models.JSONField(null=True, blank=True)
    # Served first when the queue's task_order is "uncertainty" (lower first, null last):
    # the smallest reward gap between the task's completions under training's assistance.
    priority = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["queue_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["queue", "position"], name="task_unique_position"),
        ]
        # Serves "uncertainty first" claims in index order (ascending puts nulls last on
        # PostgreSQL, as the claim's ORDER BY asks).
        indexes = [
            models.Index(fields=["queue", "priority", "position"], name="task_queue_priority"),
        ]

    def __str__(self) -> str:
        return f"task {self.pk} of {self.queue_id}"


class TaskCompletion(models.Model):
    task = models.ForeignKey(LabelingTask, on_delete=models.CASCADE, related_name="slots")
    completion = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    slot = models.PositiveSmallIntegerField(help_text="Display position: 0 is A, 1 is B, ...")

    class Meta:
        ordering = ["task_id", "slot"]
        constraints = [
            models.UniqueConstraint(fields=["task", "slot"], name="taskcompletion_unique_slot"),
            models.UniqueConstraint(fields=["task", "completion"], name="taskcompletion_unique"),
        ]

    def __str__(self) -> str:
        return f"slot {self.slot} of task {self.task_id}"


class Assignment(models.Model):
    """An annotator's claim on a task: a lease that expires unless submitted."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        SUBMITTED = "submitted"
        SKIPPED = "skipped"

    task = models.ForeignKey(LabelingTask, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    claimed_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # False for the AI labeler: its labels never take one of the task's overlap slots.
    counts_toward_overlap = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["task", "annotator"], name="assignment_once_per_annotator"
            ),
        ]
        indexes = [models.Index(fields=["annotator", "status"])]

    def __str__(self) -> str:
        return f"{self.annotator_id} on task {self.task_id} ({self.status})"


class Ranking(models.Model):
    """The current label of a (task, annotator): its latest :class:`RankingVersion`.

    This row and its comparisons are the *current view* that agreement, dashboards and
    snapshot builds read; it is rewritten on edit and deleted on undo. The record itself
    is :class:`RankingVersion` (append-only), and snapshots freeze copies of what they
    export, so nothing a snapshot points to changes when this row does.
    """

    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="ranking")
    task = models.ForeignKey(LabelingTask, on_delete=models.CASCADE, related_name="rankings")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="rankings"
    )
    # [[best ids...], [next ids...], ...]: ids in one inner list are tied. A single-answer
    # label holds its one answer: [[id]].
    order = models.JSONField()
    # {"<completion id>": 1..7}
    scores = models.JSONField(default=dict, blank=True)
    both_bad = models.BooleanField(default=False)
    # Single-answer queues: "good" or "bad"; empty in pairwise and ranking queues.
    verdict = models.CharField(max_length=4, choices=Verdict.choices, blank=True, default="")
    time_spent_ms = models.PositiveIntegerField(default=0)
    comment = models.TextField(blank=True)
    flags = models.JSONField(default=list, blank=True)
    # When the (task, annotator) label was first submitted: kept across edits, undo and
    # re-submit, so an edit never looks like a new vote to a date filter.
    created_at = models.DateTimeField(default=timezone.now)
    # When the current version was written (the last edit).
    updated_at = models.DateTimeField(auto_now=True)
    # The number of the RankingVersion this row shows.
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"ranking {self.pk} of task {self.task_id}"


class RankingVersion(models.Model):
    """One version of an annotator's label on a task: the append-only record.

    Every submit, edit, undo (a tombstone) and re-submit writes a new row; no row is ever
    updated or deleted. The current label of a (task, annotator) is its latest version
    (none when that is a tombstone).
    """

    class Action(models.TextChoices):
        SUBMITTED = "submitted"
        EDITED = "edited"
        UNDONE = "undone"
        RESUBMITTED = "resubmitted"

    task = models.ForeignKey(LabelingTask, on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    version = models.PositiveIntegerField()
    action = models.CharField(max_length=12, choices=Action.choices)
    # As in Ranking (empty on a tombstone): tie groups of completion ids, best first.
    order = models.JSONField(default=list)
    scores = models.JSONField(default=dict, blank=True)
    both_bad = models.BooleanField(default=False)
    verdict = models.CharField(max_length=4, choices=Verdict.choices, blank=True, default="")
    comment = models.TextField(blank=True)
    flags = models.JSONField(default=list, blank=True)
    demonstration = models.TextField(blank=True)
    time_spent_ms = models.PositiveIntegerField(default=0)
    first_submitted_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["task", "annotator", "version"], name="rankingversion_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"v{self.version} ({self.action}) of task {self.task_id}"


class Comparison(models.Model):
    """One pair from a ranking: chosen beat rejected (or a tie), with a margin."""

    ranking = models.ForeignKey(Ranking, on_delete=models.CASCADE, related_name="comparisons")
    queue = models.ForeignKey(LabelingQueue, on_delete=models.CASCADE, related_name="comparisons")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="comparisons")
    chosen = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    rejected = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    is_tie = models.BooleanField(default=False)
    # How much better chosen is, in rank steps (0 on a tie): the one unit of `margin`.
    margin = models.FloatField(default=0.0)
    rank_gap = models.FloatField(default=0.0)
    # The `margin` an imported preference file gave this pair, exactly as given (its unit is
    # the file's); null for labels given here. Never used as `margin`.
    imported_margin = models.FloatField(null=True, blank=True)
    # score[chosen] - score[rejected] when both were scored (never negative on a strict
    # pair: scores must agree with the ranking), else null.
    score_diff = models.FloatField(null=True, blank=True)
    both_bad = models.BooleanField(default=False)
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="comparisons"
    )
    # The label's first-submitted time (kept on edits).
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["ranking", "chosen", "rejected"], name="comparison_unique_pair"
            ),
        ]
        indexes = [models.Index(fields=["queue", "prompt"])]

    def __str__(self) -> str:
        relation = "ties" if self.is_tie else "beats"
        return f"{self.chosen_id} {relation} {self.rejected_id}"


class Demonstration(models.Model):
    """An ideal response written by an annotator (SFT data, InstructGPT step 1)."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="demonstrations")
    task = models.ForeignKey(
        LabelingTask,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="demonstrations",
    )
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="demonstrations"
    )
    text = models.TextField()
    based_on = models.ForeignKey(
        Completion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.text[:80]


class DatasetSnapshot(models.Model):
    """A frozen, hashed selection of comparisons: what a training run or an export used.

    Built once from a filter and an aggregation rule; its rows never change afterwards.
    """

    class Aggregation(models.TextChoices):
        ALL = "all", "every comparison"
        MAJORITY = "majority", "majority direction per prompt and pair"
        MEAN_MARGIN = "mean-margin", "mean signed margin per prompt and pair"

    class Ties(models.TextChoices):
        DROP = "drop"
        KEEP = "keep"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    # The filter as given: queues, date range, annotators, excluded flags, min agreement.
    filters = models.JSONField(default=dict)
    aggregation = models.CharField(
        max_length=12, choices=Aggregation.choices, default=Aggregation.ALL
    )
    ties = models.CharField(max_length=4, choices=Ties.choices, default=Ties.DROP)
    eval_fraction = models.FloatField(default=0.1)
    seed = models.BigIntegerField(default=0)
    content_hash = models.CharField(max_length=64)
    row_count = models.PositiveIntegerField(default=0)
    train_count = models.PositiveIntegerField(default=0)
    eval_count = models.PositiveIntegerField(default=0)
    prompt_count = models.PositiveIntegerField(default=0)
    stats = models.JSONField(default=dict)
    # Frozen alongside the pairs: the rankings behind them (listwise export) and the
    # demonstrations written in the same queues (SFT export).
    ranking_ids = models.JSONField(default=list)
    demonstration_ids = models.JSONField(default=list)
    # 1: content_hash covers the pair rows only (snapshots built before frozen exports);
    # 2: it is the sha256 of every export's bytes (see snapshots.snapshot_export_digest).
    hash_scheme = models.PositiveSmallIntegerField(default=2)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class SnapshotRow(models.Model):
    """One preference pair of a snapshot, in its split."""

    class Split(models.TextChoices):
        TRAIN = "train"
        EVAL = "eval"

    # Few indexes, since each slows a big snapshot's build: (snapshot, split, id) serves the
    # exports and training, prompt the prompt's record ("the snapshots holding it").
    # The pointers to the snapshot, prompts, completions and queues have no database
    # constraint: its deferred checks took longer than the rest of a big build (about 1 s of
    # the server's time for 100k rows). The rows are written in the transaction that creates
    # their snapshot, from ids read in it; prompts and completions are never deleted, PROTECT
    # still stops any deletion through Django, deleting a snapshot deletes its rows through
    # Django's CASCADE, and the exports hold their own frozen lines.
    snapshot = models.ForeignKey(
        DatasetSnapshot,
        on_delete=models.CASCADE,
        related_name="rows",
        db_index=False,
        db_constraint=False,
    )
    prompt = models.ForeignKey(
        Prompt, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    chosen = models.ForeignKey(
        Completion, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    rejected = models.ForeignKey(
        Completion, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    is_tie = models.BooleanField(default=False)
    # Rank steps (never negative); equal to rank_gap. Null fields: built before they existed.
    margin = models.FloatField(default=0.0)
    rank_gap = models.FloatField(null=True, blank=True)
    score_diff = models.FloatField(null=True, blank=True)
    score_chosen = models.FloatField(null=True, blank=True)
    score_rejected = models.FloatField(null=True, blank=True)
    both_bad = models.BooleanField(default=False)
    # The annotator for `all`; empty when rows aggregate several annotators' votes.
    annotator = models.CharField(max_length=150, blank=True)
    queue = models.ForeignKey(
        LabelingQueue,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    votes = models.PositiveIntegerField(default=1)
    agreement = models.FloatField(default=1.0)
    split = models.CharField(max_length=5, choices=Split.choices, default=Split.TRAIN)
    # The exported JSON line, frozen at build (names and texts included): exports stream
    # these bytes, so they never change.
    line = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["snapshot_id", "id"]
        indexes = [models.Index(fields=["snapshot", "split", "id"])]

    def __str__(self) -> str:
        return f"{self.chosen_id} > {self.rejected_id} ({self.split})"


class SnapshotRanking(models.Model):
    """One listwise record of a snapshot (after its filters and aggregation), frozen."""

    # No database constraints, as on SnapshotRow (the snapshot's deferred check on every
    # record was a big build's whole commit time).
    snapshot = models.ForeignKey(
        DatasetSnapshot, on_delete=models.CASCADE, related_name="listwise", db_constraint=False
    )
    prompt = models.ForeignKey(
        Prompt, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    # Completion ids best first, their ranks (equal ranks are ties) and scores.
    completion_ids = models.JSONField(default=list)
    ranks = models.JSONField(default=list)
    scores = models.JSONField(default=list)
    both_bad = models.BooleanField(default=False)
    annotator = models.CharField(max_length=150, blank=True)
    queue_name = models.CharField(max_length=200, blank=True)
    votes = models.PositiveIntegerField(default=1)
    split = models.CharField(
        max_length=5, choices=SnapshotRow.Split.choices, default=SnapshotRow.Split.TRAIN
    )
    line = models.TextField()

    class Meta:
        ordering = ["snapshot_id", "id"]

    def __str__(self) -> str:
        return f"listwise {self.pk} of snapshot {self.snapshot_id}"


class SnapshotSingle(models.Model):
    """One single-answer label of a snapshot (after its filters and aggregation), frozen:
    an answer judged good or bad, exported in TRL's unpaired preference format (KTO)."""

    snapshot = models.ForeignKey(
        DatasetSnapshot, on_delete=models.CASCADE, related_name="singles", db_index=False
    )
    # No database constraint, as on SnapshotRow.
    prompt = models.ForeignKey(
        Prompt, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    completion = models.ForeignKey(
        Completion, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    # True: good (desirable); TRL's `label`.
    label = models.BooleanField()
    # The 1-7 score (the mean over the agreeing votes when aggregated); null: not scored.
    score = models.FloatField(null=True, blank=True)
    # The annotator under `all`; empty when the row aggregates several annotators' votes.
    annotator = models.CharField(max_length=150, blank=True)
    queue_name = models.CharField(max_length=200, blank=True)
    votes = models.PositiveIntegerField(default=1)
    # The share of the answer's votes with this verdict.
    agreement = models.FloatField(default=1.0)
    split = models.CharField(
        max_length=5, choices=SnapshotRow.Split.choices, default=SnapshotRow.Split.TRAIN
    )
    line = models.TextField()

    class Meta:
        ordering = ["snapshot_id", "id"]
        indexes = [models.Index(fields=["snapshot", "split", "id"])]

    def __str__(self) -> str:
        return f"{'good' if self.label else 'bad'} {self.completion_id} ({self.split})"


class SnapshotDemonstration(models.Model):
    """One demonstration of a snapshot (SFT data), its text frozen."""

    snapshot = models.ForeignKey(
        DatasetSnapshot, on_delete=models.CASCADE, related_name="frozen_demonstrations"
    )
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="+")
    text = models.TextField()
    annotator = models.CharField(max_length=150, blank=True)
    split = models.CharField(
        max_length=5, choices=SnapshotRow.Split.choices, default=SnapshotRow.Split.TRAIN
    )
    line = models.TextField()

    class Meta:
        ordering = ["snapshot_id", "id"]

    def __str__(self) -> str:
        return f"demonstration {self.pk} of snapshot {self.snapshot_id}"


class LabelReview(models.Model):
    """A lead's verdict on one version of an annotator's label: append-only.

    The verdict that counts for a label is the latest review of its current version; an
    annotator who changes a rejected label makes a new version, which starts unreviewed. A
    rejected label is left out of snapshots built afterwards, and its annotator sees why.
    """

    class Status(models.TextChoices):
        ACCEPTED = "accepted"
        REJECTED = "rejected"

    task = models.ForeignKey(LabelingTask, on_delete=models.CASCADE, related_name="reviews")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="label_reviews"
    )
    # The RankingVersion.version reviewed (Ranking.version when the review was made).
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices)
    reason = models.TextField(blank=True)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["task", "annotator", "version"])]

    def __str__(self) -> str:
        return f"{self.status} v{self.version} of task {self.task_id}"
