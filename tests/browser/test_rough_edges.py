"""The rough edges seen on the demo, each checked in the browser as an admin meets it."""

from __future__ import annotations

from pathlib import Path

import pytest

from generation.models import Completion, GenerationJob
from tests.browser.conftest import login
from tests.factories import PASSWORD
from tests.generation.factories import GenerationJobFactory, prompt_set_with_prompts
from tests.labeling.factories import make_queue
from tests.training.factories import labeled_snapshot, tiny_policy

pytestmark = [pytest.mark.browser]


def test_pages_have_a_favicon_one_menu_section_and_linked_steps(page, live_server, carol) -> None:  # type: ignore[no-untyped-def]
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    login(page, live_server, "carol", PASSWORD)
    # The home page's pipeline steps are links.
    page.get_by_role("link", name="Label annotators compare").click()
    page.wait_for_url(f"{live_server.url}/labeling/")
    page.goto(f"{live_server.url}/labeling/snapshots/")
    current = page.locator("nav.nav [aria-current=true]")
    assert current.all_inner_texts() == ["Snapshots"]  # not "Label" as well
    icon = page.request.get(f"{live_server.url}/favicon.ico")
    assert icon.ok and icon.headers["content-type"] in {"image/x-icon", "image/vnd.microsoft.icon"}
    assert not missing, missing


def test_a_finished_job_shows_its_completions_and_messages_do_not_linger(  # type: ignore[no-untyped-def]
    page, live_server, carol
) -> None:
    prompts = prompt_set_with_prompts(2, name="two prompts")
    job = GenerationJobFactory(prompt_set=prompts, status="running", prompts_total=2, k=1)
    login(page, live_server, "carol", PASSWORD)
    page.goto(f"{live_server.url}{job.get_absolute_url()}")
    assert "No completions yet" in page.inner_text("main")
    assert page.locator("h3", has_text="Prompt 0").count() == 0
    # Cancelling through htmx shows its message now...
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_selector("#messages .alert")
    assert "Cancelling after the current batch." in page.inner_text("#messages")
    # ...the worker finishes the job meanwhile: the page reloads itself with the completions.
    for prompt in prompts.prompts.all():
        Completion.objects.create(
            job=job, prompt=prompt, sample_index=0, text=f"done {prompt.position}"
        )
    GenerationJob.objects.filter(pk=job.pk).update(status="succeeded", prompts_done=2)
    page.wait_for_selector("text=done 1")
    assert "No completions yet" not in page.inner_text("main")
    assert "Reload to see" not in page.inner_text("main")
    assert page.locator("h3", has_text="Prompt 1").count() == 1  # numbered from 1
    # The cancel message does not come back on the next page.
    page.goto(f"{live_server.url}/generation/jobs/")
    assert "Cancelling" not in page.inner_text("main")


def test_the_run_form_preselects_hides_lora_and_keeps_the_token_out_of_urls(  # type: ignore[no-untyped-def]
    page, live_server, carol, tmp_path: Path
) -> None:
    model = tiny_policy(tmp_path, name="the only model")
    labeled_snapshot(prompts=2, k=2)
    from generation.models import PolicyModel

    PolicyModel.objects.exclude(pk=model.pk).update(backend="openai", server_url="http://x/v1")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    login(page, live_server, "carol", PASSWORD)
    page.goto(f"{live_server.url}/training/runs/new/?kind=dpo")
    assert page.locator("#id_base_model option:checked").inner_text() == "the only model"
    rank = page.locator(".field", has=page.locator("#id_lora_r"))
    assert not rank.is_visible()
    page.check("#id_use_lora")
    assert rank.is_visible()
    page.uncheck("#id_use_lora")
    assert not rank.is_visible()
    page.select_option("#id_kind", "sft")
    page.wait_for_selector("#kind-fields[data-kind=sft]")
    swaps = [u for u in requests if "/training/runs/new/?" in u]
    assert swaps and not [u for u in swaps if "csrfmiddlewaretoken" in u]
    # The swapped-in LoRA fields are hidden too (the box is still unticked).
    page.locator(".field", has=page.locator("#id_lora_r")).wait_for(state="hidden")
    assert not page.is_checked("#id_use_lora")


def test_the_run_form_fills_in_what_the_chosen_base_model_recommends(  # type: ignore[no-untyped-def]
    page, live_server, carol, tmp_path: Path
) -> None:
    from training.recommendations import recommended_settings_set

    plain = tiny_policy(tmp_path / "plain", name="plain model")
    encoder = tiny_policy(tmp_path / "encoder", name="encoder")
    recommended_settings_set(model=encoder, kind="reward", values={"learning_rate": 5e-5})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    login(page, live_server, "carol", PASSWORD)
    page.goto(f"{live_server.url}/training/runs/new/?kind=reward")
    page.fill("#id_seed", "7")
    requests.clear()  # the page itself
    # A model that recommends nothing: no request, nothing changes.
    page.select_option("#id_base_model", str(plain.pk))
    page.wait_for_timeout(300)
    assert not [u for u in requests if "/training/runs/new/?" in u]
    page.select_option("#id_base_model", str(encoder.pk))
    page.wait_for_selector("#recommended-note")
    assert page.input_value("#id_learning_rate") == "5e-05"
    assert page.input_value("#id_seed") == "7"  # typed, kept
    # Back to the plain model: the recommended value returns to the kind's default.
    page.select_option("#id_base_model", str(plain.pk))
    page.wait_for_selector("#recommended-note", state="detached")
    assert page.input_value("#id_learning_rate") == "1e-05"
    assert page.input_value("#id_seed") == "7"


def test_long_names_stay_on_one_line_and_undo_keeps_what_was_written(  # type: ignore[no-untyped-def]
    page, live_server, carol, alice
) -> None:
    job = GenerationJobFactory(
        name="A very long generated name · tiny-random (demo) · HH-RLHF harmless snapshot",
        status="succeeded",
    )
    login(page, live_server, "carol", PASSWORD)
    page.goto(f"{live_server.url}/generation/jobs/")
    link = page.get_by_role("link", name=job.name)
    box = link.bounding_box()
    line = float(link.evaluate("el => parseFloat(getComputedStyle(el).lineHeight)"))
    assert box["height"] <= line * 1.5  # one line, cut with an ellipsis
    assert link.get_attribute("title") == job.name

    queue = make_queue(mode="pairwise", prompts=2, k=2, name="undo")
    page.get_by_role("button", name="Log out").click()
    login(page, live_server, "alice", PASSWORD)
    page.goto(f"{live_server.url}/labeling/queues/{queue.pk}/")
    page.wait_for_load_state("load")
    page.click("summary:has-text('Comment, flags')")
    page.fill("#id_comment", "A is clearer")
    page.check("input[name=flags][value=unsafe]")
    page.fill("#id_demonstration", "A better answer.")
    page.get_by_role("button", name="A is better").click()
    page.wait_for_selector("text=You: 1 done")
    page.keyboard.press("u")
    page.wait_for_selector("text=Undone")
    assert page.input_value("#id_comment") == "A is clearer"
    assert page.is_checked("input[name=flags][value=unsafe]")
    assert page.input_value("#id_demonstration") == "A better answer."
