"""The line reader `nudgeflow import` and `nudgeflow simulate` share (model/json_lines.py)."""

from __future__ import annotations

import io

from nudgeflow.model.json_lines import BOM, read_lines


def test_lines_are_numbered_with_their_sizes_and_the_files_mark_dropped() -> None:
    data = BOM + b'{"a": 1}\n\n  \n{"b": 2}'
    lines = list(read_lines(io.BytesIO(data), limit=64))
    assert lines == [
        (1, b'{"a": 1}\n', 12, 3),
        (2, b"\n", 1, 0),
        (3, b"  \n", 3, 0),
        (4, b'{"b": 2}', 8, 0),
    ]
    assert sum(size for _, _, size, _ in lines) == len(data)  # offsets into the stream add up


def test_a_line_over_the_limit_is_skipped_a_chunk_at_a_time_and_copied_whole() -> None:
    long = b"x" * (3 << 20)  # several skipping chunks, no newline until its end
    data = b'{"a": 1}\n' + long + b"\n" + b'{"b": 2}\n' + long  # the last one has no newline at all
    spool = io.BytesIO()
    lines = list(read_lines(io.BytesIO(data), limit=100, copy_to=spool))
    assert [(n, line, size) for n, line, size, _ in lines] == [
        (1, b'{"a": 1}\n', 9),
        (2, None, len(long) + 1),
        (3, b'{"b": 2}\n', 9),
        (4, None, len(long)),
    ]
    assert spool.getvalue() == data


def test_a_line_of_exactly_the_limit_is_read_and_one_byte_more_is_not() -> None:
    at_limit, over = b"y" * 9 + b"\n", b"z" * 11 + b"\n"
    lines = list(read_lines(io.BytesIO(at_limit + over), limit=10))
    assert [(line, size) for _, line, size, _ in lines] == [(at_limit, 10), (None, 12)]
