"""The docs show only what exists: every command they show, every journey and template
snippet they hold, checked with the project's own tools.

What is checked:

- Commands. Every `nudgeflow …` command in README.md, docs/*.md and examples/README.md —
  in code blocks (at the start of a line, or after `&&`, `|`, `;`, `$(`, environment
  assignments or a path such as `.venv/bin/`) and in inline code that starts with
  `nudgeflow ` — is walked down the real CLI: each word must be a command of the group
  before it (`pause|resume|archive` stands for three commands), the command found must
  answer `--help` through typer's CliRunner, and each option shown after it (`--name`,
  `-x`) must be one of that command's options.
- Journey snippets. Every ```yaml block in docs/*.md that looks like a journey (a whole
  journey, or a part of one: a `trigger:`, `entry:`, `exit:`, `goal:`, `priority` /
  `holdout`, property filters under `where:`, a mapping of steps, or a list of
  conditions) is placed into a minimal journey around it and checked with
  `nudgeflow.model.journey_checks.check_journey`: it must have no error.
- Template snippets. Every ```yaml block that is a template (it has `channel:`,
  `subject:` or `title:` and a `body:`) must compile with
  `nudgeflow.content.templates.compile_template` and render with the sample context
  (`nudgeflow.content.sample`) that `templates render --sample` uses; every ```liquid
  or ```mjml block must do the same as an email body.
- Policies snippets. Every ```yaml block whose keys are all top-level keys of a send
  policies document (`frequency_caps:`, `quiet_hours:`, `collision:`…) must pass
  `nudgeflow.model.policy_checks.check_policies`.
- Segment snippets. Every ```yaml block that is a segment (its `when:`, with `id`, `name`,
  `description` or nothing else) is checked with
  `nudgeflow.model.segment_checks.check_segment`: it must have no error.
- Every ```yaml block in docs/ must be one of these (or empty), so a new snippet cannot
  slip past unchecked.
- Routes. Every `METHOD /path` the pages name (`{placeholders}` and `<placeholders>`
  match any segment), and every `curl` to the server (localhost, 127.0.0.1 or `$URL`) in
  their code blocks, is answered by the app's router with that method. A route of another
  server is written with its origin (`POST {its origin}/subscriptions`) and not checked.
- Commands in backticks in src/ (docstrings, comments, messages) exist too.
- Every `NUDGEFLOW_*` variable the pages name is read by the server (settings.ENV_VARS), by
  a command's option, or by the test suite (a knob of a test run by hand, such as the fault
  run's scale); every relative link points at a file in the repository.

The convention for a snippet that is partial or wrong on purpose (it shows two
alternatives for one key, or an error): put an HTML comment on the line just before its
opening fence,

    <!-- not-checked: the reason -->

It is invisible in the rendered page; use it sparingly. A command in a block or line so
marked is not checked either.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.main import get_command
from typer.testing import CliRunner

from nudgeflow.cli import app
from nudgeflow.content.sample import sample_context
from nudgeflow.content.templates import TemplateError, compile_template, parse_source, render
from nudgeflow.model.journey_checks import ERROR, check_journey, load_text
from nudgeflow.model.policies import Policies
from nudgeflow.model.policy_checks import check_policies
from nudgeflow.model.segment_checks import check_segment

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / "README.md"]
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))
NOT_CHECKED = re.compile(r"<!--\s*not-checked:\s*\S.*-->")


@dataclass
class Block:
    path: Path
    line: int  # of the first line inside the fence
    lang: str
    text: str
    not_checked: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def code_blocks(path: Path) -> Iterator[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(```+)\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m.group(1)), m.group(2), m.group(3).lower()
        marked = i > 0 and bool(NOT_CHECKED.search(lines[i - 1]))
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(rf"^\s*{fence}\s*$", lines[j]):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        yield Block(path, i + 2, lang, "\n".join(body) + "\n", marked)
        i = j + 1


def logical_lines(block: Block) -> Iterator[tuple[int, str]]:
    """A block's lines, those continued with `\\` joined, each numbered by its first line."""
    line_no, pending, first = block.line, "", block.line
    for raw in block.text.splitlines():
        if not pending:
            first = line_no
        pending += raw
        line_no += 1
        if raw.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        yield first, pending
        pending = ""
    if pending:
        yield first, pending


# --- commands ---------------------------------------------------------------------------------

SHELL_CMD = re.compile(
    r"(?:^|&&|\|\||[|;]|\$\()\s*(?:\$\s+)?(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:[\w.~-]*/)*nudgeflow[ \t]+(?P<rest>[^\n]*)"
)
INLINE_CODE = re.compile(r"(?<!`)`([^`]+?)`(?!`)")  # may wrap onto the next line


@dataclass(frozen=True)
class Shown:
    where: str
    words: tuple[str, ...]  # what follows `nudgeflow`
    text: str


def _words(rest: str) -> tuple[str, ...]:
    rest = re.split(r"\s#\s|\s#$|\s+(?:&&|\|\||;|>|<|\|)\s", " " + rest + " ")[0]
    rest = re.sub(r"(?<=\S)…|…(?=\S)", "x", rest)  # ws_… is a value; a lone … stands for "any subcommand"
    try:
        words = shlex.split(rest)
    except ValueError:
        words = rest.split()
    return tuple(w.strip("[]()") for w in words if w.strip("[]()"))


def shown_commands() -> list[Shown]:
    found: list[Shown] = []
    for page in PAGES:
        rel = page.relative_to(ROOT)
        text = page.read_text(encoding="utf-8")
        lines = text.splitlines()
        in_block: set[int] = set()
        for block in code_blocks(page):
            n = block.text.count("\n")
            in_block.update(range(block.line, block.line + n))
            if block.not_checked:
                continue
            for first, logical in logical_lines(block):
                for m in SHELL_CMD.finditer(logical):
                    found.append(Shown(f"{rel}:{first}", _words(m.group("rest")), m.group(0).strip()))
        # Inline code outside the blocks; a span may wrap onto the next line.
        prose = "\n".join(
            "" if number in in_block or (number > 1 and NOT_CHECKED.search(lines[number - 2])) else line
            for number, line in enumerate(lines, start=1)
        )
        for m in INLINE_CODE.finditer(prose):
            code = " ".join(m.group(1).split())
            mm = re.match(r"^(?:[\w.~-]*/)*nudgeflow[ \t]+(.*)$", code)
            if mm:
                number = prose.count("\n", 0, m.start()) + 1
                found.append(Shown(f"{rel}:{number}", _words(mm.group(1)), code))
    return found


def _expand(words: tuple[str, ...]) -> list[tuple[str, ...]]:
    """`pause|resume|archive x` -> three commands."""
    out: list[tuple[str, ...]] = [()]
    for w in words:
        if "|" in w and not w.startswith("-") and all(re.fullmatch(r"[a-z][a-z0-9-]*", a) for a in w.split("|")):
            out = [(*o, a) for o in out for a in w.split("|")]
        else:
            out = [(*o, w) for o in out]
    return out


ROOT_COMMAND = get_command(app)


def _resolve(words: tuple[str, ...]) -> tuple[list[str], Any, list[str], str | None]:
    """(the command path, its click command, the words after it, a problem or None)."""
    cmd: Any = ROOT_COMMAND  # typer's own click: a group is what has .commands
    path: list[str] = []
    rest = list(words)
    while rest and hasattr(cmd, "commands"):
        word = rest[0]
        if word.startswith("-") or word in ("…", "..."):
            break
        sub = cmd.commands.get(word)
        if sub is None:
            names = ", ".join(sorted(cmd.commands))
            return path, cmd, rest, f"no command {' '.join(['nudgeflow', *path, word])!r} (there are: {names})"
        path.append(word)
        cmd = sub
        rest.pop(0)
    return path, cmd, rest, None


def _options_of(cmd: Any) -> set[str]:
    names = {"--help"}
    for param in cmd.params:
        names.update(getattr(param, "opts", []))
        names.update(getattr(param, "secondary_opts", []))
    return names


def test_the_docs_show_commands() -> None:
    shown = shown_commands()
    assert len(shown) > 40, "the command extraction found too little: it is broken"


_RUNNER = CliRunner()
_HELPED: dict[tuple[str, ...], str | None] = {}


def command_problem(words: tuple[str, ...]) -> str | None:
    """What is wrong with `nudgeflow <words>` as the docs show it, or None."""
    path, cmd, rest, problem = _resolve(words)
    if problem is not None:
        return problem
    key = tuple(path)
    if key not in _HELPED:  # one --help per command, however often the docs show it
        result = _RUNNER.invoke(app, [*path, "--help"])
        _HELPED[key] = (
            None
            if result.exit_code == 0
            else (f"`{' '.join(['nudgeflow', *path, '--help'])}` exited {result.exit_code}: {result.output[-300:]}")
        )
    if _HELPED[key] is not None:
        return _HELPED[key]
    known = _options_of(cmd)
    shown = [w.split("=")[0] for w in rest if w.startswith("--") or re.fullmatch(r"-[A-Za-z]", w)]
    unknown = [w for w in shown if w not in known]
    if unknown:
        return f"`nudgeflow {' '.join(path)}` has no option {', '.join(unknown)}"
    return None


def test_every_command_shown_exists() -> None:
    problems: list[str] = []
    for item in shown_commands():
        for words in _expand(item.words):
            problem = command_problem(words)
            if problem:
                problems.append(f"{item.where}: {item.text}: {problem}")
    assert not problems, "commands in the docs that do not exist:\n" + "\n".join(problems)


# --- journey snippets ----------------------------------------------------------------------

JOURNEY_KEYS = {
    "id",
    "name",
    "description",
    "trigger",
    "entry",
    "exit",
    "goal",
    "priority",
    "holdout",
    "control_group",
    "steps",
    "start",
}
STEP_TYPES = {"send", "wait", "wait_for_event", "branch", "split", "update_profile", "exit"}
CONDITION_KEYS = {"trait", "event", "message", "any", "all", "not"}
TEMPLATE_KEYS = {"channel", "subject", "title", "body"}
POLICY_KEYS = {info.alias or name for name, info in Policies.model_fields.items()}


def _targets(value: Any) -> Iterator[str]:
    """Every step id a fragment points to (next, on_event, on_timeout, cases, paths…)."""
    if isinstance(value, dict):
        for key, v in value.items():
            if key in ("next", "on_event", "on_timeout", "default") and isinstance(v, str):
                yield v
            else:
                yield from _targets(v)
    elif isinstance(value, list):
        for v in value:
            yield from _targets(v)


def _messages(value: Any) -> Iterator[str]:
    """The send steps that message conditions in a fragment name."""
    if isinstance(value, dict):
        if isinstance(value.get("message"), str) and "status" in value:
            yield value["message"]
        for v in value.values():
            yield from _messages(v)
    elif isinstance(value, list):
        for v in value:
            yield from _messages(v)


def _base() -> dict[str, Any]:
    return {"id": "doc-snippet", "name": "Doc snippet", "trigger": {"type": "event", "event": "Product Viewed"}}


def as_journey(doc: Any) -> dict[str, Any] | None:
    """The snippet placed into a minimal journey, or None when it is no journey part."""
    if isinstance(doc, list) and doc and all(isinstance(c, dict) and set(c) & CONDITION_KEYS for c in doc):
        steps: dict[str, Any] = {}
        referenced = {c.get("message") for c in doc if isinstance(c, dict) and "message" in c}
        for name in sorted(r for r in referenced if isinstance(r, str)):
            steps[name] = {"type": "send", "channel": "email", "template": "doc-snippet", "next": "check"}
        steps["check"] = {"type": "branch", "cases": [{"when": doc, "next": "done"}], "default": None}
        steps["done"] = {"type": "exit"}
        return {**_base(), "steps": steps}
    if not isinstance(doc, dict) or not doc:
        return None
    keys = set(doc)
    if keys <= JOURNEY_KEYS:
        journey = {**_base(), **doc}
        journey.setdefault("steps", {"done": {"type": "exit"}})
        return journey
    if keys == {"where"}:
        return {
            **_base(),
            "trigger": {"type": "event", "event": "Product Viewed", "where": doc["where"]},
            "steps": {"done": {"type": "exit"}},
        }
    if all(isinstance(s, dict) and s.get("type") in STEP_TYPES for s in doc.values()):
        # messages the fragment's conditions ask about are sent first, then the fragment runs
        steps = {}
        first = next(iter(doc))
        for name in [m for m in dict.fromkeys(_messages(doc)) if m not in doc]:
            steps[name] = {"type": "send", "channel": "email", "template": "doc-snippet", "next": first}
        steps.update(doc)
        for target in _targets(doc):
            steps.setdefault(target, {"type": "exit"})
        return {**_base(), "steps": steps}
    return None


SEGMENT_KEYS = {"$schema", "id", "name", "description", "when"}


def as_segment(doc: Any) -> dict[str, Any] | None:
    """A segment snippet (a whole segment, or a `when:` alone) made whole, or None."""
    if isinstance(doc, dict) and "when" in doc and set(doc) <= SEGMENT_KEYS:
        return {"id": "doc-snippet", "name": "Doc snippet", **doc}
    return None


def yaml_blocks() -> list[Block]:
    return [b for page in DOC_PAGES for b in code_blocks(page) if b.lang in ("yaml", "yml")]


def _is_template(doc: Any) -> bool:
    return isinstance(doc, dict) and "body" in doc and bool(set(doc) & (TEMPLATE_KEYS - {"body"}))


def _is_policies(doc: Any) -> bool:
    return isinstance(doc, dict) and bool(doc) and set(doc) <= POLICY_KEYS


def test_every_yaml_snippet_is_checked() -> None:
    unknown = []
    for block in yaml_blocks():
        if block.not_checked:
            continue
        docs = load_text(block.text)
        for _, doc in docs:
            if not (
                _is_template(doc) or _is_policies(doc) or as_journey(doc) is not None or as_segment(doc) is not None
            ):
                unknown.append(
                    f"{block.where}: neither a journey part, a segment, a template nor send policies; "
                    "mark it <!-- not-checked: why --> if it is none of them on purpose"
                )
    assert not unknown, "\n".join(unknown)


def test_journey_snippets_pass_the_journey_checks() -> None:
    problems: list[str] = []
    checked = 0
    for block in yaml_blocks():
        if block.not_checked:
            continue
        for _, doc in load_text(block.text):
            # `control_group` is a key of both: alone, it is the policies' (checked below).
            if _is_template(doc) or _is_policies(doc):
                continue
            journey = as_journey(doc)
            if journey is None:
                continue
            checked += 1
            _, found = check_journey(journey)
            problems += [f"{block.where}: {p.path}: {p.message}" for p in found if p.severity == ERROR]
    assert checked >= 20, f"only {checked} journey snippets found: the extraction is broken"
    assert not problems, "journey snippets that fail the checks:\n" + "\n".join(problems)


def test_segment_snippets_pass_the_segment_checks() -> None:
    problems: list[str] = []
    checked = 0
    for block in yaml_blocks():
        if block.not_checked:
            continue
        for _, doc in load_text(block.text):
            segment = as_segment(doc)
            if segment is None:
                continue
            checked += 1
            _, found = check_segment(segment)
            problems += [f"{block.where}: {p.path}: {p.message}" for p in found if p.severity == ERROR]
    assert checked >= 8, f"only {checked} segment snippets found: the extraction is broken"
    assert not problems, "segment snippets that fail the checks:\n" + "\n".join(problems)


def test_policies_snippets_pass_the_policy_checks() -> None:
    problems: list[str] = []
    checked = 0
    for block in yaml_blocks():
        if block.not_checked:
            continue
        for _, doc in load_text(block.text):
            if _is_policies(doc):
                checked += 1
                _, found = check_policies(doc)
                problems += [f"{block.where}: {p.path}: {p.message}" for p in found if p.severity == ERROR]
    assert checked >= 1, "no policies snippet found: the extraction is broken"
    assert not problems, "policies snippets that fail the checks:\n" + "\n".join(problems)


# --- template snippets ----------------------------------------------------------------------


def _check_template(source: dict[str, Any], where: str) -> str | None:
    try:
        compiled = compile_template(parse_source(source))
        context = sample_context()
        # the sample has trial_days_left (3) but not the trait it comes from
        context["profile"].setdefault("trial_ends_at", "2025-03-17")
        render(compiled, context)
    except TemplateError as exc:
        return f"{where}: {exc}"
    return None


def test_template_snippets_compile_and_render() -> None:
    problems: list[str] = []
    checked = 0
    for page in DOC_PAGES:
        for block in code_blocks(page):
            if block.not_checked:
                continue
            if block.lang in ("yaml", "yml"):
                for _, doc in load_text(block.text):
                    if _is_template(doc):
                        checked += 1
                        problems.append(_check_template(dict(doc), block.where) or "")
            elif block.lang in ("liquid", "mjml"):
                checked += 1
                problems.append(
                    _check_template({"channel": "email", "subject": "doc", "body": block.text}, block.where) or ""
                )
    problems = [p for p in problems if p]
    assert checked >= 3, f"only {checked} template snippets found: the extraction is broken"
    assert not problems, "template snippets that fail:\n" + "\n".join(problems)


# --- the checker itself catches what it must ----------------------------------------------------


def test_a_wrong_command_is_caught() -> None:
    assert command_problem(("journeys", "frobnicate")) is not None
    assert command_problem(("stats",)) is not None
    assert command_problem(("journeys", "validate", "x.yaml")) is None
    assert command_problem(("simulate", "-j", "j/", "-e", "-", "--json")) is None
    assert "--no-such-option" in (command_problem(("serve", "--no-such-option", "x")) or "")
    assert "-q" in (command_problem(("journeys", "list", "-q")) or "")
    assert [w for w in _expand(("journeys", "pause|resume", "x"))] == [
        ("journeys", "pause", "x"),
        ("journeys", "resume", "x"),
    ]


def test_a_wrong_snippet_is_caught() -> None:
    assert _is_policies({"collision": {"window": "10m"}}) and not _is_policies({"steps": {}})
    assert check_policies({"collision": {"windw": "10m"}})[0] is None
    _, problems = check_journey(as_journey({"trigger": {"type": "event", "event": "X", "occurrences": {"count": 0}}}))
    assert any(p.severity == ERROR for p in problems)
    assert _check_template({"channel": "email", "subject": "s", "body": "{% if x %}"}, "here") is not None
    assert _check_template({"channel": "email", "subject": "s", "body": "{{ profile.nickname }}"}, "here") is not None


# --- links ------------------------------------------------------------------------------------

MD_LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_relative_links_stay_inside_the_repository() -> None:
    """A page links only to files that are in the repository (no ../shared/…)."""
    problems = []
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
            for m in MD_LINK.finditer(line):
                target = m.group(1).split("#")[0]
                if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target):
                    continue
                resolved = (page.parent / target).resolve()
                if not resolved.is_relative_to(ROOT) or not resolved.exists():
                    problems.append(f"{page.relative_to(ROOT)}:{number}: {target}")
    assert not problems, "links to files that are not in the repository:\n" + "\n".join(problems)


# --- environment variables ----------------------------------------------------------------------


def _cli_envvars(cmd: Any) -> set[str]:
    names: set[str] = set()
    for param in getattr(cmd, "params", []):
        envvar = getattr(param, "envvar", None)
        names.update([envvar] if isinstance(envvar, str) else list(envvar or []))
    for sub in getattr(cmd, "commands", {}).values():
        names |= _cli_envvars(sub)
    return names


# How the tests read a variable of theirs: os.environ.get("X"), os.environ["X"], or the fault
# run's env_int("X") / env_float("X").
_TEST_READS = re.compile(r'(?:environ\.get\(|environ\[|env_int\(|env_float\()\s*"(NUDGEFLOW_[A-Z0-9_]+)"')


def _test_envvars() -> set[str]:
    """The NUDGEFLOW_* variables the test suite reads from the environment."""
    return {name for path in (ROOT / "tests").rglob("*.py") for name in _TEST_READS.findall(path.read_text())}


OWN_CODE = {"python", "py", "js", "javascript", "ts", "typescript", "node", "html", "ruby", "go", "php"}


def test_every_environment_variable_shown_is_read() -> None:
    """A NUDGEFLOW_* variable in the docs is one the server reads (settings.ENV_VARS), one a
    command's option reads, or one the test suite reads."""
    from nudgeflow.settings import ENV_VARS

    tests_read = _test_envvars()
    assert {"NUDGEFLOW_TEST_POSTGRES_URL", "NUDGEFLOW_FAULT_EVENTS"} <= tests_read, "the test scan is broken"
    known = {v.name for v in ENV_VARS} | _cli_envvars(ROOT_COMMAND) | tests_read
    assert "NUDGEFLOW_DATABASE_URL" in known and "NUDGEFLOW_WORKSPACE" in known
    problems = []
    for page in PAGES:
        # Code in a programming language is the reader's own (a backend reading its secret
        # from NUDGEFLOW_IDENTITY_SECRET): only prose, tables and shell are about ours.
        theirs = {
            n for b in code_blocks(page) if b.lang in OWN_CODE for n in range(b.line, b.line + b.text.count("\n"))
        }
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
            if number in theirs:
                continue
            for name in re.findall(r"NUDGEFLOW_[A-Z0-9_]*[A-Z0-9]", line):
                if name not in known:
                    problems.append(f"{page.relative_to(ROOT)}:{number}: {name}")
    assert not problems, "environment variables in the docs that nothing reads:\n" + "\n".join(problems)


# --- HTTP routes ------------------------------------------------------------------------------

ROUTE = re.compile(r"\b((?:GET|POST|PUT|DELETE|PATCH)(?:/(?:GET|POST|PUT|DELETE|PATCH))*)\s+`?(/[^\s`?|,)]*)")
SERVER = re.compile(r"^(?:https?://(?:localhost|127\.0\.0\.1)(?::\d+)?|\$\{?URL\}?)(/[^?#]*)")


def shown_routes() -> list[tuple[str, str, str]]:
    """(where, method, path) for every `METHOD /path` in the pages, and every curl to the
    server in their code blocks (method from -X, else POST with a body, else GET)."""
    found: list[tuple[str, str, str]] = []
    for page in PAGES:
        rel = page.relative_to(ROOT)
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
            for m in ROUTE.finditer(line):
                for method in m.group(1).split("/"):
                    found.append((f"{rel}:{number}", method, m.group(2)))
        for block in code_blocks(page):
            if block.not_checked:
                continue
            for first, logical in logical_lines(block):
                if not re.match(r"^\s*curl\s", logical):
                    continue
                try:
                    words = shlex.split(logical)
                except ValueError:
                    words = logical.split()
                method = (
                    words[words.index("-X") + 1]
                    if "-X" in words
                    else (
                        "POST"
                        if any(w in words for w in ("-d", "--data", "--data-binary", "--data-raw", "-F"))
                        else "GET"
                    )
                )
                for word in words:
                    m = SERVER.match(word)
                    if m:
                        found.append((f"{rel}:{first}", method, m.group(1)))
    return found


def test_every_route_shown_exists(tmp_path: Path) -> None:
    from starlette.routing import Match

    from nudgeflow.settings import Settings
    from nudgeflow.web.app import create_app

    web = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'routes.db'}"))

    def served(method: str, path: str) -> bool:
        scope = {"type": "http", "method": method, "path": path, "root_path": "", "query_string": b"", "headers": []}
        return any(route.matches(scope)[0] == Match.FULL for route in web.router.routes)

    assert not served("GET", "/api/no-such-route") and served("GET", "/healthz")
    routes = shown_routes()
    assert len(routes) > 40, "the route extraction found too little: it is broken"
    problems = []
    for where, method, shown in routes:
        path = re.sub(r"\{[^}]*\}|<[^>]*>", "x1", shown).replace("…", "x").rstrip(".:")
        if not served(method, path):
            problems.append(f"{where}: {method} {shown}")
    assert not problems, "routes in the docs that the server does not answer:\n" + "\n".join(problems)


def test_commands_named_in_the_code_exist() -> None:
    """Docstrings, comments and messages name commands too (one named `nudgeflow stats`,
    which never existed): each `nudgeflow …` in backticks in src/ must exist as well."""
    problems, seen = [], 0
    for path in sorted((ROOT / "src" / "nudgeflow").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"(?<!`)`(?:[\w.~-]*/)*nudgeflow[ \t]+([^`\n]+)`(?!`)", text):
            seen += 1
            for words in _expand(_words(m.group(1))):
                problem = command_problem(words)
                if problem:
                    line = text.count("\n", 0, m.start()) + 1
                    problems.append(f"{path.relative_to(ROOT)}:{line}: {m.group(0)}: {problem}")
    assert seen > 10, "the extraction found too little: it is broken"
    assert not problems, "commands named in the code that do not exist:\n" + "\n".join(problems)
