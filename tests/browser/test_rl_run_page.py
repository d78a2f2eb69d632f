"""A researcher watches an RL run gaming its reward model, on a desktop and on a phone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser.conftest import login
from tests.factories import PASSWORD
from tests.training.factories import TrainingRunFactory
from training.models import TrainingMetric, TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _gaming_run(tmp_path: Path) -> TrainingRun:
    final = tmp_path / "reward-final"
    final.mkdir()
    reward = TrainingRunFactory(
        name="rule RM",
        kind="reward",
        status="succeeded",
        final_dir=str(final),
        eval_metrics={"eval/rewards/accuracies": 0.77},
    )
    run = TrainingRunFactory(
        name="GRPO on rule RM <b>",
        kind="grpo",
        reward_run=reward,
        status=TrainingRun.Status.SUCCEEDED,
        config={"kl_target": 6.0, "init_kl_coef": 0.05},
    )
    # What the hacking test's run reported: the score climbs while the KL runs away.
    score = [0.0, 0.3, -0.1, 0.2, 0.6, 0.1, 0.5, 0.8, 1.0, 1.5, 2.0, 2.2, 1.7, 1.3, 2.3, 3.0]
    kl = [0.0, 1.4, 1.7, 2.8, 4.0, 7.0, 4.1, 8.8, 7.0, 14.4, 18.8, 24.4, 23.5, 24.7, 31.0, 35.0]
    TrainingMetric.objects.bulk_create(
        TrainingMetric(
            run=run,
            step=i + 1,
            values={
                "score": s,
                "score/task": s - 0.6,
                "kl": k,
                "response_length": 8.0,
                "loss": 0.1,
                "reward/group_std": 0.5,
                "beyond_reference": min(1.0, max(0.0, s / 3)),
            },
        )
        for i, (s, k) in enumerate(zip(score, kl, strict=True))
    )
    return run


@pytest.mark.parametrize("width", [1280, 390], ids=["desktop", "phone"])
def test_it_shows_the_warning_and_the_curves_at_any_width(  # type: ignore[no-untyped-def]
    page, live_server, dave, tmp_path: Path, width: int
) -> None:
    run = _gaming_run(tmp_path)
    page.set_viewport_size({"width": width, "height": 900})
    login(page, live_server, "dave", PASSWORD)

    page.goto(f"{live_server.url}{run.get_absolute_url()}")

    warning = page.locator("#reward-hacking .alert-warning")
    assert "Possible reward hacking since step 11" in warning.inner_text()
    assert "0.770" in page.inner_text("#reward-watch")
    page.wait_for_selector("#chart-loss canvas")
    # The charts that show hacking come right after the loss.
    families = page.eval_on_selector_all(".chart", "els => els.map(e => e.dataset.family)")
    assert families[:5] == ["loss", "score", "kl", "response_length", "beyond_reference"]
    assert page.locator("h1").inner_text() == "GRPO on rule RM <b>"  # escaped, not bold
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page scrolls sideways by {overflow}px at {width}px"
    shots = Path(os.environ.get("PREFLAB_SCREENSHOT_DIR", "var/screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / f"rl-run-{width}.png"), full_page=True)
