"""What the demo traffic tests share with their fixture in tests/conftest.py."""

from __future__ import annotations

from datetime import UTC, datetime

# The first arrival of the generated traffic: the tests check the messages' times against it.
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
