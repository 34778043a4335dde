"""RDF files -> triples between resources and their label texts. Never touches the network.

:func:`load_rdf` reads one file in any rdflib format and keeps

* **triples** ``(head, relation, tail)`` whose head and tail are resources (IRIs, or blank
  nodes named ``_:b0, _:b1, ...`` in the order the parser meets them: the same names for the
  same file every time, but not across formats);
* **labels** from :data:`LABEL_PREDICATES` and **descriptions** from
  :data:`DESCRIPTION_PREDICATES` (literal objects only): one text per resource, chosen by
  predicate order, then language (the preferred one, then untagged, then others), then the
  smallest text; whitespace is collapsed;
* every **other literal** (``schema:datePublished "1995"``, ...) is ignored, counted per
  predicate in :attr:`RdfGraph.skipped_literals` and logged.

``owl:imports`` and every other linking predicate is a plain triple: nothing is followed.

Safety: the file is read here, as bytes, and checked before rdflib sees it. Locations that are
URLs are refused; so are JSON-LD ``@context`` values that are not inline objects (a string is a
URL or path rdflib would fetch) and ``@import``; so are ``<!DOCTYPE``/``<!ENTITY`` in XML
formats (entity-expansion bombs, external entities). Nesting deeper than
:data:`MAX_NESTING` (Turtle-family brackets) or :data:`MAX_JSON_NESTING` (JSON) is refused
with its line instead of hitting Python's recursion limit inside rdflib.

:func:`kg_inputs` turns an :class:`RdfGraph` into the ``kg_triples`` / ``entity_text`` inputs
of :func:`hybridrec.data.build.build_dataset`, with relation IRIs shortened to readable names
(``schema:director``) by :data:`PREFIXES` (mirrored in ``kg/vocab.ttl``) and the prefixes
bound in the file.
"""
from __future__ import annotations

import json
import logging
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args
from xml.sax import SAXParseException

import numpy as np
import rdflib
from rdflib.namespace import NamespaceManager
from rdflib.parser import PythonInputSource
from rdflib.plugins.stores.memory import Memory

from hybridrec.data.errors import DataError

log = logging.getLogger(__name__)

HR = "https://w3id.org/hybridrec/vocab#"
"""hybridrec's own namespace (relations such as ``hr:interacts``; see ``kg/vocab.ttl``)."""

_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_RDFS = "http://www.w3.org/2000/01/rdf-schema#"
_SKOS = "http://www.w3.org/2004/02/skos/core#"
_SCHEMA = "http://schema.org/"
_SCHEMA_S = "https://schema.org/"
_DCTERMS = "http://purl.org/dc/terms/"
_DC = "http://purl.org/dc/elements/1.1/"

PREFIXES: Mapping[str, str] = MappingProxyType({
    "hr": HR,
    "rdf": _RDF,
    "rdfs": _RDFS,
    "owl": "http://www.w3.org/2002/07/owl#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "skos": _SKOS,
    "schema": _SCHEMA,
    "sdo": _SCHEMA_S,
    "dcterms": _DCTERMS,
    "dc": _DC,
    "foaf": "http://xmlns.com/foaf/0.1/",
    "wd": "http://www.wikidata.org/entity/",
    "wdt": "http://www.wikidata.org/prop/direct/",
    "dbo": "http://dbpedia.org/ontology/",
    "dbr": "http://dbpedia.org/resource/",
})
"""Prefixes used to shorten relation IRIs; they win over the file's own bindings, so one graph
gets the same relation names from every format."""

LABEL_PREDICATES: tuple[str, ...] = (
    _RDFS + "label", _SKOS + "prefLabel", _SCHEMA + "name", _SCHEMA_S + "name",
    _DCTERMS + "title", _DC + "title",
)
"""Predicates whose literal objects are a resource's label, in order of preference."""

DESCRIPTION_PREDICATES: tuple[str, ...] = (
    _DCTERMS + "description", _SCHEMA + "description", _SCHEMA_S + "description",
    _DC + "description", _RDFS + "comment",
)
"""Predicates whose literal objects are a resource's description, in order of preference."""

RdfFormat = Literal["turtle", "nt", "n3", "xml", "json-ld", "nquads", "trig", "trix", "hext"]
_FORMATS: tuple[str, ...] = get_args(RdfFormat)
_QUAD_FORMATS = frozenset({"nquads", "trig", "trix", "hext"})
_XML_FORMATS = frozenset({"xml", "trix"})
_TURTLE_FORMATS = frozenset({"turtle", "n3", "trig"})
_JSON_FORMATS = frozenset({"json-ld", "hext"})

SUFFIX_FORMATS: Mapping[str, str] = MappingProxyType({
    ".ttl": "turtle", ".turtle": "turtle", ".nt": "nt", ".n3": "n3",
    ".rdf": "xml", ".xml": "xml", ".owl": "xml",
    ".jsonld": "json-ld", ".json": "json-ld",
    ".nq": "nquads", ".trig": "trig", ".trix": "trix", ".hext": "hext",
})
"""File extension -> rdflib format, used when ``format`` is not given."""

_ALIASES = {
    "ttl": "turtle", "text/turtle": "turtle", "ntriples": "nt", "n-triples": "nt", "nt11": "nt",
    "application/n-triples": "nt", "text/n3": "n3", "rdf/xml": "xml", "rdfxml": "xml",
    "application/rdf+xml": "xml", "jsonld": "json-ld", "application/ld+json": "json-ld",
    "nq": "nquads", "n-quads": "nquads", "application/n-quads": "nquads",
    "application/trig": "trig",
}

MAX_NESTING = 32
"""Deepest ``[ ( { <<`` nesting accepted in Turtle, N3 and TriG (rdflib parses it recursively,
about ten Python frames per level)."""
MAX_JSON_NESTING = 100
"""Deepest ``[ {`` nesting accepted in JSON-LD and Hext."""

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")  # A scheme; one letter is a drive.
# Opaque tokens (strings, IRIs, comments, escapes: brackets inside do not nest), or a bracket.
_TURTLE_SCANNER = re.compile(
    r'"""(?:[^"\\]|\\.|"(?!""))*"""' r"|'''(?:[^'\\]|\\.|'(?!''))*'''"
    r'|"(?:[^"\\\n]|\\.)*"' r"|'(?:[^'\\\n]|\\.)*'"
    r"|<[^<>\"{}|^`\\\s]*>|#[^\n]*|\\."
    r"|(<<|>>|[\[\](){}])",
    re.S,
)
_JSON_SCANNER = re.compile(r'"(?:[^"\\]|\\.)*"|([\[\]{}])', re.S)
_XML_DECLARATIONS = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.I)
_XML_ENCODING = re.compile(r"""\s*<\?xml[^>]*?encoding\s*=\s*["']([^"']+)["']""")


@dataclass(frozen=True)
class RdfGraph:
    """One RDF file, reduced to what hybridrec uses.

    Args:
        path: the file it came from.
        triples: sorted unique ``(head, relation_iri, tail)``; heads and tails are resource ids.
        labels: resource id -> label text.
        descriptions: resource id -> description text.
        prefixes: prefix -> namespace, as bound in the file.
        skipped_literals: predicate IRI -> how many literal objects were not used as text.
    """

    path: str
    triples: tuple[tuple[str, str, str], ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    descriptions: Mapping[str, str] = field(default_factory=dict)
    prefixes: Mapping[str, str] = field(default_factory=dict)
    skipped_literals: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("labels", "descriptions", "prefixes", "skipped_literals"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    @property
    def entities(self) -> tuple[str, ...]:
        """Every resource that is the head or tail of a triple, sorted."""
        return tuple(sorted({e for h, _, t in self.triples for e in (h, t)}))

    @property
    def relations(self) -> tuple[str, ...]:
        """Every relation IRI, sorted."""
        return tuple(sorted({r for _, r, _ in self.triples}))


def rdf_format(path: str | PathLike[str], format: str | None = None) -> str:
    """The rdflib format for ``path``: ``format`` (or an alias of one), else by extension."""
    if format is not None:
        name = _ALIASES.get(format.lower(), format.lower())
        if name not in _FORMATS:
            raise DataError(path, f"an RDF format among {list(_FORMATS)}, got format={format!r}")
        return name
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_FORMATS:
        raise DataError(path, f"an RDF file extension among {sorted(SUFFIX_FORMATS)} (or pass "
                              f"format=), got {suffix or 'none'!r}")
    return SUFFIX_FORMATS[suffix]


def check_local_path(location: str | PathLike[str]) -> Path:
    """``location`` as a local :class:`~pathlib.Path`; a URL is refused with a :class:`DataError`."""
    text = str(location)
    if _URL.match(text):
        raise DataError(text, "a local file path; URLs are refused because hybridrec never "
                              "fetches data over the network (download it and pass the file)")
    return Path(location)


def read_utf8(path: Path, what: str) -> str:
    """The file's text, strictly UTF-8 (a leading BOM is dropped), or a :class:`DataError`."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, f"{what}, but the file does not exist") from None
    except IsADirectoryError:
        raise DataError(path, f"{what}, but it is a directory") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(path, f"UTF-8 text, got byte 0x{raw[err.start]:02x} at byte offset "
                              f"{err.start}", line=line) from None
    return text


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def _check_nesting(text: str, scanner: re.Pattern[str], limit: int, path: Path) -> None:
    """Refuse bracket nesting deeper than ``limit``, naming the line where it goes too deep.

    ``scanner`` matches opaque tokens (strings, IRIs, comments) or, in group 1, a bracket.
    """
    # Fast pass in C: the brackets alone, depth = running sum.
    only = "".join(scanner.findall(text)).replace("<<", "(").replace(">>", ")")
    if not only:
        return
    codes = np.frombuffer(only.encode("ascii"), dtype=np.uint8)
    step = np.where(np.isin(codes, np.frombuffer(b"[({", dtype=np.uint8)), 1, -1)
    if np.cumsum(step).max() <= limit:
        return
    # Slow pass only on failure: walk the tokens again to find the line.
    depth = 0
    for match in scanner.finditer(text):
        token = match.group(1)
        if token:
            depth += 1 if token in ("[", "(", "{", "<<") else -1
        if depth > limit:
            raise DataError(path, f"nesting at most {limit} levels deep, got deeper (refused "
                                  "before parsing)", line=_line_of(text, match.start()))
    raise AssertionError("unreachable: the fast pass saw deeper nesting")


def _check_xml(text: str, path: Path) -> None:
    match = _XML_DECLARATIONS.search(text)
    if match:
        raise DataError(path, f"XML without <!{match.group(1).upper()}> declarations (refused: "
                              "they can expand entities or read other files)",
                        line=_line_of(text, match.start()))
    match = _XML_ENCODING.match(text)
    if match and match.group(1).lower().replace("_", "-") not in ("utf-8", "utf8", "us-ascii", "ascii"):
        raise DataError(path, f"an XML file in UTF-8, got encoding={match.group(1)!r}", line=1)


def _load_json(text: str, path: Path) -> Any:
    _check_nesting(text, _JSON_SCANNER, MAX_JSON_NESTING, path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(path, f"valid JSON: {err.msg} (column {err.colno})", line=err.lineno) from None


def _json_nodes(data: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in ``data``, without recursion."""
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _check_jsonld(data: Any, path: Path) -> dict[str, str]:
    """Refuse non-inline contexts and ``@import``; return the prefixes the contexts define."""
    prefixes: dict[str, str] = {}
    for node in _json_nodes(data):
        if "@import" in node:
            raise DataError(path, f"JSON-LD without @import (refused: rdflib would fetch "
                                  f"{node['@import']!r}); inline the imported context")
        if "@context" not in node:
            continue
        contexts = node["@context"]
        for context in contexts if isinstance(contexts, list) else [contexts]:
            if context is None:
                continue
            if not isinstance(context, dict):
                raise DataError(path, f"an inline JSON-LD @context object, got {context!r} (refused: "
                                      "rdflib would fetch it from the network or disk); replace it "
                                      "with the context's JSON object")
            for key, value in context.items():
                iri = value.get("@id") if isinstance(value, dict) else value
                if (not key.startswith("@") and isinstance(iri, str)
                        and iri.endswith(("/", "#")) and ":" not in key):
                    prefixes.setdefault(key, iri)
    return prefixes


def _syntax_line(text: str, fmt: str) -> int | None:
    """First line of a line-based file (N-Triples, N-Quads) that rdflib rejects."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # rdflib's own, about its internals
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip() and not line.lstrip().startswith("#"):
                try:
                    _new_graph(fmt).parse(data=line + "\n", format=fmt)
                except Exception:  # noqa: BLE001 - any rejection marks the line
                    return number
    return None


class _OrderedMemory(Memory):
    """rdflib's in-memory store, remembering the order in which blank nodes first arrive (its
    own iteration order is a set's, and blank node ids are random)."""

    def __init__(self) -> None:
        super().__init__()
        self.blank_order: dict[rdflib.BNode, int] = {}

    def add(self, triple: Any, context: Any, quoted: bool = False) -> None:
        for node in (triple[0], triple[2]):
            if isinstance(node, rdflib.BNode) and node not in self.blank_order:
                self.blank_order[node] = len(self.blank_order)
        super().add(triple, context, quoted)


def _new_graph(fmt: str) -> rdflib.Graph:
    store = _OrderedMemory()
    graph = rdflib.Dataset(store) if fmt in _QUAD_FORMATS else rdflib.Graph(store)
    graph.namespace_manager = NamespaceManager(graph, bind_namespaces="none")
    return graph


def _parse(text: str, fmt: str, path: Path, json_data: Any) -> rdflib.Graph:
    graph = _new_graph(fmt)
    base = path.resolve().as_uri()  # Relative IRIs resolve against the file, as rdflib does.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # rdflib's own, about its internals
            if fmt == "json-ld":
                graph.parse(source=PythonInputSource(json_data, system_id=base), format=fmt)
            elif fmt in _XML_FORMATS:
                graph.parse(data=text.encode("utf-8"), format=fmt, publicID=base)
            else:
                graph.parse(data=text, format=fmt, publicID=base)
    except RecursionError:
        raise DataError(path, "RDF nested less deeply (rdflib ran out of recursion depth)") from None
    except SAXParseException as err:
        raise DataError(path, f"valid {fmt}: {err.getMessage()}", line=err.getLineNumber()) from err
    except Exception as err:  # noqa: BLE001 - every rdflib failure becomes a DataError with its cause
        line = getattr(err, "lines", None)
        line = line + 1 if isinstance(line, int) else None
        if line is None and fmt in ("nt", "nquads"):
            line = _syntax_line(text, fmt)
        message = _parser_message(err)
        raise DataError(path, f"valid {fmt}: {message}", line=line) from err
    return graph


def _parser_message(err: Exception) -> str:
    """rdflib's reason, without its own "at line N of <>:" prefix and echo of the input."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if lines and lines[0].startswith("at line") and len(lines) > 1:
        lines = lines[1:]
    return lines[0].split(" at ^ in:")[0] if lines else type(err).__name__


def _bound_prefixes(graph: rdflib.Graph) -> dict[str, str]:
    bound = {p: str(ns) for p, ns in graph.namespaces()}
    if isinstance(graph, rdflib.Dataset):
        # Datasets bind rdflib's defaults whatever the file says; keep what the file added.
        defaults = {p: str(ns) for p, ns in rdflib.Dataset().namespaces()}
        bound = {p: ns for p, ns in bound.items() if defaults.get(p) != ns}
    return bound


def _statements(graph: rdflib.Graph) -> Iterable[tuple[Any, Any, Any]]:
    if isinstance(graph, rdflib.Dataset):
        return ((s, p, o) for s, p, o, _ in graph.quads((None, None, None, None)))
    return graph.triples((None, None, None))


def load_rdf(
    path: str | PathLike[str],
    format: str | None = None,
    *,
    language: str = "en",
) -> RdfGraph:
    """Read one RDF file safely into an :class:`RdfGraph`.

    Args:
        path: a local file (URLs are refused).
        format: an rdflib format (:data:`RdfFormat` or an alias such as ``"ttl"``,
            ``"application/rdf+xml"``) (default: by extension, see :data:`SUFFIX_FORMATS`).
        language: the preferred language of labels and descriptions (default: ``"en"``).

    Raises:
        DataError: naming the file (and the line where known) for every refusal or syntax error.
    """
    path = check_local_path(path)
    fmt = rdf_format(path, format)
    text = read_utf8(path, f"an RDF file ({fmt})")
    if "\x00" in text:
        raise DataError(path, "text without NUL bytes (UTF-16 files are not accepted)",
                        line=_line_of(text, text.index("\x00")))

    # 1. Refuse what could reach outside the file or blow the stack, before rdflib runs.
    json_data, prefixes = None, {}
    if fmt in _XML_FORMATS:
        _check_xml(text, path)
    elif fmt in _TURTLE_FORMATS:
        _check_nesting(text, _TURTLE_SCANNER, MAX_NESTING, path)
    elif fmt == "json-ld":
        json_data = _load_json(text, path)
        prefixes = _check_jsonld(json_data, path)
    elif fmt in _JSON_FORMATS:
        _check_nesting(text, _JSON_SCANNER, MAX_JSON_NESTING, path)

    # 2. Parse what we read ourselves, never a location.
    graph = _parse(text, fmt, path, json_data)
    if fmt != "json-ld":
        prefixes = _bound_prefixes(graph)

    # 3. Split statements into resource triples, label/description texts and skipped literals.
    statements = list(_statements(graph))
    order = graph.store.blank_order
    present = {n for s, _, o in statements for n in (s, o) if isinstance(n, rdflib.BNode)}
    blank = {node: f"_:b{k}" for k, node in enumerate(sorted(present, key=order.__getitem__))}

    def resource(node: Any) -> str | None:
        if isinstance(node, rdflib.URIRef):
            return str(node)
        if isinstance(node, rdflib.BNode):
            return blank[node]
        return None

    label_rank = {p: k for k, p in enumerate(LABEL_PREDICATES)}
    description_rank = {p: k for k, p in enumerate(DESCRIPTION_PREDICATES)}
    language = language.lower()
    triples: set[tuple[str, str, str]] = set()
    texts: dict[str, dict[str, tuple]] = {"label": {}, "description": {}}
    skipped: Counter[str] = Counter()
    for s, p, o in statements:
        head, relation = resource(s), str(p)
        if head is not None and isinstance(p, rdflib.URIRef):
            tail = resource(o)
            if tail is not None:
                triples.add((head, relation, tail))
                continue
            if isinstance(o, rdflib.Literal):
                kind = ("label" if relation in label_rank else
                        "description" if relation in description_rank else None)
                value = " ".join(str(o).split())
                if kind and value:
                    lang = (o.language or "").lower()
                    lang_rank = 0 if lang == language or lang.startswith(language + "-") else (
                        1 if not lang else 2)
                    rank = (label_rank if kind == "label" else description_rank)[relation]
                    key = (rank, lang_rank, value)
                    best = texts[kind].get(head)
                    if best is None or key < best:
                        texts[kind][head] = key
                    continue
        skipped[relation] += 1

    result = RdfGraph(
        path=str(path),
        triples=tuple(sorted(triples)),
        labels={iri: key[2] for iri, key in texts["label"].items()},
        descriptions={iri: key[2] for iri, key in texts["description"].items()},
        prefixes=prefixes,
        skipped_literals=dict(sorted(skipped.items())),
    )
    log.info("%s: %d triples, %d labels, %d descriptions, %d blank nodes; %d other literals "
             "ignored", path, len(result.triples), len(result.labels), len(result.descriptions),
             len(blank), sum(skipped.values()))
    if skipped:
        log.debug("%s: literals ignored per predicate: %s", path, dict(skipped))
    return result


def relation_prefixes(*bindings: Mapping[str, str]) -> dict[str, str]:
    """:data:`PREFIXES`, then each of ``bindings`` in turn, keeping only new prefixes that bind
    new namespaces (so each short name stands for one IRI)."""
    table = dict(PREFIXES)
    known = set(table.values())
    for bound in bindings:
        for prefix, namespace in sorted(bound.items()):
            if prefix not in table and namespace not in known:
                table[prefix] = namespace
                known.add(namespace)
    return table


_LOCAL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def shorten(iri: str, prefixes: Mapping[str, str]) -> str:
    """``prefix:local`` for the longest matching namespace with a plain local name, else ``iri``."""
    best = None
    for prefix, namespace in prefixes.items():
        if iri.startswith(namespace) and _LOCAL.match(iri[len(namespace):]) and not iri.endswith("."):
            if best is None or len(namespace) > len(prefixes[best]):
                best = prefix
    return iri if best is None else f"{best}:{iri[len(prefixes[best]):]}"


def entity_text(label: str, description: str) -> str:
    """A resource's text: ``"label: description"``, or whichever of the two exists."""
    return f"{label}: {description}" if label and description else label or description


def kg_inputs(
    graph: RdfGraph,
    prefixes: Mapping[str, str] | None = None,
) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """``(kg_triples, entity_text)`` for :func:`~hybridrec.data.build.build_dataset`.

    Entities keep their full IRIs (exact ids, so item links and IRI columns match them);
    relation IRIs become readable names such as ``schema:director``.

    Args:
        graph: a loaded graph.
        prefixes: extra prefix -> namespace bindings, consulted after :data:`PREFIXES` and before
            the file's own (default: none).
    """
    table = relation_prefixes(prefixes or {}, graph.prefixes)
    names = {relation: shorten(relation, table) for relation in graph.relations}
    triples = [(h, names[r], t) for h, r, t in graph.triples]
    resources = set(graph.labels) | set(graph.descriptions)
    text = {iri: entity_text(graph.labels.get(iri, ""), graph.descriptions.get(iri, ""))
            for iri in sorted(resources)}
    return triples, text
