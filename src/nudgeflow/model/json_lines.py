"""Reading a JSON Lines file a line at a time, with a bound on what one line may hold.

`nudgeflow import` (ingest/importer.py) and `nudgeflow simulate` (runtime/replay.py) both
read such files, from disk or standard input, and both must survive a line that is not one:
a stray binary or a file without newlines would otherwise be read into memory whole. The
reader works on a stream already open and opens nothing itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

BOM = b"\xef\xbb\xbf"
# How much of an over-long line is read at a time while skipping it.
_SKIP_CHUNK = 1 << 20

# (line number from 1, the line or None when over the limit, bytes consumed, BOM bytes dropped)
Line = tuple[int, bytes | None, int, int]


def read_lines(stream: IO[bytes], limit: int, copy_to: IO[bytes] | None = None) -> Iterator[Line]:
    """Every line of `stream`, blank ones included, as (number, line, size, bom).

    `line` is the line as read, its newline kept and a UTF-8 byte order mark at the start
    of the file dropped (`bom` says how many bytes that was); it is None when the line is
    longer than `limit` bytes, and then skipped a chunk at a time, never held whole. `size`
    is every byte the line took in the stream, newline and mark included (an offset into it
    is the sum of the sizes before). `copy_to` is given every byte read, as read (a spool of
    standard input, to read it again)."""
    number = 0
    while True:
        # One byte past the limit at most: enough to know the line is longer.
        raw = stream.readline(limit + 1)
        if not raw:
            return
        number += 1
        size = len(raw)
        if copy_to is not None:
            copy_to.write(raw)
        bom = len(BOM) if number == 1 and raw.startswith(BOM) else 0
        if size > limit and not raw.endswith(b"\n"):
            while True:
                more = stream.readline(_SKIP_CHUNK)
                if copy_to is not None:
                    copy_to.write(more)
                size += len(more)
                if not more or more.endswith(b"\n"):
                    break
            yield number, None, size, bom
            continue
        yield number, raw[bom:] if bom else raw, size, bom
