"""Rule globs: matching paths below a watch root, and telling whether two globs can match one path.

Syntax: ``*`` (any characters but ``/``), ``?`` (one character but ``/``), ``[abc]``/``[a-z]``/
``[!a]`` (one character of a set), ``**`` (any characters, ``/`` included) and ``**/`` (zero or more
folders). Matching ignores case: instrument PCs run Windows, where ``.TXT`` and ``.txt`` are one file.

Whether two globs overlap is decided exactly, not guessed: each becomes a small automaton, and the
product automaton is searched for a path both accept. Characters that neither glob names behave
alike, so one stand-in character represents them all.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

#: Stands for every character that no glob under comparison mentions.
_OTHER = "\x00"
_MAX_RANGE = 2048


class GlobError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class _Chars:
    """A set of characters one step of a glob accepts."""

    chars: frozenset[str] = frozenset()
    negated: bool = False  # every character except ``chars``

    def accepts(self, char: str) -> bool:
        return (char in self.chars) != self.negated


_ANY = _Chars(negated=True)
_NOT_SLASH = _Chars(frozenset("/"), negated=True)

# A token is ("one", chars) or ("star",) / ("dstar",) / ("dirs",).
Token = tuple[str, _Chars] | tuple[str]


def tokenize(glob: str) -> list[Token]:
    glob = glob.lower()
    tokens: list[Token] = []
    i = 0
    while i < len(glob):
        char = glob[i]
        if glob.startswith("**/", i):
            tokens.append(("dirs",))
            i += 3
        elif glob.startswith("**", i):
            tokens.append(("dstar",))
            i += 2
        elif char == "*":
            tokens.append(("star",))
            i += 1
        elif char == "?":
            tokens.append(("one", _NOT_SLASH))
            i += 1
        elif char == "[":
            chars, i = _parse_class(glob, i)
            tokens.append(("one", chars))
        else:
            tokens.append(("one", _Chars(frozenset(char))))
            i += 1
    return tokens


def _parse_class(glob: str, start: int) -> tuple[_Chars, int]:
    end = glob.find("]", start + 2 if glob[start + 1 : start + 2] in ("!", "]") else start + 1)
    if end < 0:
        raise GlobError(f"'[' at position {start + 1} is never closed")
    body = glob[start + 1 : end]
    negated = body.startswith("!")
    body = body[1:] if negated else body
    chars: set[str] = set()
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            low, high = ord(body[i]), ord(body[i + 2])
            if high < low:
                raise GlobError(f"range {body[i : i + 3]!r} runs backwards")
            if high - low > _MAX_RANGE:
                raise GlobError(f"range {body[i : i + 3]!r} is too wide")
            chars.update(chr(c) for c in range(low, high + 1))
            i += 3
        else:
            chars.add(body[i])
            i += 1
    if "/" in chars and not negated:
        raise GlobError("a character set cannot match '/'")
    # A set never matches the folder separator, negated or not.
    return _Chars(frozenset(chars | {"/"}) if negated else frozenset(chars), negated), end + 1


def to_regex(glob: str) -> re.Pattern[str]:
    parts = []
    for token in tokenize(glob):
        kind = token[0]
        if kind == "dirs":
            parts.append("(?:.*/)?")
        elif kind == "dstar":
            parts.append(".*")
        elif kind == "star":
            parts.append("[^/]*")
        else:
            chars = token[1]  # type: ignore[misc]
            assert isinstance(chars, _Chars)
            if chars is _NOT_SLASH or (chars.negated and chars.chars == frozenset("/")):
                parts.append("[^/]")
            elif len(chars.chars) == 1 and not chars.negated:
                parts.append(re.escape(next(iter(chars.chars))))
            else:
                inner = "".join(re.escape(c) for c in sorted(chars.chars))
                parts.append(f"[{'^' if chars.negated else ''}{inner}]")
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def glob_problem(glob: str) -> str | None:
    """Why a glob can never match a path below a watch root, or None if it can."""
    if not glob:
        return "the glob is empty"
    if glob.startswith("/"):
        return "globs are relative to the watch root; remove the leading '/'"
    if glob.endswith("/"):
        return "a glob matches files, not folders; end it with a file pattern such as '*'"
    segments = glob.split("/")
    if "" in segments:
        return "the glob has an empty folder name ('//')"
    if any(s in (".", "..") for s in segments):
        return "'.' and '..' never appear in a path below the watch root"
    try:
        tokenize(glob)
    except GlobError as exc:
        return str(exc)
    return None


def _automaton(tokens: list[Token]) -> tuple[dict[int, list[tuple[_Chars, int]]], dict[int, list[int]], int]:
    """Edges, epsilon moves and final state of the NFA for ``tokens``."""
    edges: dict[int, list[tuple[_Chars, int]]] = {}
    epsilon: dict[int, list[int]] = {}
    extra = len(tokens) + 1  # helper states are numbered after the token positions
    for i, token in enumerate(tokens):
        kind = token[0]
        if kind == "one":
            edges.setdefault(i, []).append((token[1], i + 1))  # type: ignore[misc]
        elif kind in ("star", "dstar"):
            epsilon.setdefault(i, []).append(i + 1)
            edges.setdefault(i, []).append((_NOT_SLASH if kind == "star" else _ANY, i))
        else:  # "dirs": nothing, or anything that ends in "/"
            epsilon.setdefault(i, []).append(i + 1)
            middle, extra = extra, extra + 1
            edges.setdefault(i, []).append((_ANY, middle))
            edges.setdefault(middle, []).append((_ANY, middle))
            edges[middle].append((_Chars(frozenset("/")), i + 1))
    return edges, epsilon, len(tokens)


def _closure(states: set[int], epsilon: dict[int, list[int]]) -> frozenset[int]:
    todo, seen = list(states), set(states)
    while todo:
        for nxt in epsilon.get(todo.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return frozenset(seen)


def globs_overlap(first: str, second: str) -> bool:
    """True when some path matches both globs."""
    a, b = tokenize(first), tokenize(second)
    alphabet = {"/", _OTHER}
    for token in a + b:
        if token[0] == "one":
            alphabet |= token[1].chars  # type: ignore[misc]
    edges_a, eps_a, final_a = _automaton(a)
    edges_b, eps_b, final_b = _automaton(b)
    start = (_closure({0}, eps_a), _closure({0}, eps_b))
    seen = {start}
    queue = deque([start])
    while queue:
        states_a, states_b = queue.popleft()
        if final_a in states_a and final_b in states_b:
            return True
        for char in alphabet:
            next_a = {n for s in states_a for chars, n in edges_a.get(s, []) if chars.accepts(char)}
            next_b = {n for s in states_b for chars, n in edges_b.get(s, []) if chars.accepts(char)}
            if next_a and next_b:
                pair = (_closure(next_a, eps_a), _closure(next_b, eps_b))
                if pair not in seen:
                    seen.add(pair)
                    queue.append(pair)
    return False
