"""The startup warning of a server whose marketing email cannot offer one-click unsubscribe:
email configured, and a plain http public URL (RFC 8058 wants https)."""

from __future__ import annotations

import logging

import pytest

from nudgeflow.settings import Settings
from nudgeflow.web.app import warn_if_one_click_unsubscribe_is_off

SMTP = "smtp://mailer:hunter2@relay.example.com:587"


def test_an_http_public_url_with_email_configured_is_warned_about_once_without_secrets(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="nudgeflow.web"):
        warn_if_one_click_unsubscribe_is_off(
            settings.with_(smtp_url=SMTP, public_url="http://mail.example.com", dev_mode=False)
        )
    [record] = [r for r in caplog.records if "List-Unsubscribe-Post" in r.getMessage()]
    assert record.levelno == logging.WARNING and "mail.example.com" in record.getMessage()
    assert "hunter2" not in caplog.text and "mailer" not in caplog.text


@pytest.mark.parametrize(
    ("smtp_url", "public_url", "dev_mode"),
    [
        (SMTP, "https://mail.example.com", False),  # https: one-click is offered
        (None, "http://mail.example.com", False),  # no email
        (SMTP, "http://127.0.0.1:8000", True),  # serve --dev: the dev inbox
    ],
)
def test_nothing_is_warned_when_one_click_is_offered_or_not_at_stake(
    settings: Settings, caplog: pytest.LogCaptureFixture, smtp_url: str | None, public_url: str, dev_mode: bool
) -> None:
    with caplog.at_level(logging.WARNING, logger="nudgeflow.web"):
        warn_if_one_click_unsubscribe_is_off(
            settings.with_(smtp_url=smtp_url, public_url=public_url, dev_mode=dev_mode)
        )
    assert "List-Unsubscribe-Post" not in caplog.text
