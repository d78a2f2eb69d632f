"""Loaded by pytest before Django (``-p config.pytest_plugin`` in pyproject.toml).

Gives a bare ``pytest`` the settings a test run needs: a throwaway secret key, the fast
password hasher and short-lived database connections. Real values from the environment win.
"""

from __future__ import annotations

import os

os.environ.setdefault("SECRET_KEY", "insecure-test-key")
os.environ.setdefault("PASSWORD_HASHERS", "django.contrib.auth.hashers.MD5PasswordHasher")
# Threads in the tests (live server, Celery worker, concurrent annotators) must not keep
# connections open past their work, or PostgreSQL refuses to drop the test database.
os.environ.setdefault("DB_CONN_MAX_AGE", "0")

# Each test run gets its own var/ (SQLite test database, filesystem broker, beat schedule,
# data dir), so a running `make run` demo and a test run never take each other's jobs or
# files, and neither do two test runs. Workers the tests start inherit it through the env.
if not os.environ.get("PREFLAB_VAR_DIR"):
    import atexit
    import shutil
    import tempfile

    _var_dir = tempfile.mkdtemp(prefix="preflab-test-var-")
    os.environ["PREFLAB_VAR_DIR"] = _var_dir
    atexit.register(shutil.rmtree, _var_dir, ignore_errors=True)
else:
    # A var dir given by the caller may not exist yet (the SQLite test database goes in it).
    os.makedirs(os.environ["PREFLAB_VAR_DIR"], exist_ok=True)

# Tests build models in pytest's temporary folders (tiny_model_path); let them register.
if not os.environ.get("PREFLAB_MODEL_ROOTS"):
    import tempfile

    os.environ["PREFLAB_MODEL_ROOTS"] = tempfile.gettempdir()
