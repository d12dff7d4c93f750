#!/usr/bin/env python
"""Push benchmark: Web Push sends/s through WebPushSender next to bare pywebpush.

    .venv/bin/python benchmarks/push.py [--messages N] [--rounds R] [--concurrency C] [--quick] [--no-record]

One run, against one local Web Push service (runtime/dev_push.py) in a process of its own
(its CPU does not share the sender's GIL), measures:

  B  bare pywebpush 2.5: `webpush_async` (its own async path: aiohttp, one shared session)
     for each message: it signs a VAPID JWT (py_vapid), encrypts (http_ece, aes128gcm) and
     POSTs; messages/s with C sends in flight;
  A  Nudgeflow's WebPushSender.send for each message: the notification JSON and its size
     check, encryption (http_ece), the VAPID JWT (cached per origin), TTL/Urgency/Topic,
     over its own aiohttp session (made in the loop that sends, pooled keep-alive
     connections); messages/s with C sends in flight; target A / B >= 0.7.

Both sides send the same messages (the same JSON bytes, built from one PushContent per
message) to the same subscriptions with the same VAPID key, TTL, Urgency and Topic. The
service verifies every JWT (its token cache is off, so each message costs it the same on
both sides), decrypts every payload, and the run checks it accepted exactly the number
sent. The phases alternate (B, A, B, A...) so the machine's drift hits both alike; the
figures are the best round of each side, and the ratio is best A / best B (per-round
ratios shown too). CPU per message of the sender process is reported beside the rates: it
does not depend on whether the service kept up. Results go to benchmarks/RESULTS.md, in a
section of their own.
"""

from __future__ import annotations

# benchmarks/email.py sits next to this file: drop this directory from the path before
# anything imports the standard library's `email` package, or that script would shadow it.
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import gc  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Awaitable, Callable  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"


# The repository root on the path (not benchmarks/, where email.py would shadow the
# standard library's `email`): the scripts share benchmarks/ingest.py as a package module.
sys.path.insert(0, str(ROOT))
from benchmarks import ingest as ingest_bench  # noqa: E402
SUBJECT = "mailto:ops@nudgeshop.example"


# -- the push service (a process of its own) -------------------------------------------------------


class ServiceProcess:
    def __init__(self, certfile: str | None = None, ca_file: str | None = None) -> None:
        tls = ["--certfile", certfile] if certfile else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nudgeflow.runtime.dev_push", "--no-token-cache", "--keep", "100", *tls],
            stdout=subprocess.PIPE, text=True, bufsize=1, cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("URL "):
            raise RuntimeError(f"the push service did not start: {line!r}")
        self.url = line.split()[1]
        import httpx

        self.http = httpx.Client(base_url=self.url, timeout=30, verify=ca_file or True)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.http.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def subscribe(self) -> dict[str, Any]:
        answer = self.http.post("/subscriptions", json={})
        answer.raise_for_status()
        return answer.json()  # type: ignore[no-any-return]

    def stats(self) -> tuple[int, float]:
        data = self.http.get("/stats").json()
        return int(data["accepted"]), float(data["cpu_s"])

    def refused(self) -> dict[str, int]:
        return self.http.get("/stats").json()["refused"]  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- the workload -------------------------------------------------------------------------------------

TITLES = ["Still thinking about it, {name}?", "{name}, your cart misses you", "Back in stock: {item}",
          "{item} is waiting for you", "Your 7-day streak, {name}!"]
BODIES = ["{item} and {more} more are still in your cart. Free shipping ends tonight.",
          "We saved your spot. {item} is selling fast, grab it before it's gone.",
          "You were looking at {item}. It's back, in your size."]
NAMES = ["Ana", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Linus", "Chloé", "Søren", "Zoë"]
ITEMS = ["Stoneware Mug", "Gooseneck Kettle", "Burr Coffee Grinder", "Pour-over Scale", "Ceramic Dripper"]


def contents(n: int, seed: int, now_ms: int) -> list[Any]:
    """One PushContent per message, shaped like a rendered cart or streak push."""
    from nudgeflow.content.push_render import PushContent

    rng = random.Random(seed)
    out = []
    for i in range(n):
        name, item = rng.choice(NAMES), rng.choice(ITEMS)
        out.append(PushContent(
            message_key=f"run_{i:08d}:push:1",
            title=rng.choice(TITLES).format(name=name, item=item),
            body=rng.choice(BODIES).format(item=item, more=rng.randint(1, 4)),
            icon="https://cdn.nudgeshop.example/icon-192.png",
            image=f"https://cdn.nudgeshop.example/p/{item.lower().replace(' ', '-')}.jpg",
            url=f"https://nudgeshop.example/cart?utm_source=push&m={i}",
            data={"cart_id": f"cart_{i}", "kind": "cart"},
            actions=({"action": "open", "title": "Open cart"},),
            ttl_s=4 * 3600,
            urgency="normal",
            collapse_key=f"cart:cart_{i % 97}",
            expires_at_ms=now_ms + 4 * 3600 * 1000,
            report_url=f"https://nf.nudgeshop.example/t/n/tok{i:06d}",
        ))
    return out


@dataclass
class Phase:
    side: str
    messages: int
    seconds: float
    sender_cpu_s: float
    service_cpu_s: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.sender_cpu_s / self.messages * 1e6

    @property
    def service_cores(self) -> float:
        return self.service_cpu_s / self.seconds


@dataclass
class Figures:
    messages: int
    rounds: int
    concurrency: int
    subscriptions: int
    payload_bytes: float = 0.0
    loop: str = "asyncio"
    bare: list[Phase] = field(default_factory=list)
    nudge: list[Phase] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    tls: bool = False

    @staticmethod
    def best(phases: list[Phase]) -> Phase:
        return max(phases, key=lambda p: p.rate)

    def ratio(self) -> float:
        return self.best(self.nudge).rate / self.best(self.bare).rate

    def ratios(self) -> list[float]:
        return [a.rate / b.rate for a, b in zip(self.nudge, self.bare)]


async def _in_flight(concurrency: int, jobs: list[Any], send: Callable[[Any], Awaitable[None]]) -> None:
    """Run `send` over `jobs` with `concurrency` at a time (a fixed pool of workers)."""
    it = iter(jobs)

    async def worker() -> None:
        for job in it:
            await send(job)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def run_bare(subs: list[dict[str, Any]], jobs: list[tuple[int, Any]], private_key: str, concurrency: int,
                   ssl_context: Any = None) -> float:
    import aiohttp
    import orjson
    from py_vapid import Vapid02
    from pywebpush import webpush_async

    vapid = Vapid02.from_raw(private_key.encode())
    infos = [{"endpoint": s["endpoint"], "keys": dict(s["keys"])} for s in subs]
    from nudgeflow.channels.webpush import topic_for

    connector = aiohttp.TCPConnector(limit=concurrency, ssl=ssl_context if ssl_context is not None else True)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def send(job: tuple[int, Any]) -> None:
            index, content = job
            headers = {"Urgency": content.urgency, "Topic": topic_for(content.collapse_key)}
            await webpush_async(infos[index], data=orjson.dumps(content.notification()).decode(), vapid_private_key=vapid,
                                vapid_claims={"sub": SUBJECT}, ttl=content.ttl_s, headers=headers,
                                aiohttp_session=session)

        await _in_flight(concurrency, jobs[:concurrency], send)  # connections up before the clock starts
        start = time.perf_counter()
        await _in_flight(concurrency, jobs, send)
        return time.perf_counter() - start


async def run_nudge(engine: Any, workspace_id: str, targets: list[Any], jobs: list[tuple[int, Any]], concurrency: int,
                    ssl_context: Any = None) -> float:
    from nudgeflow.channels.webpush import WebPushSender
    from nudgeflow.core.clock import SystemClock

    # The sender's own session, as in production; with TLS, trusting our test CA.
    sender = WebPushSender(engine, SystemClock(), ssl_context=ssl_context)
    try:
        async def send(job: tuple[int, Any]) -> None:
            index, content = job
            await sender.send(workspace_id, targets[index], content)

        await _in_flight(concurrency, jobs[:concurrency], send)  # keys read, connections up
        start = time.perf_counter()
        await _in_flight(concurrency, jobs, send)
        return time.perf_counter() - start
    finally:
        await sender.aclose()


def stages(engine: Any, workspace_id: str, targets: list[Any], subs: list[dict[str, Any]], messages: list[Any],
           private_key: str) -> dict[str, float]:
    """CPU microseconds per message of each side's work before the HTTP request, in-process."""
    import orjson
    from py_vapid import Vapid02
    from pywebpush import WebPusher

    from nudgeflow.channels.webpush import WebPushSender, endpoint_origin
    from nudgeflow.core.clock import SystemClock

    sender = WebPushSender(engine, SystemClock())
    signer = asyncio.run(sender.signer(workspace_id))
    vapid = Vapid02.from_raw(private_key.encode())
    n = len(messages)
    out: dict[str, float] = {}
    clock = time.process_time

    t0 = clock()
    payloads = [orjson.dumps(m.notification()) for m in messages]
    out["A: notification JSON + size check"] = clock() - t0
    t0 = clock()
    for i, payload in enumerate(payloads):
        sender.encrypt(targets[i % len(targets)], payload)
    out["A: encrypt (http_ece aes128gcm)"] = clock() - t0
    t0 = clock()
    for i, m in enumerate(messages):
        sender.headers(m, sender.authorization(workspace_id, endpoint_origin(targets[i % len(targets)].address), signer))
    out["A: VAPID header (cached JWT) + TTL/Urgency/Topic"] = clock() - t0
    origin = endpoint_origin(targets[0].address)
    t0 = clock()
    for _ in messages:
        vapid.sign({"aud": origin, "exp": int(time.time()) + 43200, "sub": SUBJECT})
    out["B: VAPID JWT signed per message (py_vapid)"] = clock() - t0
    t0 = clock()
    for i, payload in enumerate(payloads):
        WebPusher(subs[i % len(subs)]).encode(payload)
    out["B: encrypt (WebPusher.encode, http_ece)"] = clock() - t0
    return {k: v / n * 1e6 for k, v in out.items()}


def measure(service: ServiceProcess, side: str, messages: int, body: Callable[[], Awaitable[float]]) -> Phase:
    gc.collect()
    _, svc0 = service.stats()
    cpu0 = time.process_time()
    seconds = asyncio.run(body())
    cpu1 = time.process_time()
    _, svc1 = service.stats()
    return Phase(side, messages, seconds, cpu1 - cpu0, svc1 - svc0)


def run(args: argparse.Namespace) -> Figures:
    import orjson
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from nudgeflow.core.clock import SystemClock, to_ms
    from nudgeflow.store import database, vapid
    from nudgeflow.store.push_targets import PushTarget
    from nudgeflow.store.workspaces import create_workspace

    try:
        import uvloop

        uvloop.install()
        loop_name = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop_name = "asyncio"
    figures = Figures(args.messages, args.rounds, args.concurrency, args.subscriptions, loop=loop_name, tls=args.tls)
    tmp = tempfile.mkdtemp(prefix="nudgeflow-push-bench-")
    certfile = ca_file = None

    def tls_context() -> Any:
        """A context of its own for each phase (no state carried from one side to the other)."""
        import ssl

        return ssl.create_default_context(cafile=ca_file) if ca_file else None

    if args.tls:  # HTTPS as real push services take it: both sides HTTP/1.1 over TLS
        import trustme

        ca = trustme.CA()
        certfile, ca_file = f"{tmp}/push.pem", f"{tmp}/ca.pem"
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(certfile)
        ca.cert_pem.write_to_path(ca_file)
    engine = database.create_db_engine(f"sqlite:///{tmp}/bench.db", sqlite_synchronous="NORMAL")
    database.upgrade(engine)
    now_ms = to_ms(SystemClock().now())
    with engine.begin() as conn:
        workspace_id = create_workspace(conn, "push-bench", now_ms).workspace_id
        keys = vapid.set_vapid_subject(conn, workspace_id, SUBJECT, now_ms)
    service = ServiceProcess(certfile, ca_file)
    expected = 0
    try:
        subs = [service.subscribe() for _ in range(args.subscriptions)]
        targets = [PushTarget("webpush", s["endpoint"], s["keys"]["p256dh"], s["keys"]["auth"]) for s in subs]
        messages = contents(args.messages, args.seed, now_ms)
        jobs = [(i % len(subs), m) for i, m in enumerate(messages)]
        figures.payload_bytes = statistics.mean(len(orjson.dumps(m.notification())) for m in messages)
        with Progress(TextColumn("{task.description:<36}"), BarColumn(), TimeElapsedColumn(), console=console,
                      transient=not console.is_terminal) as progress:
            for r in range(args.rounds):
                for side in ("B", "A"):
                    label = "B bare pywebpush" if side == "B" else "A nudgeflow WebPushSender"
                    task = progress.add_task(f"round {r + 1}/{args.rounds}: {label}", total=1)
                    if side == "B":
                        phase = measure(service, side, len(jobs),
                                        lambda: run_bare(subs, jobs, keys.private_key, args.concurrency, tls_context()))
                        figures.bare.append(phase)
                    else:
                        phase = measure(service, side, len(jobs),
                                        lambda: run_nudge(engine, workspace_id, targets, jobs, args.concurrency, tls_context()))
                        figures.nudge.append(phase)
                    expected += len(jobs) + min(args.concurrency, len(jobs))  # the warm-up sends count too
                    progress.update(task, completed=1)
            task = progress.add_task("stages (in-process, no network)", total=1)
            figures.stages = stages(engine, workspace_id, targets, subs, messages[: args.stage_messages], keys.private_key)
            progress.update(task, completed=1)
        accepted, _ = service.stats()
        refused = service.refused()
    finally:
        service.stop()
        engine.dispose()
    if accepted != expected or refused:
        raise SystemExit(f"the push service accepted {accepted} messages and refused {refused}; {expected} were sent")
    return figures


# -- reporting -------------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """The machine as benchmarks/ingest.py describes it, plus the Web Push libraries' versions."""
    from importlib.metadata import version

    info: dict[str, str] = ingest_bench.machine()
    info["libs"] = ", ".join(f"{name} {version(name)}" for name in
                             ("pywebpush", "http_ece", "py-vapid", "cryptography", "aiohttp", "uvicorn"))
    return info


def report(f: Figures) -> list[tuple[str, str, str, str]]:
    b, a = f.best(f.bare), f.best(f.nudge)
    ratio = f.ratio()
    per_round = ", ".join(f"{x:.2f}" for x in f.ratios())
    return [
        (f"B: bare pywebpush webpush_async ({f.concurrency} in flight)", f"{b.rate:,.0f} msgs/s",
         f"sender {b.cpu_us:,.0f} us CPU/msg; service {b.service_cores:.2f} cores", ""),
        (f"A: nudgeflow WebPushSender ({f.concurrency} in flight)", f"{a.rate:,.0f} msgs/s",
         f"{ratio:.2f} x B (target >= 0.7; per round {per_round}); sender {a.cpu_us:,.0f} us CPU/msg; "
         f"service {a.service_cores:.2f} cores", "met" if ratio >= 0.7 else "missed"),
        ("sender CPU per message, B / A", f"{b.cpu_us / a.cpu_us:.2f}", "above 1: A spends less CPU on a message than B", ""),
    ]


def stage_lines(f: Figures) -> list[tuple[str, str, str]]:
    """Each side's CPU per message: its steps before the request (in-process), and the rest
    of its measured CPU per message: the HTTP client, the event loop, the tasks."""
    b, a = f.best(f.bare), f.best(f.nudge)
    rows = []
    for side, phase in (("A", a), ("B", b)):
        mine = {k: v for k, v in f.stages.items() if k.startswith(side + ":")}
        for name, us in mine.items():
            rows.append((name, f"{us:,.0f} us", f"{us / phase.cpu_us:.0%} of {side}'s CPU per message"))
        rest = phase.cpu_us - sum(mine.values())
        client = "aiohttp session" if side == "A" else "aiohttp via webpush_async"
        rows.append((f"{side}: the request: {client}, event loop, tasks (the rest)", f"{rest:,.0f} us",
                     f"{rest / phase.cpu_us:.0%} of {side}'s CPU per message"))
    return rows


def print_table(rows: list[tuple[str, str, str, str]], f: Figures, info: dict[str, str]) -> None:
    from rich.table import Table

    ingest_bench.keep_rows("Nudgeflow push benchmark (Web Push)", rows)
    table = Table(title="Nudgeflow push benchmark (Web Push)", title_justify="left")
    for col, justify in (("measure", "left"), ("figure", "right"), ("ratio / note", "left"), ("", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    stage_table = Table(title="sender CPU per message (best round of each side)", title_justify="left")
    for col in ("step", "CPU", "share"):
        stage_table.add_column(col)
    for row in stage_lines(f):
        stage_table.add_row(*row)
    console.print(stage_table)
    rounds = Table(title="rounds (alternating)", title_justify="left")
    for col in ("round", "B msgs/s", "A msgs/s", "A / B"):
        rounds.add_column(col, justify="right")
    for i, (b, a) in enumerate(zip(f.bare, f.nudge), 1):
        rounds.add_row(str(i), f"{b.rate:,.0f}", f"{a.rate:,.0f}", f"{a.rate / b.rate:.2f}")
    console.print(rounds)
    console.print(f"[dim]{'HTTPS (HTTP/1.1)' if f.tls else 'HTTP/1.1'}; "
                  f"{f.messages:,} messages a phase x {f.rounds} rounds to {f.subscriptions} subscriptions; "
                  f"payload {f.payload_bytes:.0f} B of JSON; {f.loop}; {info['cpu']}, {info['cores']} cores; "
                  f"commit {info['commit']}[/]")


def write_results(rows: list[tuple[str, str, str, str]], f: Figures, args: argparse.Namespace, info: dict[str, str]) -> None:
    """Rewrite the push section of RESULTS.md (every other section kept as it is, the push
    section at the end of the file), with its hand-written notes and one history line per run."""
    b, a = f.best(f.bare), f.best(f.nudge)
    line = (f"| {info['date']} | {info['commit']} | {'HTTPS' if f.tls else 'HTTP/1.1'} | {f.messages:,} x {f.rounds} | "
            f"{f.concurrency} | {b.rate:,.0f} | "
            f"{a.rate:,.0f} | {f.ratio():.2f} | {b.cpu_us:,.0f} / {a.cpu_us:,.0f} | {info['load']} |")
    command = "python benchmarks/push.py" + (" --quick" if args.quick else "") + (" --tls" if args.tls else "")
    wire = ("HTTPS from hypercorn (TLS; it offers HTTP/2 by ALPN): both sides' aiohttp speaks "
            "HTTP/1.1 over TLS, pooled" if f.tls else "HTTP/1.1 from uvicorn, pooled keep-alive connections on both sides")
    lines = [
        "# Push benchmark results",
        "",
        "Written by `benchmarks/push.py` (its docstring says what each figure means). Ratios compare",
        "figures measured in the same run; the machine is shared, so absolute figures move with its load.",
        "",
        f"## Latest push run: {info['date']}",
        "",
        f"`{command}`: Web Push, {f.messages:,} messages a phase, {f.rounds} rounds (B, A in turn; best round of "
        f"each side), {f.concurrency} sends in flight on each side, to {f.subscriptions} subscriptions of the local "
        f"push service (runtime/dev_push.py on 127.0.0.1 in its own process, verifying every VAPID JWT and "
        f"decrypting every payload; the run checks the count). Wire: {wire}. Payload: {f.payload_bytes:.0f} bytes "
        f"of notification JSON (title, body, icon, image, url, data, one action, report URL), aes128gcm-encrypted "
        f"per message on both sides. Sender: one process, {f.loop}.",
        "",
        "| measure | figure | ratio / note | |",
        "| --- | ---: | --- | --- |",
        *[f"| {m} | {fig} | {r} | {ok} |" for m, fig, r, ok in rows],
        "",
        "Sender CPU per message (best round of each side): each side's steps before the request, timed in-process "
        f"over {args.stage_messages:,} messages, and the rest of its measured CPU per message.",
        "",
        "| step | CPU per message | share |",
        "| --- | ---: | --- |",
        *[f"| {name} | {us} | {share} |" for name, us, share in stage_lines(f)],
        "",
        "| round | B msgs/s | A msgs/s | A / B |",
        "| ---: | ---: | ---: | ---: |",
        *[f"| {i} | {b.rate:,.0f} | {a.rate:,.0f} | {a.rate / b.rate:.2f} |" for i, (b, a) in enumerate(zip(f.bare, f.nudge), 1)],
        "",
        *ingest_bench.machine_lines(info, f"{info['os']}; Python {info['python']}; {info['libs']}"),
    ]
    ingest_bench.write_section(RESULTS, "push", lines, [
        "| date | commit | wire | messages x rounds | in flight | B msgs/s | A msgs/s | A / B | CPU us/msg B / A | load |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ], line)
    console.print(f"results written to {RESULTS.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=None, help="messages per phase and round (default 3,000; 300 with --quick)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of B then A (default 4; 1 with --quick)")
    parser.add_argument("--concurrency", type=int, default=32, help="sends in flight on each side (and connections at most)")
    parser.add_argument("--subscriptions", type=int, default=200, help="subscriptions the messages go to, in turn")
    parser.add_argument("--stage-messages", type=int, default=None, help="messages timed step by step (default 500; 50 with --quick)")
    parser.add_argument("--tls", action="store_true", help="HTTPS endpoint (hypercorn): both sides HTTP/1.1 over TLS")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="a short run, to check that it works")
    parser.add_argument("--no-record", action="store_true", help="do not write benchmarks/RESULTS.md")
    args = parser.parse_args()
    if args.messages is None:
        args.messages = 300 if args.quick else 3000
    if args.rounds is None:
        args.rounds = 1 if args.quick else 4
    if args.stage_messages is None:
        args.stage_messages = 50 if args.quick else 500
    info = machine()
    ingest_bench.announce("push", info, console)
    figures = run(args)
    rows = report(figures)
    print_table(rows, figures, info)
    if not args.no_record:
        write_results(rows, figures, args, info)


from rich.console import Console  # noqa: E402

console = Console(width=None if sys.stdout.isatty() else 130)

if __name__ == "__main__":
    main()
