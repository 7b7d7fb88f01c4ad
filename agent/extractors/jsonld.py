"""A JSON-LD document read as a graph of nodes, the way RO-Crates in the wild are written.

Not a JSON-LD processor: that would need the contexts, which are URLs, and the agent fetches
nothing. What an RO-Crate reader needs is less, and this gives it: nodes found wherever they are
(in ``@graph``, or nested inline, with or without ``@id``), in any order; references resolved;
property names and types whether compacted ("name"), prefixed ("schema:name") or full IRIs
("http://schema.org/name"); values plain or as ``{"@value": ...}``. The first node with an @id wins;
later copies are counted (``duplicates``), not merged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_SCHEMA_PREFIXES = ("http://schema.org/", "https://schema.org/", "schema:", "sdo:")
#: Nodes nested deeper than this are not looked for (a crate is a flat graph; depth is an attack).
MAX_DEPTH = 12

Node = dict[str, Any]


def local_name(term: str) -> str:
    """``name`` for "name", "schema:name" and "http://schema.org/name"."""
    for prefix in _SCHEMA_PREFIXES:
        if term.startswith(prefix):
            return term[len(prefix) :]
    return term


class Graph:
    """The nodes of a JSON-LD document, by @id; properties by their schema.org local names."""

    def __init__(self, document: Any) -> None:
        self.nodes: dict[str, Node] = {}
        self.duplicates = 0
        self._blank = 0
        self.context = document.get("@context") if isinstance(document, dict) else None
        top = document.get("@graph", document) if isinstance(document, dict) else document
        roots = list(_roots(top))
        # The graph's own nodes first, then what is nested in them: which comes first in the
        # file must not decide which copy of a node counts.
        for node in roots:
            self._index(node, top_level=True)
        for node in roots:
            self._walk(node, 1)

    def _index(self, node: Node, *, top_level: bool) -> None:
        node_id = node.get("@id")
        if not isinstance(node_id, str):
            # A blank node (an inline publisher without @id) is a node all the same.
            self._blank += 1
            node_id = f"_:inline-{self._blank}"
        if node_id not in self.nodes:
            # Nested, {"@id", "@type"} alone is a reference, not the node.
            if top_level or set(node) - {"@id", "@type"}:
                self.nodes[node_id] = node
        elif top_level:
            self.duplicates += 1  # the first copy counts; later ones are counted, not merged

    def _walk(self, node: Node, depth: int) -> None:
        """Index every node nested in ``node`` (an inline publisher, an author), to a limit."""
        if depth > MAX_DEPTH:
            return
        for key, value in node.items():
            if not key.startswith("@"):
                for nested in _node_values(value):
                    self._index(nested, top_level=False)
                    self._walk(nested, depth + 1)

    def get(self, node_id: str) -> Node:
        return self.nodes.get(node_id, {})

    def resolve(self, ref: Any) -> Node:
        """The node a reference names, or the inline node itself; {} for a literal or a dangling id."""
        if isinstance(ref, dict):
            node_id = ref.get("@id")
            if isinstance(node_id, str) and set(ref) <= {"@id", "@type"}:
                return self.nodes.get(node_id, ref if "@type" in ref else {})
            return ref if "@value" not in ref else {}
        if isinstance(ref, str):
            return self.nodes.get(ref, {})
        return {}

    def by_type(self, type_name: str) -> Iterator[tuple[str, Node]]:
        for node_id, node in self.nodes.items():
            if type_name in types(node):
                yield node_id, node


def raw(node: Node, name: str) -> Any:
    """A property's value as written, by its local name however the key is written."""
    value = node.get(name)
    if value is None:
        value = next((v for k, v in node.items() if not k.startswith("@") and local_name(k) == name), None)
    return value


def prop(node: Node, name: str) -> Any:
    """A property's single value by its local name; ``{"@value": x}`` and ``[x]`` read as x."""
    return literal(raw(node, name))


def literal(value: Any) -> Any:
    """``{"@value": x}`` as x, a one-element list as its element; anything else as it is."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, dict) and "@value" in value:
        return value["@value"]
    return value


def types(node: Node) -> set[str]:
    value = node.get("@type", [])
    found = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return {local_name(v) for v in found if isinstance(v, str)}


def refs(value: Any) -> list[Any]:
    """A property's values as a list (one value or many, as JSON-LD allows both)."""
    return value if isinstance(value, list) else [] if value is None else [value]


def context_urls(context: Any) -> list[str]:
    """The remote contexts a document names: a string, or the strings of a list."""
    return [c for c in refs(context) if isinstance(c, str)]


def _roots(top: Any) -> Iterator[Node]:
    if isinstance(top, dict):
        yield top
    elif isinstance(top, list):
        yield from (n for n in top if isinstance(n, dict))


def _node_values(value: Any) -> Iterator[Node]:
    for item in refs(value):
        if isinstance(item, dict) and "@value" not in item and len(item) > 1:
            yield item
