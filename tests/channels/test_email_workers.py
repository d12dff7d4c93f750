"""Emails built in worker processes (NUDGEFLOW_EMAIL_BUILD_PROCESSES): the same bytes as a
build in the serving process, the same errors, DKIM that verifies, and a worker that dies
costs a retry, not the channel."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import dkim
import pytest

from nudgeflow.channels.base import ChannelRegistry, PermanentError, TransientError
from nudgeflow.channels.email.build import build_raw
from nudgeflow.channels.email.channel import EmailChannel
from nudgeflow.channels.wiring import configure_email
from nudgeflow.channels.workers import WorkerPool
from nudgeflow.content.email_jobs import EmailJob, TemplateNotLoaded, job_for, slim
from nudgeflow.content.templates import compile_template
from nudgeflow.core.clock import VirtualClock
from nudgeflow.model.outbound import OutboundMessage
from nudgeflow.model.smtp_config import parse_smtp_url
from nudgeflow.settings import ConfigError, Settings, email_build_processes_for, usable_cores
from tests.channels.smtp_support import dkim_key

TEMPLATE = {
    "channel": "email",
    "subject": "{{ profile.first_name | default: 'Hi' }}, your cart",
    "topic": "promotions",
    "body": """<mjml><mj-body><mj-section><mj-column>
<mj-text>Hello {{ profile.first_name }}, \
{% for item in cart.items %}{{ item.name }} {{ item.price | money: "EUR" }}; {% endfor %}</mj-text>
<mj-button href="https://shop.example.com/cart">Back to your cart</mj-button>
</mj-column></mj-section></mj-body></mjml>""",
}
BROKEN = {**TEMPLATE, "subject": "Hi", "body": "<p>\n{{ profile.nickname }}</p>"}  # no such trait, no default


def message(key: str = "run_1:mail:0") -> OutboundMessage:
    return OutboundMessage(
        key=key,
        workspace_id="ws_w",
        profile_id="p1",
        run_id="run_1",
        journey_id="cart",
        step="mail",
        channel="email",
        template="cart",
        variant=None,
        marketing=True,
        traits={"email": "ada@example.org"},
    )


CONTEXT = {
    "profile": {"id": "p1", "first_name": "Ada", "locale": "de-DE"},
    "cart": {"items": [{"name": "Red shoes", "price": 59.9}, {"name": "Blue hat", "price": 19}]},
}


class JobRenderer:
    """What content/email_render.prepare_email hands the channel, without a database."""

    def __init__(self, template: dict[str, Any]) -> None:
        self.compiled = compile_template(template)

    async def prepare_email(self, m: OutboundMessage) -> EmailJob:
        return job_for(
            self.compiled, m, "ada@example.org", dict(CONTEXT), "secret-0123456789", "https://nf.example.com"
        )


def _channel(template: dict[str, Any], workers: WorkerPool | None, url: str) -> EmailChannel:
    return EmailChannel(parse_smtp_url(url), JobRenderer(template), VirtualClock(), workers=workers)


URL = "smtp://127.0.0.1:2525?tls=none&from=shop@shop.example.com&from_name=Shop"


def test_a_worker_builds_the_same_bytes_as_the_serving_process(worker_pool: WorkerPool) -> None:
    config = parse_smtp_url(URL)
    inline = asyncio.run(_channel(TEMPLATE, None, URL).build(message(), config))
    pooled = asyncio.run(_channel(TEMPLATE, worker_pool, URL).build(message(), config))
    assert pooled == inline
    assert b"Ada, your cart" in pooled[2] and b"List-Unsubscribe-Post" in pooled[2]


def test_a_new_template_version_reaches_a_worker_that_parsed_the_old_one(worker_pool: WorkerPool) -> None:
    # Another version is another fingerprint: the worker parses it, not its cached one.
    other = {**TEMPLATE, "subject": "Second version for {{ profile.first_name }}"}
    _, _, raw = asyncio.run(_channel(other, worker_pool, URL).build(message("run_1:mail:1"), parse_smtp_url(URL)))
    assert b"Second version for Ada" in raw


def test_a_render_error_in_a_worker_fails_the_message_with_line_and_column(worker_pool: WorkerPool) -> None:
    with pytest.raises(PermanentError) as failed:
        asyncio.run(_channel(BROKEN, worker_pool, URL).build(message(), parse_smtp_url(URL)))
    assert "body:2:4: profile.nickname is undefined" in str(failed.value)  # part:line:column


def test_no_from_address_is_the_same_permanent_error_in_a_worker(worker_pool: WorkerPool) -> None:
    url = "smtp://127.0.0.1:2525?tls=none"
    with pytest.raises(PermanentError, match="no From address"):
        asyncio.run(_channel(TEMPLATE, worker_pool, url).build(message(), parse_smtp_url(url)))


def test_dkim_signed_in_a_worker_verifies(worker_pool: WorkerPool, tmp_path: Any) -> None:
    path, record = dkim_key(tmp_path)
    url = f"{URL}&dkim_selector=s1&dkim_domain=shop.example.com&dkim_key={path}"
    _, _, raw = asyncio.run(_channel(TEMPLATE, worker_pool, url).build(message(), parse_smtp_url(url)))
    assert raw.startswith(b"DKIM-Signature:")
    assert dkim.verify(
        raw, dnsfunc=lambda name, timeout=5: record if name == b"s1._domainkey.shop.example.com." else None
    )


def test_a_worker_that_dies_costs_a_retry_and_is_replaced() -> None:
    with closing(WorkerPool(1)) as workers:
        pid = asyncio.run(workers.run(_pid, None))
        with pytest.raises(TransientError, match="worker process died"):
            asyncio.run(workers.run(_die, None))
        assert asyncio.run(workers.run(_pid, None)) != pid  # a new process took its place


def test_builds_started_together_go_to_the_worker_as_one_batch() -> None:
    # 20 sends started on one turn of the loop: two executor tasks (10 + 10, one being built
    # and the next queued behind it), not 20.
    with closing(WorkerPool(1)) as workers:
        # The worker parses the template on its first build: later jobs go without it.
        asyncio.run(_channel(TEMPLATE, workers, URL).build(message(), parse_smtp_url(URL)))
        workers.batches = 0

        async def twenty() -> list[tuple[str, str, bytes]]:
            channel = _channel(TEMPLATE, workers, URL)
            config = parse_smtp_url(URL)
            return await asyncio.gather(*(channel.build(message(f"run_1:mail:{i}"), config) for i in range(20)))

        built = asyncio.run(twenty())
        assert workers.batches == 2
        assert len({raw for _, _, raw in built}) == 20  # each message its own bytes
        inline = asyncio.run(_channel(TEMPLATE, None, URL).build(message("run_1:mail:7"), parse_smtp_url(URL)))
        assert built[7] == inline


def test_a_batch_is_spread_over_the_workers() -> None:
    with closing(WorkerPool(2)) as workers:

        async def ten() -> list[int]:
            return await asyncio.gather(*(workers.run(_pid, None) for _ in range(10)))

        pids = asyncio.run(ten())
        assert workers.batches == 4  # 3 + 3 + 3 + 1: two tasks per worker, at once
        assert len(pids) == 10 and all(isinstance(pid, int) for pid in pids)


def test_calls_made_while_the_worker_is_busy_wait_and_go_together() -> None:
    # Calls that arrive one by one (as sends finish at different times) while two batches
    # are in flight are held, then sent as one batch when a batch comes back.
    with closing(WorkerPool(1)) as workers:

        async def staggered() -> list[int]:
            calls = []
            for _ in range(12):
                calls.append(asyncio.ensure_future(workers.run(_pid_after, 0.05)))
                await asyncio.sleep(0)  # each call on its own turn of the loop
            return await asyncio.gather(*calls)

        assert len(asyncio.run(staggered())) == 12
        assert workers.batches <= 4  # 1, 1, then the 10 held back in at most 2


def test_two_event_loops_share_a_pool_each_getting_its_own_answers() -> None:
    # The dispatcher's loop and a short-lived one (run_until_idle, a test) at the same time:
    # each loop's calls are batched and answered on that loop, none left waiting.
    with closing(WorkerPool(1)) as workers:

        async def twelve() -> list[int]:
            answers = await asyncio.gather(*(workers.run(_pid_after, 0.01) for _ in range(12)))
            for _ in range(5):  # the last batch's bookkeeping (_done, then a flush) runs
                await asyncio.sleep(0)
            return answers

        # The loops are closed only after the pool is looked at: busy_loops counts open ones
        # only (asyncio.run would have closed them, and the check could not fail).
        loops = [asyncio.new_event_loop() for _ in range(2)]
        try:
            with ThreadPoolExecutor(2) as threads:
                answers = list(threads.map(lambda loop: loop.run_until_complete(twelve()), loops))
            assert [len(a) for a in answers] == [12, 12]
            assert not any(loop.is_closed() for loop in loops)
            assert workers.busy_loops == 0  # neither loop has a call waiting or a batch in flight
        finally:
            for loop in loops:
                loop.close()


def test_a_failing_build_fails_only_its_own_message_in_a_batch(worker_pool: WorkerPool) -> None:
    async def both() -> list[Any]:
        config = parse_smtp_url(URL)
        good, bad = _channel(TEMPLATE, worker_pool, URL), _channel(BROKEN, worker_pool, URL)
        return await asyncio.gather(
            good.build(message("run_1:mail:a"), config),
            bad.build(message("run_1:mail:b"), config),
            good.build(message("run_1:mail:c"), config),
            return_exceptions=True,
        )

    first, broken, last = asyncio.run(both())
    assert isinstance(broken, PermanentError) and "profile.nickname is undefined" in str(broken)
    assert b"Ada, your cart" in first[2] and b"Ada, your cart" in last[2]


def test_a_worker_that_dies_fails_every_build_of_its_batch_for_a_retry() -> None:
    with closing(WorkerPool(1)) as workers:

        async def together() -> list[Any]:
            calls = (workers.run(_pid_or_die, arg) for arg in (1, "die", 3, 4))
            return await asyncio.gather(*calls, return_exceptions=True)

        results = asyncio.run(together())
        assert workers.batches == 2  # (1, "die") and (3, 4)
        # The whole batch of the call that killed the worker is retried, the one that ran before it too.
        assert isinstance(results[0], TransientError) and isinstance(results[1], TransientError)
        assert isinstance(asyncio.run(workers.run(_pid, None)), int)  # replaced


def test_a_slim_job_for_an_unparsed_template_asks_for_the_full_one(worker_pool: WorkerPool) -> None:
    job = asyncio.run(JobRenderer({**TEMPLATE, "subject": "Third {{ profile.first_name }}"}).prepare_email(message()))
    job = dataclasses.replace(job, sender="shop@shop.example.com")
    with pytest.raises(TemplateNotLoaded):
        asyncio.run(worker_pool.run(build_raw, slim(job)))  # the worker has never seen this version
    assert b"Third Ada" in asyncio.run(worker_pool.run(build_raw, job))
    assert b"Third Ada" in asyncio.run(worker_pool.run(build_raw, slim(job)))  # now it has


def test_the_setting_reaches_the_channel() -> None:
    assert Settings.from_env({"NUDGEFLOW_EMAIL_BUILD_PROCESSES": "2"}).email_build_processes == 2
    assert Settings.from_env({"NUDGEFLOW_EMAIL_BUILD_PROCESSES": "0"}).email_build_processes == 0
    assert Settings.from_env({"NUDGEFLOW_EMAIL_BUILD_PROCESSES": " Auto "}).email_build_processes == "auto"
    assert Settings().email_build_processes == "auto"
    with pytest.raises(ConfigError, match="PROCESSES: 'some' is not an integer and not 'auto'"):
        Settings.from_env({"NUDGEFLOW_EMAIL_BUILD_PROCESSES": "some"})
    with pytest.raises(ValueError):
        WorkerPool(0)


@pytest.mark.parametrize(
    ("setting", "cores", "processes"),
    [
        ("auto", 1, 0),  # one core: a build process would only take turns with the server
        ("auto", 2, 1),
        ("auto", 64, 1),
        (0, 64, 0),  # an explicit number is what it says, whatever the machine
        (0, 1, 0),
        (3, 1, 3),
    ],
)
def test_auto_is_one_build_process_from_two_cores(setting: int | str, cores: int, processes: int) -> None:
    assert email_build_processes_for(setting, cores=cores) == processes


def test_auto_counts_the_cores_this_process_may_use() -> None:
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)
    assert email_build_processes_for("auto") == (1 if usable_cores() >= 2 else 0)


@pytest.mark.parametrize(("setting", "pooled"), [(0, False), (2, True), ("auto", usable_cores() >= 2)])
def test_the_channel_gets_the_processes_the_setting_means(tmp_path: Any, setting: int | str, pooled: bool) -> None:
    # Workers are spawned on the first build: setting the channel up starts none.
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", smtp_url=URL, email_build_processes=setting)
    # No engine: with a default SMTP server, setting up reads no workspace's settings.
    channel = configure_email(ChannelRegistry(), None, settings)
    assert channel is not None
    try:
        assert (channel.workers is not None) == pooled
        if pooled:
            assert channel.workers.processes == email_build_processes_for(setting)
    finally:
        if channel.workers is not None:
            channel.workers.close()


def test_a_job_never_shows_its_secrets_or_personal_data(tmp_path: Any) -> None:
    path, _ = dkim_key(tmp_path)
    job = asyncio.run(JobRenderer(TEMPLATE).prepare_email(message()))
    job = dataclasses.replace(job, dkim=(("s1", "shop.example.com", Path(path).read_bytes()),))
    shown = repr(job)
    assert "secret-0123456789" not in shown and "PRIVATE KEY" not in shown and "Red shoes" not in shown
    assert "ada@example.org" not in shown
    assert "run_1:mail:0" in shown  # what identifies it stays


def test_build_raw_inline_needs_no_pool() -> None:
    job = asyncio.run(JobRenderer(TEMPLATE).prepare_email(message()))
    raw = build_raw(dataclasses.replace(job, sender="Shop <shop@shop.example.com>"))
    assert b"Red shoes" in raw


def _pid(_: Any) -> int:
    return os.getpid()


def _die(_: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)  # a build that takes a while, in the worker
    return os.getpid()


def _pid_or_die(arg: Any) -> int:
    if arg == "die":
        _die(arg)
    return os.getpid()
