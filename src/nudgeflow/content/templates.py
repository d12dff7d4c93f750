"""Message templates: Liquid for every part, MJML for the email body's layout.

A template source (`TemplateSource`) is compiled once per version (`compile_template`):
every Liquid part is parsed once, and an MJML body is compiled to responsive HTML once,
with its Liquid markup kept intact for rendering. `render(compiled, context)` then only
runs the parsed Liquid against one person's context: nothing is parsed or compiled per
recipient.

MJML and Liquid together. Before the MJML compiler sees the body, each Liquid markup
(`{{ … }}` and `{% … %}`) is swapped for an opaque placeholder, and put back afterwards.
So Liquid may appear anywhere a word of text or an attribute value may appear, with any
quotes or operators inside (`src="{{ item.image | default: "x.png" }}"`,
`{% if cart.items.size > 0 %}` between sections), and the MJML compiler never misreads it.
The rule that follows: Liquid may repeat or hide whole MJML elements (a `{% for %}`
around `<mj-section>`s, an `{% if %}` around an `<mj-button>`), but it cannot build MJML
tags or attribute names, since those are compiled before any value is known. A column
width is computed from the columns written in the section, so loop over sections (or
over elements inside one column), not over columns.

Errors. Every failure is a `TemplateError` naming the part (subject, preheader, body,
text, title, url, data.KEY, …) and the line and column in that part as the author wrote
it, also for errors found while rendering the compiled HTML. Rendering is all or
nothing: any error in any part raises, and no partial result is returned.

Undefined variables. `{{ first_name }}` with no `first_name` in the context is an error;
`{{ first_name | default: "there" }}` is not (put `default` first in a filter chain), and
`{% if coupon %}` is simply false when there is no coupon.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import re
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from io import StringIO
from typing import Any, Literal

import orjson
from liquid import BoundTemplate, Environment, FalsyStrictUndefined
from liquid.context import RenderContext
from liquid.exceptions import FilterArgumentError, LiquidError, OutputStreamLimitError, ResourceLimitError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nudgeflow.content.email_text import TEMPLATE_PREHEADER, html_to_text, inject_preheader, tidy_text
from nudgeflow.content.rendered import DEFAULT_PUSH_TTL_S, RenderedEmail, RenderedPush
from nudgeflow.errors import ContentError

EMAIL = "email"
PUSH = "push"
EMAIL_PARTS = ("subject", "preheader", "body", "text")
PUSH_PARTS = ("title", "body", "image", "icon", "url", "collapse_key")
MAX_PUSH_TTL_S = 28 * 86_400  # what Web Push services and FCM keep at most


class TemplateError(ContentError, ValueError):
    """A template that cannot be compiled or rendered; says where (part, line, column)."""

    def __init__(
        self, message: str, part: str | None = None, line: int | None = None, column: int | None = None
    ) -> None:
        self.message = message
        self.part = part
        self.line = line
        self.column = column
        where = part or ""
        if line is not None:
            where += f":{line}:{column}" if column is not None else f":{line}"
        super().__init__(f"{where}: {message}" if where else message)

    def as_dict(self) -> dict[str, Any]:
        return {"message": self.message, "part": self.part, "line": self.line, "column": self.column}


# --- the source -------------------------------------------------------------------------------


class PushAction(BaseModel):
    """A button on a notification (Web Push actions; the app decides for mobile)."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(min_length=1, max_length=64, description="The id the click reports.")
    title: str = Field(min_length=1, description="The button's label (Liquid).")
    url: str | None = Field(None, description="Where that button leads (Liquid); the notification's url otherwise.")


class TemplateSource(BaseModel):
    """What an author writes. Email: subject, preheader, body (MJML or HTML), text, topic.
    Push: title, body (the notification text), image, url (deep link), data."""

    model_config = ConfigDict(extra="forbid")

    channel: Literal["email", "push"] = "email"
    body: str = Field(description="Email: MJML (starting with <mjml>) or HTML. Push: the notification text.")
    subject: str | None = None
    preheader: str | None = None
    text: str | None = Field(None, description="The plain-text part; derived from the HTML when absent.")
    topic: str | None = Field(None, description="The subscription group (topic) a marketing email belongs to.")
    title: str | None = None
    image: str | None = None
    url: str | None = Field(None, description="Deep link opened by the notification.")
    data: dict[str, str] = Field(default_factory=dict, description="Extra key/value payload (values are Liquid).")
    icon: str | None = Field(None, description="Push: a small icon URL (Web Push).")
    actions: list[PushAction] = Field(default_factory=list, max_length=3, description="Push: buttons (Web Push).")
    ttl: int | None = Field(
        None,
        ge=0,
        le=MAX_PUSH_TTL_S,
        description=(
            "Push: seconds the message may wait for an offline device, and after which it is never sent (default 4 h)."
        ),
    )
    urgency: Literal["very-low", "low", "normal", "high"] | None = Field(
        None, description="Push: delivery urgency (RFC 8030; APNs priority, FCM priority)."
    )
    collapse_key: str | None = Field(
        None,
        description=(
            "Push: a newer message with the same key replaces an undelivered older one "
            "(Web Push Topic, apns-collapse-id, FCM collapse key)."
        ),
    )

    @model_validator(mode="after")
    def _channel_fields(self) -> TemplateSource:
        if self.channel == EMAIL:
            if not (self.subject or "").strip():
                raise ValueError("an email template needs a subject")
            stray = [
                n
                for n in ("title", "image", "url", "icon", "ttl", "urgency", "collapse_key")
                if getattr(self, n) is not None
            ]
            stray += (["data"] if self.data else []) + (["actions"] if self.actions else [])
            if stray:
                raise ValueError(f"{', '.join(stray)}: only for push templates")
        else:
            if not (self.title or "").strip():
                raise ValueError("a push template needs a title")
            stray = [n for n in ("subject", "preheader", "text", "topic") if getattr(self, n) is not None]
            if stray:
                raise ValueError(f"{', '.join(stray)}: only for email templates")
        if not self.body.strip():
            raise ValueError("the body is empty")
        return self

    @property
    def is_mjml(self) -> bool:
        return self.channel == EMAIL and self.body.lstrip().lower().startswith("<mjml")

    def canonical_json(self) -> str:
        """The stored form: every field spelled out, keys sorted (equal sources, equal text)."""
        return orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS).decode()

    def fingerprint(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def parse_source(data: Mapping[str, Any] | str) -> TemplateSource:
    """A source from a mapping (or its JSON text); a TemplateError says what is wrong."""
    try:
        if isinstance(data, str):
            return TemplateSource.model_validate_json(data)
        return TemplateSource.model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise TemplateError(message, part=loc or None) from None


# --- environments, limits, filters --------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Resource limits for one render of one part (python-liquid enforces them)."""

    loop_iterations: int = 10_000  # the product of nested loop lengths
    output_bytes: int = 1_000_000  # counted in characters; Gmail clips messages past ~100 KB: a safety net
    context_depth: int = 30
    local_namespace_bytes: int = 1_000_000
    # The memory ceiling of a filter chain: no filter takes or makes a string longer than
    # this or a list longer than that. python-liquid bounds loops and output but not the
    # values in between (`split | sort | join` 25 times over 100 KB held the CPU 5.6 s);
    # one sort of 20,000 strings is ~15 ms of the GIL, so the serving thread stays responsive.
    value_chars: int = 1_000_000
    value_items: int = 20_000


DEFAULT_LIMITS = Limits()

DEFAULT_RENDER_BUDGET_MS = 2000.0
"""The wall-clock budget of one render (every part of one message), preview or send:
Settings.render_timeout_ms (NUDGEFLOW_RENDER_TIMEOUT_MS) sets it, `set_render_budget`."""
_render_budget_ms = DEFAULT_RENDER_BUDGET_MS


def set_render_budget(ms: float) -> None:
    """The process's render budget (the server sets it from its Settings at start)."""
    global _render_budget_ms
    if not ms > 0:
        raise ValueError(f"the render budget must be above 0 ms, not {ms!r}")
    _render_budget_ms = float(ms)


def render_budget_ms() -> float:
    return _render_budget_ms


class RenderLimitError(ResourceLimitError, ContentError):
    """A render past its budget (time) or a filter past the value ceiling (memory)."""


class _ValueTooLarge(RenderLimitError, FilterArgumentError):
    """A filter's value past the ceiling. A FilterArgumentError too: python-liquid then
    gives it the filter's token, so the error says where."""


class _Budget(threading.local):
    deadline = float("inf")  # time.monotonic() past which the render in this thread stops
    budget_ms = DEFAULT_RENDER_BUDGET_MS
    next_pause = float("inf")  # when the render next lets other threads run (<= deadline)


_BUDGET = _Budget()
_monotonic = time.monotonic
# A long render hands the GIL over this often. A CPU-bound thread otherwise keeps it for
# the interpreter's 5 ms switch interval each time the serving thread wakes up for a
# socket or a database answer, and one /healthz took ~100 ms beside a slow render.
_PAUSE_EVERY_S = 0.002
_FIRST_PAUSE_S = 0.010  # after an email's whole render (~0.5 ms): sends do not pause at all
_CHECK_EVERY_CHARS = 4096


def _checkpoint(token: Any) -> None:
    """Past the next pause: stop when past the deadline, else let other threads run."""
    if _monotonic() > _BUDGET.deadline:
        raise RenderLimitError(
            f"rendering took longer than its budget of {_BUDGET.budget_ms:g} ms (NUDGEFLOW_RENDER_TIMEOUT_MS)",
            token=token,
        )
    time.sleep(0)
    _BUDGET.next_pause = min(_monotonic() + _PAUSE_EVERY_S, _BUDGET.deadline)


# Filters left unwrapped: they return a number, a date, one item, or a string at most a
# small constant factor of their input (which the next wrapped filter, or the output limit,
# still bounds). The hot path's filters are among them: an email's render calls the
# wrapper only for list and string builders (split, join, append, sort, map, …).
_UNBOUNDED_FILTERS = frozenset(
    {
        "default",
        "money",
        "date",
        "datetime",
        "days_until",
        "size",
        "first",
        "last",
        "abs",
        "at_least",
        "at_most",
        "ceil",
        "floor",
        "round",
        "plus",
        "minus",
        "times",
        "divided_by",
        "modulo",
        "strip",
        "lstrip",
        "rstrip",
        "strip_newlines",
        "strip_html",
        "truncate",
        "truncatewords",
        "capitalize",
        "downcase",
        "upcase",
        "escape",
        "escape_once",
        "url_encode",
        "url_decode",
    }
)


def _bounded(name: str, func: Callable[..., Any], chars: int, items: int) -> Callable[..., Any]:
    """The filter, refusing to take or make a string over `chars` characters or a list over
    `items` items. Wrapped once per environment, so a filter call costs two size checks."""

    def check(value: Any, what: str) -> None:
        if isinstance(value, str):
            if len(value) > chars:
                raise _ValueTooLarge(
                    f"filter '{name}' {what} a string of {len(value)} characters; the limit is {chars}", token=None
                )
        elif isinstance(value, (list, tuple, range)) and len(value) > items:
            raise _ValueTooLarge(
                f"filter '{name}' {what} a list of {len(value)} items; the limit is {items}", token=None
            )

    @functools.wraps(func)  # keeps with_context / with_environment, which python-liquid reads
    def bounded(left: Any, *args: Any, **kwargs: Any) -> Any:
        check(left, "was given")
        out = func(left, *args, **kwargs)
        check(out, "made")
        return out

    return bounded


class _BudgetContext(RenderContext):
    """The render context with the budget's clock checkpoints: every filter call, every
    loop started, and every 4 KB written to an output buffer (_CountingIO). Between two,
    python-liquid runs at most one loop's iterations of tags that neither filter nor write
    much. The fast path of each is one comparison."""

    def filter(self, name: str, token: Any) -> Callable[..., object]:
        if _monotonic() > _BUDGET.next_pause:
            _checkpoint(token)
        return super().filter(name, token)

    def raise_for_loop_limit(self, length: int = 1) -> None:
        if _monotonic() > _BUDGET.next_pause:
            _checkpoint(None)
        super().raise_for_loop_limit(length)

    def get_buffer(self, buf: Any = None) -> StringIO:
        limit = self.env.output_stream_limit
        if limit is None:
            return super().get_buffer(buf)
        return _CountingIO(limit - (buf.size if isinstance(buf, _CountingIO) else 0))


class _Missing(FalsyStrictUndefined):
    """Strict: output or iteration fails; `default` works; `{% if missing %}` is false."""

    force_liquid_default = True


FilterHook = Callable[[Environment], None]
FILTER_HOOKS: list[FilterHook] = []
"""Functions called with every new Environment to add filters or tags. Append to it at
import time (before the first compile); content/filters.py is also picked up by itself."""


def _money(value: Any, currency: str | None = None) -> str:
    """A plain fallback: 2 decimals and the currency (content/filters.py replaces it)."""
    try:
        amount = float(value)
    except (TypeError, ValueError):
        return str(value)
    if currency:
        try:
            from babel.numbers import format_currency

            return str(format_currency(amount, currency, locale="en_US"))
        except Exception:
            return f"{amount:.2f} {currency}"
    return f"{amount:.2f}"


def register_filters(env: Environment) -> None:
    """Add Nudgeflow's filters to an environment: the fallbacks here, then those of
    nudgeflow.content.filters when that module exists (its `register_filters(env)`, which
    may replace these), then every function in FILTER_HOOKS."""
    env.filters["money"] = _money
    if importlib.util.find_spec("nudgeflow.content.filters") is not None:
        module = importlib.import_module("nudgeflow.content.filters")
        hook = getattr(module, "register_filters", None)
        if callable(hook):
            hook(env)
    for extra in FILTER_HOOKS:
        extra(env)


class _CountingIO(StringIO):
    """python-liquid's output limit, counted in characters. Its own buffer encodes every
    write to UTF-8 to count bytes: a fifth of rendering a 28 KB email went there. A
    character is at least a byte, so the limit holds as a bound on characters."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.size = 0  # what python-liquid reads to carry the count into nested buffers
        self.check_at = min(limit, _CHECK_EVERY_CHARS)  # the next size at which to look further

    def write(self, text: str) -> int:
        self.size += len(text)
        if self.size > self.check_at:  # one comparison for both limits on the fast path
            if self.size > self.limit:
                raise OutputStreamLimitError("output stream limit reached", token=None)
            # A budget checkpoint every 4 KB: loops that only write pass here.
            self.check_at = min(self.limit, self.size + _CHECK_EVERY_CHARS)
            if _monotonic() > _BUDGET.next_pause:
                _checkpoint(None)
        return super().write(text)


class _Template(BoundTemplate):
    context_class = _BudgetContext

    def _get_buffer(self) -> StringIO:  # the one hook python-liquid has for the top buffer
        limit = self.env.output_stream_limit
        return StringIO() if limit is None else _CountingIO(limit)


@functools.lru_cache(maxsize=16)
def environment(limits: Limits = DEFAULT_LIMITS, html: bool = False) -> Environment:
    """The Liquid environment for these limits; `html` escapes values (the email body)."""

    class _Env(Environment):
        template_class = _Template
        loop_iteration_limit = limits.loop_iterations
        output_stream_limit = limits.output_bytes
        context_depth_limit = limits.context_depth
        local_namespace_limit = limits.local_namespace_bytes

    env = _Env(undefined=_Missing, autoescape=html, strict_filters=True)
    register_filters(env)
    for name, func in list(env.filters.items()):
        if name not in _UNBOUNDED_FILTERS:
            env.filters[name] = _bounded(name, func, limits.value_chars, limits.value_items)
    return env


# --- positions ----------------------------------------------------------------------------------


def _line_col(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


@dataclass(frozen=True)
class _Part:
    """One part ready to render: the parsed Liquid, the source the author wrote, and how
    offsets in the parsed text map back to it (for the compiled MJML body)."""

    name: str
    template: Any  # liquid BoundTemplate
    source: str
    # (offset in the parsed text, offset in the source) for each Liquid markup, in order;
    # None when the parsed text is the source itself.
    anchors: tuple[tuple[int, int], ...] | None = None
    derived: bool = False  # made from the HTML (the text part of an email without one)

    def position(self, index: int) -> tuple[int, int]:
        if self.anchors is None or not self.anchors:
            return _line_col(self.source, index)
        starts = [a[0] for a in self.anchors]
        i = bisect_right(starts, index) - 1
        if i < 0:
            return _line_col(self.source, self.anchors[0][1])
        compiled_start, source_start = self.anchors[i]
        return _line_col(self.source, source_start + (index - compiled_start))


_TAG = re.compile(r"\{%-?\s*(\w+)")
_BLOCKS = frozenset({"if", "unless", "for", "case", "capture", "tablerow", "comment", "raw", "block"})


def _unclosed(source: str, message: str) -> int | None:
    """Where the block that "expected tag endX" complains about was opened (python-liquid
    gives no position when a template ends inside a block)."""
    wanted = re.search(r"expected tag end(\w+)", message)
    if not wanted:
        return None
    stack: list[tuple[str, int]] = []
    for m in _TAG.finditer(source):
        tag = m.group(1)
        if tag in _BLOCKS:
            stack.append((tag, m.start()))
        elif tag.startswith("end") and stack and stack[-1][0] == tag[3:]:
            stack.pop()
    for tag, start in reversed(stack):
        if tag == wanted.group(1):
            return start
    return None


_INNER = frozenset({"else", "elsif", "when", "break", "continue"})


def _failing_markup(source: str) -> int | None:
    """The first output or simple tag that does not parse on its own (for errors that
    python-liquid reports without a position, such as `{{ profile. }}`)."""
    env = Environment()
    for m in _LIQUID.finditer(source):
        tag = _TAG.match(m.group())
        if tag and (tag.group(1) in _BLOCKS or tag.group(1) in _INNER or tag.group(1).startswith("end")):
            continue
        try:
            env.parse(m.group())
        except LiquidError:
            return m.start()
    return None


def _error(exc: Exception, part: _Part | str, source: str | None = None) -> TemplateError:
    name = part.name if isinstance(part, _Part) else part
    message = str(exc.args[0]) if exc.args else type(exc).__name__
    token = getattr(exc, "token", None)
    if isinstance(exc, LiquidError) and (token is None or token.start_index < 0):
        text = part.source if isinstance(part, _Part) else (source or "")
        opened = _unclosed(text, message)
        if opened is not None:
            line, column = _line_col(text, opened)
            return TemplateError(f"{message}: this block is never closed", name, line, column)
        culprit = _failing_markup(text)
        if culprit is not None:
            line, column = _line_col(text, culprit)
            return TemplateError(message, name, line, column)
    if isinstance(exc, LiquidError) and token is not None and token.start_index >= 0:
        if isinstance(part, _Part):
            line, column = part.position(token.start_index)
        else:
            line, column = _line_col(source or "", token.start_index)
        return TemplateError(message, name, line, column)
    return TemplateError(message, name)


# --- MJML ---------------------------------------------------------------------------------------

_LIQUID = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)

MJML_COMPILES = 0
"""How many MJML bodies this process compiled (tests count them)."""


def compile_mjml(body: str) -> str:
    """MJML to HTML, with every Liquid markup left exactly as written."""
    global MJML_COMPILES
    import mrml

    nonce = hashlib.sha1(body.encode()).hexdigest()[:8]
    marks: list[str] = []

    def protect(match: re.Match[str]) -> str:
        marks.append(match.group())
        return f"nflq{nonce}x{len(marks) - 1}x"

    protected = _LIQUID.sub(protect, body)
    MJML_COMPILES += 1
    try:
        html = mrml.to_html(protected).content
    except Exception as exc:  # mrml raises OSError with the parser's message
        raise TemplateError(f"MJML: {exc}", "body") from None
    return re.sub(rf"nflq{nonce}x(\d+)x", lambda m: marks[int(m.group(1))], html)


def _anchors(source: str, compiled: str) -> tuple[tuple[int, int], ...]:
    """Where each Liquid markup of the compiled HTML came from in the source (in order of
    appearance in the compiled text; MJML may move or repeat them, as mj-title does)."""
    by_text: dict[str, list[int]] = {}
    for m in _LIQUID.finditer(source):
        by_text.setdefault(m.group(), []).append(m.start())
    used: dict[str, int] = {}
    out = []
    for m in _LIQUID.finditer(compiled):
        starts = by_text.get(m.group())
        if not starts:
            continue
        k = used.get(m.group(), 0)
        out.append((m.start(), starts[min(k, len(starts) - 1)]))
        used[m.group()] = k + 1
    return tuple(out)


# --- compiling and rendering --------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledTemplate:
    source: TemplateSource
    html: str | None  # the email body as HTML, Liquid still inside (None for push)
    parts: dict[str, _Part] = field(repr=False)
    limits: Limits = DEFAULT_LIMITS

    @property
    def channel(self) -> str:
        return self.source.channel

    @functools.cached_property
    def literal_links(self) -> tuple[frozenset[str], tuple[str, ...]]:
        """The http(s) links the author wrote (content/links.template_links): trusted for
        click tracking. Found once per compiled version, from every part's source and the
        compiled HTML."""
        from nudgeflow.content.links import template_links

        texts = [part.source for part in self.parts.values()] + [self.html or ""]
        return template_links(texts)


def _parse(env: Environment, name: str, text: str) -> _Part:
    try:
        return _Part(name, env.from_string(text), text)
    except LiquidError as exc:
        raise _error(exc, name, text) from None


def compile_template(
    source: TemplateSource | Mapping[str, Any], *, compiled_html: str | None = None, limits: Limits = DEFAULT_LIMITS
) -> CompiledTemplate:
    """Parse every part once and compile an MJML body once.

    `compiled_html` is the body's HTML from an earlier compile of this same source (the
    store keeps it with the version): given, MJML is not compiled again. Raises
    TemplateError for a Liquid syntax error (with its part, line and column) or MJML that
    does not compile.
    """
    if not isinstance(source, TemplateSource):
        source = parse_source(source)
    text_env = environment(limits, html=False)
    html_env = environment(limits, html=True)
    parts: dict[str, _Part] = {}
    html: str | None = None
    if source.channel == EMAIL:
        for name in ("subject", "preheader", "text"):
            value = getattr(source, name)
            if value is not None:
                parts[name] = _parse(text_env, name, value)
        body = _parse(html_env, "body", source.body)  # syntax errors in the author's lines
        if source.is_mjml:
            html = compiled_html if compiled_html is not None else compile_mjml(source.body)
            anchored = _Part("body", None, source.body, _anchors(source.body, html))
            try:
                parts["body"] = _Part("body", html_env.from_string(html), source.body, anchored.anchors)
            except LiquidError as exc:  # MJML moved markup apart (an if split over attributes)
                raise _error(exc, anchored) from None
        else:
            html = source.body
            parts["body"] = body
        if "text" not in parts:
            derived = _derived_text(text_env, html)
            if derived is not None:
                parts["text"] = derived
    else:
        for name in PUSH_PARTS:
            value = getattr(source, name)
            if value is not None:
                parts[name] = _parse(text_env, name, value)
        for key, value in source.data.items():
            parts[f"data.{key}"] = _parse(text_env, f"data.{key}", value)
        for i, action in enumerate(source.actions):
            parts[f"actions.{i}.title"] = _parse(text_env, f"actions.{i}.title", action.title)
            if action.url is not None:
                parts[f"actions.{i}.url"] = _parse(text_env, f"actions.{i}.url", action.url)
    return CompiledTemplate(source, html, parts, limits)


def _derived_text(env: Environment, html: str) -> _Part | None:
    """The plain-text part of an email without one, as a Liquid template of its own, made
    from the HTML once per template version: the HTML with its Liquid still inside goes
    through html_to_text, and each message renders the result. Converting every rendered
    HTML instead cost ~3.5 ms a message (a 28 KB MJML email), the largest step of building
    one. Its links are the template's own URLs (the HTML part carries the tracked ones).
    None when the conversion splits a Liquid tag (the channel then derives the text from
    each rendered HTML, as before)."""
    # Liquid markup is swapped for plain tokens first: the HTML parser must not read it
    # (`href="{{ url | default: "#" }}"` ends the attribute at the inner quote).
    tokens: dict[str, str] = {}

    def protect(match: re.Match[str]) -> str:
        markup = match.group(0)
        token = tokens.get(markup)
        if token is None:
            token = tokens[markup] = f"nfliquid{len(tokens)}x"
        return token

    converted = html_to_text(_LIQUID_MARKUP.sub(protect, html))
    if tokens:
        back = {token: markup for markup, token in tokens.items()}
        converted = _LIQUID_TOKEN.sub(lambda m: back.get(m.group(0), m.group(0)), converted)
    try:
        return _Part("text", env.from_string(converted), html, derived=True)
    except LiquidError:
        return None


_LIQUID_MARKUP = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_LIQUID_TOKEN = re.compile(r"nfliquid\d+x")


def _text_of(compiled: CompiledTemplate, out: Mapping[str, str]) -> str | None:
    part = compiled.parts.get("text")
    if part is None:
        return None
    if part.derived:
        return tidy_text(out["text"])
    return out["text"]


def _render_part(part: _Part, context: Mapping[str, Any]) -> str:
    try:
        return str(part.template.render(context))
    except LiquidError as exc:
        raise _error(exc, part) from None
    except RecursionError:
        raise TemplateError("the context is nested too deeply", part.name) from None
    except Exception as exc:  # a filter that failed on a value (a bad date, a bad amount…)
        raise TemplateError(f"{type(exc).__name__}: {exc}", part.name) from None


def _render_parts(parts: Mapping[str, _Part], context: Mapping[str, Any], budget_ms: float | None) -> dict[str, str]:
    budget = _render_budget_ms if budget_ms is None else budget_ms
    outer = (_BUDGET.deadline, _BUDGET.budget_ms, _BUDGET.next_pause)
    now = _monotonic()
    _BUDGET.deadline, _BUDGET.budget_ms = now + budget / 1000.0, budget
    _BUDGET.next_pause = min(now + _FIRST_PAUSE_S, _BUDGET.deadline)
    try:
        return {name: _render_part(part, context) for name, part in parts.items()}
    finally:
        _BUDGET.deadline, _BUDGET.budget_ms, _BUDGET.next_pause = outer


def render(
    compiled: CompiledTemplate, context: Mapping[str, Any], *, budget_ms: float | None = None
) -> RenderedEmail | RenderedPush:
    """Render every part for one person, or raise TemplateError: never a partial result.

    Within `budget_ms` of wall-clock time for all parts (the process's render budget by
    default, `set_render_budget`) and the value ceiling of `compiled.limits`; past either
    the TemplateError says which. The budget stops a render from running on, but only a
    render in a thread of its own leaves the event loop free meanwhile: callers on a loop
    run it in a worker thread (web/templates_api.py, the email channel)."""
    out = _render_parts(compiled.parts, context, budget_ms)
    src = compiled.source
    if src.channel == EMAIL:
        preheader = out.get("preheader")
        return RenderedEmail(
            subject=" ".join(out["subject"].split()),  # a header: one line
            preheader=" ".join(preheader.split()) if preheader is not None else None,
            html=inject_preheader(out["body"], preheader and " ".join(preheader.split()), TEMPLATE_PREHEADER),
            preheader_in_html=True,
            text=_text_of(compiled, out),
            topic=src.topic,
        )

    def optional(name: str) -> str | None:
        # A part that renders empty ("{% if %}" with nothing to show) is left out, not sent blank.
        value = out[name].strip() if name in out else ""
        return value or None

    actions = []
    for i, action in enumerate(src.actions):
        item = {"action": action.action, "title": out[f"actions.{i}.title"].strip()}
        url = optional(f"actions.{i}.url")
        if url:
            item["url"] = url
        actions.append(item)
    return RenderedPush(
        title=out["title"].strip(),
        body=out["body"].strip(),
        image=optional("image"),
        url=optional("url"),
        data={key: out[f"data.{key}"] for key in src.data},
        icon=optional("icon"),
        actions=tuple(actions),
        ttl_s=src.ttl if src.ttl is not None else DEFAULT_PUSH_TTL_S,
        urgency=src.urgency,
        collapse_key=optional("collapse_key"),
    )


@dataclass(frozen=True)
class TextParts:
    """Named Liquid texts without a stored template (a webhook step's URL and the strings of
    its body), parsed once with the text environment (no HTML escaping) and rendered together
    within the render budget and the limits, as a template's parts are."""

    parts: dict[str, _Part] = field(repr=False)

    def render(self, context: Mapping[str, Any], *, budget_ms: float | None = None) -> dict[str, str]:
        """Every text rendered, or TemplateError naming the part, line and column."""
        return _render_parts(self.parts, context, budget_ms)


def compile_texts(texts: Mapping[str, str], limits: Limits = DEFAULT_LIMITS) -> TextParts:
    """Parse each text once; TemplateError names the first that does not parse (its name is
    the part, as the author knows it: `webhook.url`, `webhook.body.items.0.name`)."""
    env = environment(limits, html=False)
    return TextParts({name: _parse(env, name, text) for name, text in texts.items()})


def render_source(
    source: TemplateSource | Mapping[str, Any], context: Mapping[str, Any]
) -> RenderedEmail | RenderedPush:
    """Compile and render at once (previews, tests); senders render a cached compile."""
    return render(compile_template(source), context)
