"""Checking a policies document (policies.yaml): every problem, in sentences, with its line.

The same words as the journey checks (model/journey_checks.py: "missing required key",
"unknown key 'limt' (did you mean 'limit'?)", "'1 day' is not a duration…"), because the
same checker walks the policies model. What the model's own validators say ("cap 'daily'
needs exactly one of `window` (rolling) and `calendar` (day|week)") comes through as is.
Nothing here reads a database: the CLI checks files, the admin API a request's body.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nudgeflow.model.journey_checks import ERROR, DocumentError, FileProblem, Problem, check_document, load_documents
from nudgeflow.model.policies import Policies

NOUN = "send policies"
SUFFIXES = (".yaml", ".yml", ".json")
# What the policies' patterns mean here (the journeys' words would say "step id").
PATTERN_HINTS = {
    r"^[A-Za-z0-9_.-]+$": "is not a valid rule id (letters, digits, '_', '.' and '-' only)",
    r"^[a-z][a-z0-9_]*$": "is not a channel name (lowercase letters, digits and '_', starting with a letter)",
}


def check_policies(doc: Any) -> tuple[Policies | None, list[Problem]]:
    """Validate one policies document: (the Policies if it has no errors, every problem)."""
    return check_document(doc, Policies, NOUN, PATTERN_HINTS)


def check_policies_documents(documents: list[tuple[int, Any]]) -> tuple[Policies | None, list[Problem]]:
    """The one document of a file or request body; none, or several, is a problem too.
    An empty one (a file with only comments) means no policies at all."""
    if not documents:
        return check_policies({})
    if len(documents) > 1:
        return None, [Problem("", f"one policies document is expected, not {len(documents)} (`---` apart)")]
    return check_policies(documents[0][1])


def check_policies_file(path: str | Path) -> tuple[Policies | None, list[FileProblem]]:
    """Read and check a policies file: (the Policies if valid, its problems as file:line: path: message)."""
    path = Path(path)
    name = str(path)
    if path.suffix.lower() not in SUFFIXES:
        return None, [FileProblem(name, "", None, f"not a policies file: {path.name} (use .yaml, .yml or .json)")]
    try:
        documents = load_documents(path)
    except OSError as exc:
        return None, [FileProblem(name, "", None, f"cannot read the file: {exc.strerror or exc}")]
    except UnicodeDecodeError:
        return None, [FileProblem(name, "", None, "the file is not UTF-8 text")]
    except DocumentError as exc:
        return None, [FileProblem(name, "", exc.line, str(exc))]
    policies, problems = check_policies_documents(documents)
    return policies, [FileProblem(name, p.path, p.line, p.message, p.severity) for p in problems]


def is_valid(problems: list[FileProblem] | list[Problem]) -> bool:
    return not any(p.severity == ERROR for p in problems)
