"""Regenerate docs/console/*.png: `python -m tests.console.screenshots` (from the repository's
root, with the test dependencies installed) runs the console's tests with
NUDGEFLOW_CONSOLE_SCREENSHOTS=1, and each browser test saves the pages it shows
(tests.console.support.screenshot). Extra arguments go to pytest (e.g. `-k users`)."""

from __future__ import annotations

import os
import sys

import pytest


def main(argv: list[str]) -> int:
    os.environ["NUDGEFLOW_CONSOLE_SCREENSHOTS"] = "1"
    return int(pytest.main(["-q", "-n", "2", "tests/console", *argv]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
