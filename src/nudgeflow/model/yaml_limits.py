"""YAML from a request body, with its aliases held to a budget.

YAML anchors and aliases let a few hundred bytes stand for billions of values ("billion
laughs": ten aliases of ten aliases of ten …). PyYAML builds them as shared references,
cheaply, but everything that then walks the document (the line index, the checks, the NUL
scan, JSON encoding) visits every repetition: a 313-byte journey sent to POST
/api/journeys/validate by a viewer held the server's event loop for 5 seconds, and each
further 50 bytes (one more level of ten aliases) ten times as long. So a document is
composed first, its size with every alias expanded is counted (each distinct node once,
memoized), and one whose aliases add more than ALIAS_NODES nodes to what is written, or
that refers to itself, is refused before it is constructed.
"""

from __future__ import annotations

from typing import Any

import yaml

from nudgeflow.errors import ModelError

ALIAS_NODES = 100_000  # nodes aliases may add beyond those written (merge keys, shared blocks)


class AliasBudgetError(ModelError, yaml.YAMLError):
    """A document whose aliases expand past the budget, or that contains itself (a
    yaml.YAMLError too: every reader that catches those catches it)."""


def check_aliases(node: yaml.Node) -> None:
    """Raise AliasBudgetError when the document, aliases expanded, has more than
    ALIAS_NODES nodes beyond its distinct ones."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(current: yaml.Node) -> int:
        key = id(current)
        known = sizes.get(key)
        if known is not None:
            return known
        if key in open_nodes:
            raise AliasBudgetError("an alias refers to a node that contains it (a recursive anchor)")
        open_nodes.add(key)
        total = 1
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                total += size(key_node) + size(value_node)
        elif isinstance(current, yaml.SequenceNode):
            for item in current.value:
                total += size(item)
        open_nodes.discard(key)
        sizes[key] = total
        return total

    expanded = size(node)
    if expanded > len(sizes) + ALIAS_NODES:
        raise AliasBudgetError(
            f"its aliases expand to {expanded:,} values from {len(sizes):,} written; "
            f"at most {ALIAS_NODES:,} more than written are accepted"
        )


def safe_load(text: str) -> Any:
    """yaml.safe_load of one document, refusing one whose aliases expand too far
    (AliasBudgetError, a yaml.YAMLError)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_aliases(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()
