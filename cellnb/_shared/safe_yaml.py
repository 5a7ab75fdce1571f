"""YAML (and JSON) text read with bounds (private).

PyYAML's ``safe_load`` runs no code, but it accepts what a hostile or mistyped
file can do to the reader: an alias bomb ("billion laughs": a few lines whose
aliases expand to billions of nodes, which whoever walks the result never
finishes), duplicate keys (the last silently wins), and any size. :func:`load`
refuses all three with a message naming the source, the line and the fix.
"""

from __future__ import annotations

import yaml

#: Largest YAML/JSON text cellnb reads (a config or manifest is a few kB).
MAX_BYTES = 4 * 2**20
#: Most aliases (``*name``) a document may hold; configs rarely use any.
MAX_ALIASES = 64
#: Most nodes a document may expand to, aliases followed (a bomb's tell).
MAX_NODES = 200_000


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts aliases and refuses duplicate keys."""

    def __init__(self, stream):
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"more than {MAX_ALIASES} aliases (*name): a document that "
                    "expands like this is refused; write the values out", mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: SafeLoader says so itself
                continue
            if first is not key_node.start_mark:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"key {key!r} appears twice (first on line {first.line + 1}); "
                    "keep one", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node, sizes: dict) -> int:
    """Nodes of `node` with every alias followed (memoised: linear in the document);
    a node that holds itself is refused."""
    key = id(node)
    if key in sizes:
        if sizes[key] is None:
            raise yaml.MarkedYAMLError(problem="an alias refers to a value that holds it (a "
                                       "value containing itself)", problem_mark=node.start_mark)
        return sizes[key]
    sizes[key] = None  # being counted
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    sizes[key] = min(size, MAX_NODES + 1)
    return sizes[key]


def _where(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def _what(err: yaml.YAMLError) -> str:
    if isinstance(err, yaml.MarkedYAMLError):
        return ", ".join(part for part in (err.context, err.problem) if part)
    return str(err)


def load(text: str, source: str = "YAML text"):
    """Parse `text` as one YAML document (JSON is YAML), within the bounds above.

    Raises ValueError naming `source` for invalid YAML, duplicate keys, too
    many aliases, too many expanded nodes or too much text.

    Examples
    --------
    >>> load("a: 1\\nb: [2, 3]")
    {'a': 1, 'b': [2, 3]}
    >>> load("a: 1\\na: 2")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: YAML text is not valid YAML (line 2, column 1): ...key 'a' appears twice (first on line 1); keep one.
    """
    if not isinstance(text, str):
        raise TypeError(f"{source}: expected text, got {type(text).__name__}.")
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_BYTES:
        raise ValueError(f"{source} is {size} bytes; cellnb reads YAML/JSON files of at most "
                         f"{MAX_BYTES} bytes (a config is a few kB): is it the right file?")
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_NODES:
            raise yaml.YAMLError(f"its aliases expand to more than {MAX_NODES} values "
                                 "(an alias bomb?); write the values out instead")
        return loader.construct_document(node)
    except RecursionError:
        raise ValueError(f"{source} nests too deeply to be a cellnb file.") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{source} is not valid YAML{_where(err)}: {_what(err)}.") from None
    finally:
        loader.dispose()
