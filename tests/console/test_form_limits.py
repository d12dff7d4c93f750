"""The console's forms that are read before anyone is authenticated (/sign-in, /sign-out,
/account/password, the console users API) take a few KB: a larger body is refused with 413 before it is parsed,
whether it declares its length or streams it, and a multipart form's fields are bounded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nudgeflow.web.body_limits import FORM_BYTES
from tests.console.support import PASSWORD, ConsoleApp, email_of, form_token, sign_in


def _chunks() -> Iterator[bytes]:
    """A body over the limit sent without a Content-Length (chunked), as a client that
    hides its size would: ten fields of 4 KB, each within the form parser's own limits."""
    for i in range(10):
        yield f"f{i}=".encode() + b"x" * 4096 + b"&"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/sign-in"),
        ("POST", "/sign-out"),
        ("POST", "/account/password"),
        ("POST", "/api/console/users"),
        ("PATCH", "/api/console/users/u_1"),
    ],
)
def test_a_body_over_the_limit_is_a_413_naming_it(console_app: ConsoleApp, method: str, path: str) -> None:
    with console_app.client() as client:
        declared = client.request(method, path, data={"form_token": "t", "email": "x" * (FORM_BYTES + 1)})
        assert declared.status_code == 413, declared.text
        assert declared.json() == {"detail": f"Request body too large: this form takes at most {FORM_BYTES} bytes."}
    with console_app.client() as client:
        streamed = client.request(
            method, path, content=_chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert streamed.status_code == 413, streamed.text
        assert f"at most {FORM_BYTES} bytes" in streamed.json()["detail"]


def test_a_sign_in_within_the_limit_still_signs_in(console_app: ConsoleApp) -> None:
    with console_app.client() as client:
        response = sign_in(client, email=email_of("viewer"), password=PASSWORD, next="/" + "p" * 1500)
        assert response.status_code == 303, response.text


def test_the_longest_password_the_console_takes_fits_the_limit(console_app: ConsoleApp) -> None:
    """1,024 characters of 4 bytes each, percent-encoded: 12 KB. Refused as a wrong password
    (401), not as too large."""
    with console_app.client() as client:
        answer = sign_in(client, email=email_of("viewer"), password="\U0001f600" * 1024, next="/" + "p" * 1999)
        assert answer.status_code == 401, answer.text


def test_a_multipart_sign_in_with_a_file_or_too_many_fields_is_refused(console_app: ConsoleApp) -> None:
    with console_app.client() as client:
        token = form_token(client)
        with_file = client.post("/sign-in", data={"form_token": token}, files={"f": ("a.txt", b"x")})
        assert with_file.status_code == 400, with_file.text
        assert "files" in with_file.json()["detail"].lower()
        many = {f"field{i}": "x" for i in range(11)}
        fields = client.post("/sign-in", data={"form_token": token, **many}, files={"email": (None, "a@b.c")})
        assert fields.status_code == 400, fields.text
        assert "fields" in fields.json()["detail"].lower()
