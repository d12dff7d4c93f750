"""Fixtures of the channel tests."""

from __future__ import annotations

import pytest
import trustme


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A certificate authority for the loopback TLS servers of one test module."""
    return trustme.CA()
