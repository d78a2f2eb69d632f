"""Which main-menu section a page belongs to, so the menu marks exactly one."""

from __future__ import annotations

from django.http import HttpRequest

# Path prefix -> section. The longest matching prefix wins, so /labeling/snapshots/ is
# "Snapshots", not also "Label".
NAV_SECTIONS: dict[str, str] = {
    "/labeling/": "label",
    "/labeling/snapshots/": "snapshots",
    "/labeling/search/": "search",
    "/labeling/prompts/": "search",
    "/generation/prompt-sets/": "data",
    "/generation/models/": "models",
    "/generation/jobs/": "jobs",
    "/training/": "training",
}


def nav_section_of(path: str) -> str:
    """The menu section of ``path``, or "" when no menu entry covers it."""
    matches = [prefix for prefix in NAV_SECTIONS if path.startswith(prefix)]
    return NAV_SECTIONS[max(matches, key=len)] if matches else ""


def nav_context(request: HttpRequest) -> dict[str, str]:
    return {"nav_section": nav_section_of(request.path)}
