"""Loaded by pytest before Django (``-p config.pytest_plugin`` in pyproject.toml).

Gives a bare ``pytest`` the settings a test run needs: a throwaway secret key and the
fast password hasher. Real values from the environment win.
"""

from __future__ import annotations

import os

os.environ.setdefault("SECRET_KEY", "insecure-test-key")
os.environ.setdefault("PASSWORD_HASHERS", "django.contrib.auth.hashers.MD5PasswordHasher")
