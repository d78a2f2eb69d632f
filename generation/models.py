from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

from config.jobs.models import BackgroundJob


class PolicyModel(models.Model):
    """A model that can write completions: a local folder, a hub id, or a served endpoint."""

    class Backend(models.TextChoices):
        TRANSFORMERS = "transformers", "transformers (CPU or GPU)"
        VLLM = "vllm", "vLLM (in the worker)"
        OPENAI = "openai", "OpenAI-compatible server"

    name = models.CharField(max_length=200, unique=True)
    source = models.CharField(
        max_length=500, blank=True, help_text="Local folder or hub id of the weights."
    )
    backend = models.CharField(max_length=20, choices=Backend.choices, default=Backend.TRANSFORMERS)
    # Not a URLField: Django's URL check wants a dotted host name, and an inference server is
    # often a bare host inside a cluster. services.server_url_check checks it instead.
    server_url = models.CharField(
        max_length=200,
        blank=True,
        help_text="Base URL of an OpenAI-compatible server, e.g. http://gpu1:8000/v1",
    )
    extra_server_urls = models.JSONField(
        default=list,
        blank=True,
        help_text="Further base URLs of servers serving the same model (several `vllm serve` "
        "instances): a job spreads its requests over all of them.",
    )
    server_model = models.CharField(
        max_length=300, blank=True, help_text="Model name the server expects."
    )
    tensor_parallel_size = models.PositiveSmallIntegerField(
        default=1,
        help_text="vLLM in the worker: GPUs the engine splits the model over (vLLM's "
        "tensor_parallel_size). For data parallelism run several generation workers.",
    )
    use_chat_template = models.BooleanField(
        default=False, help_text="Render prompts with the tokenizer's chat template."
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("generation:model-detail", args=[self.pk])

    @property
    def server_urls(self) -> list[str]:
        """Every server of an OpenAI-compatible model, the first one first."""
        return [self.server_url, *self.extra_server_urls] if self.server_url else []


class PromptSet(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("generation:promptset-detail", args=[self.pk])


class Prompt(models.Model):
    """A plain string, or a conversation when ``messages`` is set, stored byte for byte as
    imported (never edited afterwards: labels point to it).

    ``text`` always holds a readable rendering; backends render ``messages`` with the
    tokenizer's chat template when the model asks for it.
    """

    prompt_set = models.ForeignKey(PromptSet, on_delete=models.CASCADE, related_name="prompts")
    position = models.PositiveIntegerField()
    text = models.TextField()
    messages = models.JSONField(null=True, blank=True)
    content_hash = models.CharField(
        max_length=64,
        help_text="sha256 of the normalised content (NFC, whitespace collapsed): keeps "
        "near-duplicates on the same side of a snapshot's held-out split; never merges prompts.",
    )
    exact_hash = models.CharField(
        max_length=64,
        help_text="sha256 of the exact content (generation.importers.exact_hash): a set holds "
        "each exact prompt once.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["prompt_set_id", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["prompt_set", "exact_hash"], name="prompt_unique_exact_content_per_set"
            ),
        ]

    def __str__(self) -> str:
        return self.text[:80]


class GenerationJob(BackgroundJob):
    """k completions for every prompt of a set, from a model or imported from a file.

    Its lifecycle (status, cancel, heartbeat, resume) is :class:`config.jobs.BackgroundJob`'s.
    """

    STALE_AFTER_SETTING = "GENERATION_STALE_AFTER_S"
    STALE_HINT = "Completions written so far are kept; resume the job to generate the rest."
    CANCELLING = "Cancelling after the current batch."
    RESUMED = "Resumed: only the missing completions will be generated."

    class Source(models.TextChoices):
        MODEL = "model", "sampled from a model"
        IMPORTED = "imported", "imported from a file"

    name = models.CharField(max_length=200, blank=True)
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.PROTECT, related_name="jobs")
    model = models.ForeignKey(
        PolicyModel, null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.MODEL)
    import_source = models.CharField(max_length=300, blank=True)
    k = models.PositiveSmallIntegerField(default=4)
    temperature = models.FloatField(default=1.0)
    top_p = models.FloatField(default=1.0)
    max_new_tokens = models.PositiveIntegerField(default=64)
    seed = models.BigIntegerField(default=0)
    stop = models.JSONField(default=list, blank=True)
    batch_size = models.PositiveIntegerField(default=8)
    batches_per_shard = models.PositiveIntegerField(
        default=32,
        help_text="The job is split into shards of this many batches, which any number of "
        "generation workers take one at a time. Whole batches, so the samples are the same "
        "however many workers share the job.",
    )

    prompts_total = models.PositiveIntegerField(default=0)
    prompts_done = models.PositiveIntegerField(default=0)
    tokens_generated = models.BigIntegerField(default=0)
    tokens_per_second = models.FloatField(null=True, blank=True)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name or f"job {self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("generation:job-detail", args=[self.pk])

    @property
    def progress_percent(self) -> int:
        if not self.prompts_total:
            return 100 if self.status == self.Status.SUCCEEDED else 0
        return int(100 * self.prompts_done / self.prompts_total)

    @property
    def shard_workers(self) -> list[str]:
        """The workers that hold or held this job's shards (``<node>:<pid>``), by name."""
        taken = self.shards.exclude(worker="").values_list("worker", flat=True)
        return sorted(set(taken))

    def sampling_params(self) -> dict[str, object]:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
            "stop": list(self.stop or []),
        }


class GenerationShard(BackgroundJob):
    """A slice of a job's prompts (a range of positions) that one generation worker claims
    and runs, with its own heartbeat; the job's progress is the sum of its shards'.

    A worker that dies mid-shard leaves it to the job's other workers (the watchdog queues
    it again while another worker is still on the job); the completions it wrote stay.
    """

    NOUN = "shard"
    STALE_AFTER_SETTING = "GENERATION_STALE_AFTER_S"
    STALE_HINT = "Completions written so far are kept; resume the job to generate the rest."

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="shards")
    index = models.PositiveIntegerField()
    position_from = models.PositiveIntegerField(help_text="First prompt position, inclusive.")
    position_to = models.PositiveIntegerField(help_text="Last prompt position, inclusive.")
    prompts_total = models.PositiveIntegerField(default=0)
    prompts_done = models.PositiveIntegerField(default=0)
    tokens_generated = models.BigIntegerField(default=0)
    tokens_per_second = models.FloatField(null=True, blank=True)
    worker = models.CharField(
        max_length=200, blank=True, help_text="host:pid of the worker that claimed it last."
    )

    class Meta:
        ordering = ["job_id", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "index"], name="generation_shard_unique_index"),
        ]

    def __str__(self) -> str:
        return f"shard {self.index} of {self.job}"

    @property
    def progress_percent(self) -> int:
        if not self.prompts_total:
            return 0
        return int(100 * self.prompts_done / self.prompts_total)


class Completion(models.Model):
    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="completions")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="completions")
    sample_index = models.PositiveSmallIntegerField()
    text = models.TextField()
    model = models.ForeignKey(
        PolicyModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="completions"
    )
    model_name = models.CharField(max_length=300, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=20, blank=True)
    seed = models.BigIntegerField(null=True, blank=True)
    params = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job_id", "prompt_id", "sample_index"]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "prompt", "sample_index"], name="completion_unique_sample"
            ),
        ]

    def __str__(self) -> str:
        return self.text[:80]
