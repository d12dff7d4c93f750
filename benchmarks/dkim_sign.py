#!/usr/bin/env python
"""DKIM signing cost: milliseconds per signature, before (dkimpy's pure-Python RSA) and
after (channels/email/signing.py: OpenSSL through `cryptography`), on the email
benchmark's messages (the 28 KB MJML cart email of examples/templates, rendered, tracked
and composed as the channel does).

    .venv/bin/python benchmarks/dkim_sign.py [--messages N] [--rounds R]

Each round times every signer with timeit over the same messages, the signers in turn, so
that the machine's drift hits them alike; the figures are medians over the rounds, the
ratios are to the new RSA signer in the same rounds. The cost is CPU time (timeit with
time.process_time: what a signature takes from a core, which other processes on a busy
machine do not inflate the way they do wall time); wall time is shown beside it. dkimpy is a test dependency (the
verifier of tests/channels/test_dkim.py); without it the "before" row is left out. Prints
a table and the load (uptime); writes nothing (benchmarks/RESULTS.md quotes it by hand).
"""

from __future__ import annotations

import os
import sys

# benchmarks/ off the path before anything imports the standard library's `email`: its
# email.py would shadow it.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != _HERE]

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import timeit  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _email_bench() -> Any:
    """benchmarks/email.py as a module (its name would shadow the standard library's)."""
    spec = importlib.util.spec_from_file_location("email_bench", ROOT / "benchmarks" / "email.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def messages(n: int) -> list[bytes]:
    from nudgeflow.channels.email.mime import compose_raw

    bench = _email_bench()
    renderer = bench.BenchRenderer()
    out = []
    for i, context in enumerate(bench.contexts(n, seed=7)):
        message = bench.outbound(i, context, 0, "dkim")
        rendered = renderer.build(message)
        out.append(compose_raw(rendered, message.traits["email"], f"Nudgeshop <{bench.FROM}>", message_key=message.key))
    return out


def keys() -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    def pem(key: Any) -> bytes:
        return bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    return pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)), pem(
        ed25519.Ed25519PrivateKey.generate()
    )


def signers(rsa_pem: bytes, ed_pem: bytes) -> dict[str, Callable[[bytes], bytes]]:
    from nudgeflow.channels.email.signing import DKIM_HEADERS, dkim_sign, dkim_sign_all

    out: dict[str, Callable[[bytes], bytes]] = {}
    try:
        import dkim
    except ImportError:
        dkim = None
    if dkim is not None:
        include = [h.lower().encode() for h in DKIM_HEADERS]

        def before(raw: bytes) -> bytes:
            # What signing.py did before: dkimpy, relaxed/relaxed, rsa-sha256.
            present = {
                line.split(b":", 1)[0].strip().lower()
                for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
                if b":" in line and not line[:1].isspace()
            }
            return bytes(
                dkim.sign(
                    raw,
                    b"bench",
                    b"nudgeshop.example",
                    rsa_pem,
                    canonicalize=(b"relaxed", b"relaxed"),
                    include_headers=[h for h in include if h in present],
                    linesep=b"\r\n",
                )
            )

        out["before: dkimpy rsa-sha256"] = before
    out["rsa-sha256 (OpenSSL)"] = lambda raw: dkim_sign(raw, "bench", "nudgeshop.example", rsa_pem, 1)
    out["ed25519-sha256 (OpenSSL)"] = lambda raw: dkim_sign(raw, "ed", "nudgeshop.example", ed_pem, 1)
    out["rsa + ed25519 (dual)"] = lambda raw: dkim_sign_all(
        raw, [("bench", "nudgeshop.example", rsa_pem), ("ed", "nudgeshop.example", ed_pem)], 1
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    raws = messages(args.messages)
    rsa_pem, ed_pem = keys()
    table = signers(rsa_pem, ed_pem)
    for sign in table.values():  # keys parsed, caches warm
        sign(raws[0])
    per: dict[str, list[float]] = {name: [] for name in table}
    wall: dict[str, list[float]] = {name: [] for name in table}
    for _ in range(args.rounds):
        for name, sign in table.items():

            def body(sign: Callable[[bytes], bytes] = sign) -> None:
                for raw in raws:
                    sign(raw)

            wall0 = time.perf_counter()
            seconds = timeit.Timer(body, timer=time.process_time).timeit(number=1)
            wall[name].append((time.perf_counter() - wall0) / len(raws) * 1e3)
            per[name].append(seconds / len(raws) * 1e3)
    load = os.getloadavg()
    size = statistics.median(len(r) for r in raws)
    print(f"{len(raws)} messages (median {size / 1024:.1f} KB), {args.rounds} rounds, {os.cpu_count()} cores")
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    new_rsa = statistics.median(per["rsa-sha256 (OpenSSL)"])
    print(f"  {'signer':32} {'CPU ms/message':>14}  {'x the new RSA':>13}  {'wall ms':>8}")
    for name, figures in per.items():
        ms = statistics.median(figures)
        print(f"  {name:32} {ms:14.3f}  {ms / new_rsa:13.2f}  {statistics.median(wall[name]):8.3f}")


if __name__ == "__main__":
    main()
