"""The README's production environment passes `check --deploy` and runs the README's
management commands; every page carries the Content-Security-Policy."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"


def _readme_production_env() -> dict[str, str]:
    text = README.read_text()
    block = text.split("<!-- production-env")[1].split("```sh\n", 1)[1].split("```", 1)[0]
    pairs = [line.split("=", 1) for line in block.splitlines() if re.match(r"^[A-Z_]+=", line)]
    assert len(pairs) >= 10
    return dict(pairs)  # type: ignore[arg-type]


def _manage(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_it_passes_check_deploy_with_the_readme_production_settings() -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=_readme_production_env())
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.slow
def test_it_warns_without_the_https_settings() -> None:
    env = _readme_production_env()
    for name in ("SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_COOKIES"):
        env.pop(name)
    result = _manage("check", "--deploy", env=env)
    assert "security.W004" in result.stderr + result.stdout  # no HSTS
    assert "security.W008" in result.stderr + result.stdout  # no SSL redirect


@pytest.mark.slow
def test_it_runs_the_readme_management_commands_with_the_production_env(tmp_path: Path) -> None:
    env = _readme_production_env() | {
        # The README's database is a PostgreSQL host; an SQLite file stands in for it.
        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite3'}",
        "PREFLAB_DATA_DIR": str(tmp_path / "data"),
        "PREFLAB_VAR_DIR": str(tmp_path / "var"),
    }
    assert _manage("migrate", "-v0", env=env).returncode == 0
    added = _manage(
        "users",
        "add",
        "carol",
        "--role",
        "admin",
        "--email",
        "carol@example.org",
        "--base-url",
        "https://preflab.example.org",
        env=env,
    )
    assert added.returncode == 0, added.stderr
    assert "https://preflab.example.org/accounts/set-password/" in added.stdout
    listed = _manage("users", "list", env=env)
    assert "carol\tadmin\tactive" in listed.stdout
    board = _manage("leaderboard", "1", env=env)
    assert "no evaluation" in board.stderr and "SECRET_KEY" not in board.stderr


@pytest.mark.django_db
def test_it_sends_a_content_security_policy_without_inline_scripts(client: Client, carol) -> None:  # type: ignore[no-untyped-def]
    client.force_login(carol)
    for url in ("/", "/accounts/users/", "/api/docs/", "/labeling/"):
        response = client.get(url)
        policy = response["Content-Security-Policy"]
        script_src = re.search(r"script-src ([^;]*)", policy)
        assert script_src and script_src.group(1).strip() == "'self'", policy
        assert "frame-ancestors 'none'" in policy
        assert not re.search(rb"<script(?![^>]*\bsrc=)[^>]*>", response.content), url
