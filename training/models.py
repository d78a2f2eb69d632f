from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

from config.jobs.models import BackgroundJob
from generation.models import Completion, GenerationJob, PolicyModel, PromptSet
from labeling.models import DatasetSnapshot, LabelingQueue


class TrainingRun(BackgroundJob):
    """One training run of a kind on a frozen snapshot, executed by a Celery worker.

    The typed config lives in ``config`` as the dict of the kind's dataclass
    (``training.core.configs``); artifacts (checkpoints, the final model) under
    ``artifacts_dir``, a folder inside ``PREFLAB_DATA_DIR``.
    """

    class Kind(models.TextChoices):
        REWARD = "reward", "Reward model (Bradley-Terry)"
        DPO = "dpo", "DPO"
        PPO = "ppo", "PPO (RLHF)"
        SFT = "sft", "SFT"
        KTO = "kto", "KTO (good/bad answers)"
        GRPO = "grpo", "GRPO / RLOO (critic-free RLHF)"

    NOUN = "run"
    STALE_AFTER_SETTING = "TRAINING_STALE_AFTER_S"
    STALE_HINT = "Resume the run to go on from its last checkpoint."
    CANCELLING = "Cancelling at the next step."
    RESUMED = "Resumed from the last checkpoint."

    POLICY_KINDS = (Kind.DPO, Kind.PPO, Kind.SFT, Kind.KTO, Kind.GRPO)
    # Kinds that sample rollouts and learn from a reward run's scores.
    RL_KINDS = (Kind.PPO, Kind.GRPO)

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    base_model = models.ForeignKey(PolicyModel, on_delete=models.PROTECT, related_name="+")
    snapshot = models.ForeignKey(
        DatasetSnapshot, on_delete=models.PROTECT, related_name="training_runs"
    )
    # PPO and GRPO: the finished reward run whose model scores the rollouts.
    reward_run = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="ppo_runs"
    )
    config = models.JSONField(default=dict)
    notes = models.TextField(blank=True)

    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    # The latest reported metrics (name -> float); the history is in TrainingMetric.
    metrics = models.JSONField(default=dict, blank=True)
    # Metrics on the snapshot's held-out split at the end ("eval/loss", ...).
    eval_metrics = models.JSONField(default=dict, blank=True)
    # A reward run: its model's score mean and spread on the reference answers
    # (``training.core.scoring.RewardStats.to_dict``), which PPO and GRPO normalise by;
    # empty until computed (when the run succeeds, or when an RL run first needs them).
    reward_stats = models.JSONField(default=dict, blank=True)
    log_tail = models.TextField(blank=True)
    artifacts_dir = models.CharField(max_length=500, blank=True)
    # The checkpoint the next attempt resumes from (set when a run stops early).
    checkpoint_dir = models.CharField(max_length=500, blank=True)
    # The trained model: a policy (sft, dpo, ppo) is registered as a PolicyModel;
    # a reward model's folder is kept here (artifacts_dir/final).
    final_dir = models.CharField(max_length=500, blank=True)
    output_model = models.OneToOneField(
        PolicyModel,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="training_run",
    )

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("training:run-detail", args=[self.pk])

    @property
    def progress_percent(self) -> int:
        if not self.total_steps:
            return 100 if self.status == self.Status.SUCCEEDED else 0
        return min(100, int(100 * self.step / self.total_steps))


class RecommendedSettings(models.Model):
    """Settings a base model recommends for runs of one kind, measured rather than guessed:
    the launch form fills them in when the model is chosen, and a run created without them
    (the API) takes them before the kind's defaults.

    ``values`` holds some fields of the kind's config (``training.core.configs``), validated
    by ``training.recommendations.recommended_settings_set``; ``note`` says where they come
    from (shown on the form).
    """

    base_model = models.ForeignKey(
        PolicyModel, on_delete=models.CASCADE, related_name="recommended_settings"
    )
    kind = models.CharField(max_length=10, choices=TrainingRun.Kind.choices)
    values = models.JSONField(default=dict)
    note = models.TextField(blank=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "recommended settings"
        constraints = [
            models.UniqueConstraint(
                fields=["base_model", "kind"], name="recommendedsettings_unique_model_kind"
            )
        ]

    def __str__(self) -> str:
        return f"{self.base_model} ({self.kind})"


class TrainingMetric(models.Model):
    """One report of a run: the metrics after optimizer step ``step`` (the curves' points)."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="metric_points")
    step = models.PositiveIntegerField()
    values = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run_id", "step", "id"]
        indexes = [models.Index(fields=["run", "step"])]

    def __str__(self) -> str:
        return f"{self.run_id}@{self.step}"


class RewardScoring(BackgroundJob):
    """A finished reward run scoring every completion of a generation job."""

    NOUN = "scoring"
    STALE_AFTER_SETTING = "TRAINING_STALE_AFTER_S"
    STALE_HINT = "Resume the scoring to score the job again."
    CANCELLING = "Cancelling after the current chunk."
    RESUMED = "Resumed: the job is scored again."

    reward_run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="scorings")
    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="reward_scorings")
    scored = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    mean_reward = models.FloatField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.reward_run} on {self.job}"


class CompletionReward(models.Model):
    """A reward model's score of one completion (admins only see these)."""

    completion = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="rewards")
    reward_run = models.ForeignKey(
        TrainingRun, on_delete=models.CASCADE, related_name="completion_rewards"
    )
    reward = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["completion", "reward_run"], name="completionreward_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.completion_id}: {self.reward:.3f}"


class QueueAssistance(models.Model):
    """Reward-model assistance for a labeling queue (admins only see it).

    A finished reward run scores the queue's completions; the queue's dashboard compares
    it with the annotators, its smallest reward gap per task becomes the task's priority
    (served first under the queue's ``task_order="uncertainty"``), and it can label the
    queue as an AI labeler. Owned by training: labeling only offers the hooks it fills.
    """

    queue = models.OneToOneField(LabelingQueue, on_delete=models.CASCADE, related_name="assistance")
    reward_run = models.ForeignKey(
        TrainingRun,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assisted_queues",
    )
    # The latest word on the assistance work (scoring, priorities, AI labeler), for admins.
    note = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "queue assistance"

    def __str__(self) -> str:
        return f"{self.reward_run or 'no reward run'} for {self.queue}"


class PrincipleSet(models.Model):
    """One version of a queue's constitution: the principles an AI judge labels it by.

    Append-only: editing the constitution adds the next version; a version is never
    changed or deleted while a labeler points to it, so every AI label keeps the exact text
    it was produced with (its labeler's ``principle_set``). ``text`` is stored byte for
    byte as the admin wrote it; ``text_hash`` is the SHA-256 of its UTF-8 bytes.
    """

    MAX_NAME = 200
    MAX_TEXT = 20_000

    queue = models.ForeignKey(LabelingQueue, on_delete=models.CASCADE, related_name="principles")
    version = models.PositiveIntegerField()
    name = models.CharField(max_length=MAX_NAME)
    text = models.TextField()
    text_hash = models.CharField(max_length=64)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["queue_id", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["queue", "version"], name="principleset_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class ConstitutionLabeler(models.Model):
    """A language model labeling a queue by one constitution version, as an AI labeler.

    Its pseudo-user (``user``: inactive, in the ai-labeler group) submits the rankings, so
    each label points through it to the model and the exact principles it came from.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    principle_set = models.ForeignKey(
        PrincipleSet, on_delete=models.PROTECT, related_name="labelers"
    )
    judge_model = models.ForeignKey(PolicyModel, on_delete=models.PROTECT, related_name="+")
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="constitution_labeler"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    labeled = models.PositiveIntegerField(default=0)
    # Tasks a served judge answered with no verdict it could parse: left without a label.
    unparseable = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["principle_set", "judge_model"], name="constitutionlabeler_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.judge_model} by {self.principle_set}"


class Evaluation(models.Model):
    """A blind comparison of two or more models on a held-out prompt set.

    One generation job per model (one completion per prompt), then, once every job has
    succeeded, one pairwise labeling queue mixing them so that every pair of models meets
    on every prompt, sides shuffled and model names hidden. Results (win-rates and
    Bradley-Terry ratings) are read from that queue's comparisons whenever there are any.
    """

    class Status(models.TextChoices):
        GENERATING = "generating"
        LABELING = "labeling"
        FAILED = "failed"

    name = models.CharField(max_length=200, unique=True)
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.PROTECT, related_name="+")
    max_new_tokens = models.PositiveIntegerField(default=128)
    temperature = models.FloatField(default=0.7)
    seed = models.BigIntegerField(default=0)
    overlap = models.PositiveSmallIntegerField(
        default=1, help_text="How many different annotators judge each pair."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.GENERATING)
    error = models.TextField(blank=True)
    queue = models.OneToOneField(
        LabelingQueue,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="evaluation",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("training:evaluation-detail", args=[self.pk])


class EvaluationEntry(models.Model):
    """One model of an evaluation and the job that samples its answers."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="entries")
    model = models.ForeignKey(PolicyModel, on_delete=models.PROTECT, related_name="+")
    job = models.OneToOneField(
        GenerationJob, on_delete=models.PROTECT, related_name="evaluation_entry"
    )
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["evaluation_id", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["evaluation", "model"], name="evaluationentry_unique_model"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} in {self.evaluation}"


class Round(models.Model):
    """The next round after a policy run: sample k completions from its model, then label
    them in a queue with the previous queue's settings.

    ``queue_settings`` holds the labeling queue's settings as they were copied when the
    round was created (``labeling.services.QueueSettings`` fields and ``annotator_ids``).
    """

    class Status(models.TextChoices):
        GENERATING = "generating"
        LABELING = "labeling"
        FAILED = "failed"

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="rounds")
    model = models.ForeignKey(PolicyModel, on_delete=models.PROTECT, related_name="rounds")
    job = models.OneToOneField(GenerationJob, on_delete=models.PROTECT, related_name="round")
    previous_queue = models.ForeignKey(
        LabelingQueue, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    queue_settings = models.JSONField(default=dict)
    queue = models.OneToOneField(
        LabelingQueue, null=True, blank=True, on_delete=models.SET_NULL, related_name="round"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.GENERATING)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return self.queue_settings.get("name") or f"round {self.pk}"
