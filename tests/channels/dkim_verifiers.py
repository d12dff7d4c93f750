"""Two DKIM verifiers for what channels/email/signing.py signs: dkimpy's, and OpenDKIM's
(`opendkim-testmsg`, Debian's opendkim-tools: C, libopendkim over OpenSSL, nothing shared
with dkimpy or with us).

opendkim-testmsg looks the public key up in DNS, with the C library's resolver and
/etc/resolv.conf, and has no option for a key file. So it runs in namespaces of its own
(`unshare --user --map-root-user --mount --net`): a network with only a loopback, where
this module answers DNS on 127.0.0.1:53 with the test's records, and a resolv.conf that
points there bind-mounted over /etc/resolv.conf. Nothing outside the namespaces changes.

    python -m tests.channels.dkim_verifiers RECORDS.json < message   (inside the namespaces)
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

import dkim

from tests import debian

OPENDKIM_TESTMSG = Path("/usr/sbin/opendkim-testmsg")  # Debian's opendkim-tools
ROOT = Path(__file__).resolve().parents[2]


def dkimpy_verify(raw: bytes, records: Mapping[str, str]) -> list[bool]:
    """dkimpy's verdict on each DKIM-Signature of `raw`, top first."""

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        record = records.get(name.decode().rstrip("."))
        return record.encode() if record else None

    def one(idx: int) -> bool:
        try:
            return bool(dkim.DKIM(raw).verify(idx=idx, dnsfunc=dnsfunc))
        except dkim.DKIMException:  # what dkim.verify() itself turns into False
            return False

    count = sum(
        1 for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n") if line.lower().startswith(b"dkim-signature:")
    )
    return [one(i) for i in range(count)]


def opendkim_available() -> str | None:
    """Why OpenDKIM cannot verify here (None: it can)."""
    problem = debian.install("opendkim-tools", OPENDKIM_TESTMSG)
    if problem:
        return f"opendkim-testmsg (Debian's opendkim-tools) is needed and could not be installed: {problem}"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip is missing (util-linux, iproute2)"
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "--net", "true"], capture_output=True, timeout=30
    )
    if done.returncode != 0:
        return f"no user namespaces here: {done.stderr.decode(errors='replace').strip()}"
    return None


def opendkim_verify(raw: bytes, records: Mapping[str, str]) -> tuple[bool, str]:
    """(OpenDKIM found the message's signature good, what it printed)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "records.json"
        path.write_text(json.dumps(dict(records)))
        done = subprocess.run(
            [
                "unshare",
                "--user",
                "--map-root-user",
                "--mount",
                "--net",
                sys.executable,
                "-m",
                "tests.channels.dkim_verifiers",
                str(path),
            ],
            input=raw,
            capture_output=True,
            timeout=60,
            cwd=ROOT,
        )
    out = (done.stdout + done.stderr).decode(errors="replace")
    return done.returncode == 0, out


# -- inside the namespaces ----------------------------------------------------------------------


def _txt_answer(query: bytes, records: Mapping[str, str]) -> bytes:
    import dns.message
    import dns.rcode
    import dns.rdataclass
    import dns.rdatatype
    import dns.rdtypes.ANY.TXT
    import dns.rrset

    q = dns.message.from_wire(query)
    answer = dns.message.make_response(q)
    question = q.question[0]
    record = records.get(question.name.to_text().rstrip("."))
    if record is None or question.rdtype != dns.rdatatype.TXT:
        answer.set_rcode(dns.rcode.NXDOMAIN)
        return answer.to_wire()
    data = record.encode()
    # A TXT record is strings of at most 255 bytes; the verifier joins them.
    strings = [data[i : i + 255] for i in range(0, len(data), 255)]
    rrset = dns.rrset.RRset(question.name, dns.rdataclass.IN, dns.rdatatype.TXT)
    rrset.add(dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings), ttl=60)
    answer.answer.append(rrset)
    return answer.to_wire()


def _serve_dns(sock: socket.socket, records: Mapping[str, str]) -> None:
    while True:
        query, peer = sock.recvfrom(4096)
        try:
            sock.sendto(_txt_answer(query, records), peer)
        except Exception as exc:  # a query we cannot parse: say so, keep answering
            print(f"dns: {type(exc).__name__}: {exc}", file=sys.stderr)


def _inside(records_path: str) -> int:
    records = json.loads(Path(records_path).read_text())
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.NamedTemporaryFile("w", suffix=".resolv.conf", delete=False) as resolv:
        resolv.write("nameserver 127.0.0.1\noptions attempts:1 timeout:2\n")
    subprocess.run(["mount", "--bind", resolv.name, "/etc/resolv.conf"], check=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 53))
    threading.Thread(target=_serve_dns, args=(sock, records), daemon=True).start()
    message = sys.stdin.buffer.read()

    done = subprocess.run([OPENDKIM_TESTMSG], input=message, capture_output=True, timeout=30)
    sys.stdout.buffer.write(done.stdout)
    sys.stderr.buffer.write(done.stderr)
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(_inside(sys.argv[1]))
