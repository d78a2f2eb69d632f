"""HTML views of training runs: validate with a form, call one service or selector, render."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from config.jobs.views import job_action_view
from config.roles import ADMIN, RESEARCHER, AuthenticatedRequest, role_required
from generation.models import GenerationJob, PromptSet
from training import runs, scorings, selectors
from training.forms import (
    RewardScoringForm,
    TrainingRunForm,
    kind_or_default,
    run_filter_choices,
    trainable_models,
)
from training.models import RewardScoring, TrainingRun

COMPARE_MAX_RUNS = 6
# The loss gets its own chart; other metrics are grouped by the prefix before "/".
LOSS = "loss"


def _run_for(request: HttpRequest, pk: int) -> TrainingRun:
    return get_object_or_404(selectors.training_run_list(user=request.user), pk=pk)


# --- list ---------------------------------------------------------------------------------------


@role_required(RESEARCHER)
@require_GET
def run_list(request: AuthenticatedRequest) -> HttpResponse:
    runs = selectors.training_run_list(user=request.user).select_related(
        "base_model", "output_model", "snapshot"
    )
    filters = run_filter_choices()
    selected: dict[str, str] = {}
    for param, _, choices in filters:
        value = request.GET.get(param, "")
        if value and value in {c for c, _ in choices}:
            selected[param] = value
            runs = runs.filter(
                **{f"{param}_id" if param in ("snapshot", "base_model") else param: value}
            )
    page = Paginator(runs, 50).get_page(request.GET.get("page"))
    context = {"page": page, "filters": filters, "selected": selected}
    return render(request, "training/run_list.html", context)


# --- launch -------------------------------------------------------------------------------------


@role_required(ADMIN)
@require_http_methods(["GET", "POST"])
def run_create(request: AuthenticatedRequest) -> HttpResponse:
    if request.method == "POST":
        form = TrainingRunForm(request.POST, kind=kind_or_default(request.POST.get("kind")))
        if form.is_valid():
            try:
                run = runs.training_run_create(user=request.user, **form.service_kwargs())
            except runs.RunError as exc:
                field = getattr(exc, "field", None)
                form.add_error(field if field in form.fields else None, str(exc))
            else:
                messages.success(request, f"Queued {run.name}.")
                return redirect(run)
    else:
        # ?kind=&model=&snapshot=&reward_run= prefill the form; htmx sends every field when
        # the kind or the base model changes so the values typed so far survive the swap.
        initial = _initial_from(request.GET)
        if not _names_a_trainable_model(initial.get("base_model")):
            return HttpResponseBadRequest(
                "base model: not the id of a model that can be trained", content_type="text/plain"
            )
        # A checkbox that was on the page but sent no value was unticked: keep it unticked
        # rather than falling back to its default (boxes of the previous kind only).
        for name in request.GET.getlist("_checkbox"):
            if name not in request.GET:
                initial[name] = False
        # The admin has just chosen a base model or a kind: its recommended settings replace
        # what the form showed, and the fields the last recommendation filled go back to the
        # kind's defaults (unless the new one fills them too).
        chosen = request.htmx and request.htmx.trigger_name in ("base_model", "kind")  # type: ignore[attr-defined]
        if chosen:
            for name in request.GET.getlist("_recommended"):
                initial.pop(name, None)
        form = TrainingRunForm(
            initial=initial,
            kind=kind_or_default(request.GET.get("kind")),
            recommend_over_initial=bool(chosen),
        )
        if request.htmx:  # type: ignore[attr-defined]
            return render(request, "training/_run_kind_fields.html", {"form": form})
    kinds = TrainingRun.Kind.choices
    return render(request, "training/run_create.html", {"form": form, "kinds": kinds})


def _initial_from(params: Any) -> dict[str, Any]:
    aliases = {"model": "base_model"}
    return {
        aliases.get(key, key): params.get(key)
        for key in params
        if key not in ("csrfmiddlewaretoken", "kind", "_checkbox", "_recommended")
        and params.get(key) != ""
    }


def _names_a_trainable_model(value: object) -> bool:
    """No base model given, or the id of one a run can start from."""
    if value is None:
        return True
    return str(value).isdigit() and trainable_models().filter(pk=int(str(value))).exists()


# --- one run ------------------------------------------------------------------------------------


def _eta(run: TrainingRun, *, now: datetime | None = None) -> timedelta | None:
    """Time left, or ``None`` before there is a step rate.

    The rate is measured up to the moment the current step was reported (its curve point),
    not up to now: between two reports the step stands still while the clock runs, and a
    rate taken against the clock would make the estimate climb. Instead it counts down from
    that report, and stops at zero. Once this attempt has reported two steps, the rate is
    taken between its first report and the current one: the start-up before the first step
    (loading the model, launching a process group) and the steps of an earlier attempt
    would otherwise count as training time.
    """
    if run.status != TrainingRun.Status.RUNNING or not run.started_at or not run.step:
        return None
    if not run.total_steps or run.step >= run.total_steps:
        return None
    now = now or timezone.now()
    reported_at = (
        run.metric_points.filter(step=run.step)
        .order_by("id")
        .values_list("created_at", flat=True)
        .first()
    ) or now
    first = (
        run.metric_points.filter(created_at__gte=run.started_at)
        .order_by("step", "id")
        .values_list("step", "created_at")
        .first()
    )
    steps, since = run.step, run.started_at
    if first is not None and first[0] < run.step:
        steps, since = run.step - first[0], first[1]
    elapsed = (reported_at - since).total_seconds()
    if elapsed <= 0:
        return None
    left = elapsed / steps * (run.total_steps - run.step) - (now - reported_at).total_seconds()
    return timedelta(seconds=max(0, round(left)))


def _duration(value: timedelta | None) -> str:
    if value is None:
        return ""
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"


def _status_context(run: TrainingRun) -> dict[str, Any]:
    context: dict[str, Any] = {"run": run, "eta": _duration(_eta(run))}
    if run.output_model_id is not None:
        # "Compare with the parent" asks for a held-out prompt set.
        context["prompt_sets"] = PromptSet.objects.order_by("name")[:200]
    if run.kind in TrainingRun.RL_KINDS:
        context["hacking"] = selectors.training_run_hacking_check(run=run)
        if run.reward_run is not None:
            context["reward_accuracy"] = selectors.reward_run_heldout_accuracy(run=run.reward_run)
    if run.kind == TrainingRun.Kind.REWARD:
        context["heldout"] = selectors.reward_run_heldout_interval(run=run)
    if run.kind == TrainingRun.Kind.REWARD and run.status == TrainingRun.Status.SUCCEEDED:
        context["score_jobs"] = GenerationJob.objects.filter(
            status=GenerationJob.Status.SUCCEEDED
        ).order_by("-created_at")[:200]
    return context


@role_required(RESEARCHER)
@require_GET
def run_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    run = _run_for(request, pk)
    context = _status_context(run)
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "training/_run_status.html", context)
    context["curves"] = _curves_payload(run, after_step=-1)
    context["config_rows"] = sorted(run.config.items()) if isinstance(run.config, dict) else []
    context["processes"] = _processes_label(run.config if isinstance(run.config, dict) else {})
    return render(request, "training/run_detail.html", context)


def _processes_label(config: dict[str, Any]) -> str:
    """How a multi-process run is spread ("2 processes (ddp, torchrun)"); empty for one."""
    try:
        per_node = int(config.get("num_processes", 1))
        nodes = int(config.get("num_nodes", 1))
    except (TypeError, ValueError):
        return ""
    if per_node * nodes <= 1:
        return ""
    where = f" on each of {nodes} nodes" if nodes > 1 else ""
    return f"{per_node} processes{where} ({config.get('parallelism', 'ddp')}, torchrun)"


def _curves_payload(run: TrainingRun, *, after_step: int) -> dict[str, Any]:
    curves = selectors.training_run_curves(run=run, after_step=after_step)
    return {
        "run": run.pk,
        "status": run.status,
        "active": run.is_active,
        "steps": list(curves["steps"]),
        "metrics": {name: list(values) for name, values in curves["metrics"].items()},
    }


@role_required(RESEARCHER)
@require_GET
def run_metrics(request: AuthenticatedRequest, pk: int) -> JsonResponse:
    run = _run_for(request, pk)
    try:
        after = int(request.GET.get("after", -1))
    except ValueError:
        after = -1
    return JsonResponse(_curves_payload(run, after_step=after))


# The cancel and resume buttons of a run's page.
run_action = role_required(ADMIN)(
    job_action_view(runs.run_lifecycle, _run_for, "training/_run_status.html", _status_context)
)


# --- compare ------------------------------------------------------------------------------------


@role_required(RESEARCHER)
@require_GET
def run_compare(request: AuthenticatedRequest) -> HttpResponse:
    try:
        ids = list(dict.fromkeys(int(i) for i in request.GET.getlist("runs")))
    except ValueError:
        raise Http404("run ids are numbers") from None
    visible = selectors.training_run_list(user=request.user)
    runs = [get_object_or_404(visible, pk=pk) for pk in ids[:COMPARE_MAX_RUNS]]
    if len(runs) < 2:
        messages.info(request, "Tick two or more runs to compare them.")
        return redirect("training:run-list")
    charts = compare_charts(runs)
    context = {"runs": runs, "charts": charts, "chart_data": {"charts": charts}}
    return render(request, "training/run_compare.html", context)


def compare_charts(runs: list[TrainingRun]) -> list[dict[str, Any]]:
    """One chart per metric every run reported: steps (their union) and a series per run."""
    by_run = selectors.training_runs_compare(runs=runs)
    curves = [by_run[run.pk] for run in runs]
    shared = set.intersection(*(set(c["metrics"]) for c in curves)) if curves else set()
    charts = []
    for metric in sorted(shared, key=lambda m: (m != LOSS, m)):
        steps = sorted({s for c in curves for s in c["steps"]})
        series = []
        for run, curve in zip(runs, curves, strict=True):
            by_step = dict(zip(curve["steps"], curve["metrics"][metric], strict=True))
            series.append({"label": run.name, "values": [by_step.get(s) for s in steps]})
        charts.append({"metric": metric, "steps": steps, "series": series})
    return charts


# --- reward scorings ----------------------------------------------------------------------------


@role_required(ADMIN)
@require_http_methods(["GET", "POST"])
def scoring_create(request: AuthenticatedRequest) -> HttpResponse:
    """GET ``?job=``: the job's scorings and the form (htmx: the fragment the job page loads);
    POST: score the job with a finished reward run, then go back to the job."""
    if request.method == "POST":
        form = RewardScoringForm(request.POST)
        if form.is_valid():
            job = form.cleaned_data["job"]
            try:
                scorings.reward_scoring_create(
                    reward_run=form.cleaned_data["reward_run"], job=job, user=request.user
                )
            except runs.RunError as exc:
                messages.error(request, str(exc))
            else:
                messages.success(
                    request, f"Scoring {job} with {form.cleaned_data['reward_run'].name}."
                )
            return redirect(job)
        job = form.cleaned_data.get("job")
        if job is not None:
            for errors in form.errors.values():
                for error in errors:
                    messages.error(request, str(error))
            return redirect(job)
        return render(
            request, "training/scoring_create.html", {"form": form, "job": None}, status=400
        )
    job = get_object_or_404(GenerationJob, pk=_int_or_404(request.GET.get("job")))
    context = _job_scorings_context(job)
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "training/_job_scorings.html", context)
    return render(request, "training/scoring_create.html", context)


def _int_or_404(value: str | None) -> int:
    try:
        return int(value or "")
    except ValueError:
        raise Http404("no such job") from None


def _scoring_for(request: AuthenticatedRequest, pk: int) -> RewardScoring:
    return get_object_or_404(selectors.reward_scoring_list(user=request.user), pk=pk)


def _scorings_of_job(scoring: RewardScoring) -> dict[str, Any]:
    return _job_scorings_context(scoring.job)


# The cancel and resume buttons of a scoring, on its job's page.
scoring_action = role_required(ADMIN)(
    job_action_view(
        scorings.scoring_lifecycle,
        _scoring_for,
        "training/_job_scorings.html",
        _scorings_of_job,
        back=lambda scoring: scoring.job.get_absolute_url(),
    )
)


def _job_scorings_context(job: GenerationJob) -> dict[str, Any]:
    """The job page's scorings fragment: its scorings, the form, whether to keep polling."""
    job_scorings = list(job.reward_scorings.select_related("reward_run"))  # type: ignore[attr-defined]
    return {
        "job": job,
        "form": RewardScoringForm(initial={"job": job.pk}),
        "scorings": job_scorings,
        "active": any(s.status in ("queued", "running") for s in job_scorings),
    }
