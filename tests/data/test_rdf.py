"""The RDF loader: every rdflib format, labels and descriptions, and every refusal."""
import json
import urllib.request
from pathlib import Path

import pytest
import rdflib
import rdflib.plugins.shared.jsonld.context as jsonld_context

from hybridrec.data import DataError
from hybridrec.data.rdf import (
    DESCRIPTION_PREDICATES, LABEL_PREDICATES, MAX_JSON_NESTING, MAX_NESTING, PREFIXES, RdfGraph,
    kg_inputs, load_rdf, rdf_format,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "kg" / "examples" / "graph.ttl"
EX = "http://example.org/kg/"
SCHEMA = "http://schema.org/"

SMALL_TTL = """\
@prefix ex: <http://example.org/kg/> .
@prefix my: <http://example.org/mine/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix dcterms: <http://purl.org/dc/terms/> .
ex:a my:likes ex:b ;
    rdfs:label "A"@en, "Ah"@fr ;
    dcterms:description "  the   first\\nthing " ;
    my:weight 3 .
ex:b <http://other.example/rel> ex:c ;
    rdfs:label "B" .
"""


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def no_fetch(monkeypatch):
    """Fail loudly if rdflib tries to read a JSON-LD context or open a URL."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError(f"fetch attempted: {args!r}")

    monkeypatch.setattr(jsonld_context, "source_to_json", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return calls


def test_vocab_ttl_lists_the_prefixes_and_text_predicates_the_loader_uses():
    vocab = ROOT / "kg" / "vocab.ttl"
    assert dict(load_rdf(vocab).prefixes) == dict(PREFIXES)
    graph = rdflib.Graph().parse(vocab)
    hr = rdflib.Namespace(PREFIXES["hr"])

    def ordered(kind):
        found = [(int(graph.value(p, hr.order)), str(p)) for p in graph.subjects(rdflib.RDF.type, kind)]
        return tuple(p for _, p in sorted(found))

    assert ordered(hr.labelPredicate) == LABEL_PREDICATES
    assert ordered(hr.descriptionPredicate) == DESCRIPTION_PREDICATES


def test_turtle_triples_labels_descriptions_and_skipped_literals(tmp_path):
    graph = load_rdf(write(tmp_path, "small.ttl", SMALL_TTL))
    assert isinstance(graph, RdfGraph)
    assert graph.triples == (
        (EX + "a", "http://example.org/mine/likes", EX + "b"),
        (EX + "b", "http://other.example/rel", EX + "c"),
    )
    assert dict(graph.labels) == {EX + "a": "A", EX + "b": "B"}
    assert dict(graph.descriptions) == {EX + "a": "the first thing"}  # whitespace collapsed
    assert dict(graph.skipped_literals) == {"http://example.org/mine/weight": 1}
    assert graph.prefixes["my"] == "http://example.org/mine/"
    assert graph.entities == (EX + "a", EX + "b", EX + "c")
    assert load_rdf(tmp_path / "small.ttl", language="fr").labels[EX + "a"] == "Ah"


def test_kg_inputs_shortens_relations_and_joins_label_and_description(tmp_path):
    graph = load_rdf(write(tmp_path, "small.ttl", SMALL_TTL))
    triples, text = kg_inputs(graph)
    # Bound in the file -> my:likes; no prefix for the other namespace -> the full IRI.
    assert triples == [(EX + "a", "my:likes", EX + "b"), (EX + "b", "http://other.example/rel", EX + "c")]
    assert text == {EX + "a": "A: the first thing", EX + "b": "B"}
    triples, _ = kg_inputs(graph, prefixes={"o": "http://other.example/"})
    assert triples[1][1] == "o:rel"


def test_builtin_prefixes_win_over_the_files_bindings(tmp_path):
    path = write(tmp_path, "s.ttl", "@prefix schema: <https://schema.org/> .\n"
                                    "@prefix hrx: <http://schema.org/> .\n"
                                    "<http://e/a> schema:about <http://e/b> ; hrx:about <http://e/c> .\n")
    triples, _ = kg_inputs(load_rdf(path))
    # "schema" means http://schema.org/ everywhere; https gets "sdo" whatever the file says.
    assert sorted(r for _, r, _ in triples) == ["schema:about", "sdo:about"]


def test_blank_nodes_are_resources_named_in_order(tmp_path):
    path = write(tmp_path, "b.ttl", "@prefix ex: <http://example.org/kg/> .\n"
                                    "ex:a ex:p [ ex:q ex:b ; ex:r [ ex:q ex:c ] ] .\n")
    graph = load_rdf(path)
    assert len(graph.triples) == 4
    assert {e for e in graph.entities if e.startswith("_:")} == {"_:b0", "_:b1"}
    assert graph == load_rdf(path)  # Same file, same names.


def hext(graph: rdflib.Graph) -> str:
    """Hext lines written by hand (rdflib's Hext writer needs a newer orjson than this one)."""
    lines = []
    for s, p, o in graph:
        if isinstance(o, rdflib.Literal):
            kind = str(o.datatype or (rdflib.RDF.langString if o.language else rdflib.XSD.string))
            lines.append([str(s), str(p), str(o), kind, o.language or "", "http://example.org/g"])
        else:
            lines.append([str(s), str(p), str(o), "globalId", "", "http://example.org/g"])
    return "".join(json.dumps(line) + "\n" for line in lines)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # rdflib's serializers, not ours
@pytest.mark.parametrize("fmt, suffix", [
    ("nt", ".nt"), ("n3", ".n3"), ("xml", ".owl"), ("json-ld", ".json"), ("nquads", ".nq"),
    ("trig", ".trig"), ("trix", ".trix"), ("hext", ".hext"),
])
def test_every_rdflib_format_gives_the_same_graph(tmp_path, fmt, suffix):
    reference = load_rdf(EXAMPLE)
    quads = fmt in ("nquads", "trig", "trix", "hext")
    source = rdflib.Dataset() if quads else rdflib.Graph()
    target = source.graph(rdflib.URIRef("http://example.org/g")) if quads else source
    target.parse(EXAMPLE)
    text = hext(target) if fmt == "hext" else source.serialize(format=fmt)
    path = write(tmp_path, "graph" + suffix, text)
    graph = load_rdf(path)
    assert graph.triples == reference.triples
    assert graph.labels == reference.labels and graph.descriptions == reference.descriptions
    assert graph.skipped_literals == reference.skipped_literals
    assert load_rdf(path, format=fmt).triples == reference.triples


def test_format_by_extension_and_explicit_names(tmp_path):
    assert rdf_format("x.TTL") == "turtle" and rdf_format("x.jsonld") == "json-ld"
    assert rdf_format("x.data", "application/rdf+xml") == "xml" and rdf_format("x", "ttl") == "turtle"
    with pytest.raises(DataError, match=r"graph\.xlsx: an RDF file extension among .*got '\.xlsx'"):
        load_rdf(write(tmp_path, "graph.xlsx", SMALL_TTL))
    with pytest.raises(DataError, match=r"an RDF format among .*got format='rdfa'"):
        load_rdf(tmp_path / "graph.xlsx", format="rdfa")
    # An explicit format reads any extension.
    assert len(load_rdf(tmp_path / "graph.xlsx", format="turtle").triples) == 2


def test_missing_file_and_urls_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"nothere\.ttl: an RDF file \(turtle\), but the file does not exist"):
        load_rdf(tmp_path / "nothere.ttl")
    for url in ("http://example.org/graph.ttl", "https://example.org/g.rdf", "file:///etc/hosts.ttl"):
        with pytest.raises(DataError, match=r"a local file path; URLs are refused"):
            load_rdf(url)


def test_non_utf8_bytes_name_the_offset_and_line(tmp_path):
    path = write(tmp_path, "latin.ttl", b'@prefix ex: <http://e/> .\nex:a ex:b "caf\xe9" .\n')
    with pytest.raises(DataError, match=r"latin\.ttl line 2: UTF-8 text, got byte 0xe9 at byte offset 40"):
        load_rdf(path)


@pytest.mark.parametrize("name, text, pattern", [
    ("bad.ttl", "@prefix ex: <http://e/> .\nex:a ex:b ex:c .\nex:a ex:b .\n",
     r"bad\.ttl line 3: valid turtle: Bad syntax \(objectList expected\)"),
    ("bad.nt", "<http://e/a> <http://e/b> <http://e/c> .\n\n<http://e/a> <http://e/b> .\n",
     r"bad\.nt line 3: valid nt: Invalid line"),
    ("bad.nq", "<http://e/a> <http://e/b> <http://e/c> <http://g> .\n<http://e/a> oops .\n",
     r"bad\.nq line 2: valid nquads"),
    ("bad.rdf", '<?xml version="1.0"?>\n<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
                '<rdf:Description rdf:about="http://e/a">\n</rdf:RDF>\n',
     r"bad\.rdf line 4: valid xml: mismatched tag"),
    ("bad.jsonld", '{\n  "@id": "http://e/a",\n  "http://e/p": [1, 2,]\n}\n',
     r"bad\.jsonld line 3: valid JSON"),
], ids=lambda value: value if isinstance(value, str) and value.startswith("bad.") else "")
def test_syntax_errors_name_the_line(tmp_path, name, text, pattern):
    with pytest.raises(DataError, match=pattern):
        load_rdf(write(tmp_path, name, text))


REMOTE_CONTEXTS = [
    "https://schema.org/",
    ["http://example.org/context.jsonld", {"ex": "http://example.org/"}],
]


@pytest.mark.parametrize("context", REMOTE_CONTEXTS)
def test_jsonld_context_that_is_not_inline_is_refused_before_any_fetch(tmp_path, no_fetch, context):
    doc = {"@context": context, "@id": "http://e/a", "name": "A"}
    with pytest.raises(DataError, match=r"remote\.jsonld: an inline JSON-LD "
                                        r"@context object, got .*refused"):
        load_rdf(write(tmp_path, "remote.jsonld", json.dumps(doc)))
    assert no_fetch == []


def test_jsonld_local_file_context_nested_and_import_are_refused(tmp_path, no_fetch):
    # rdflib would happily read this file from disk; we never let it.
    local = write(tmp_path, "ctx.jsonld", json.dumps({"@context": {"ex": "http://example.org/"}}))
    nested = {"@context": {"ex": "http://e/"}, "@id": "ex:a",
              "ex:p": {"@context": local.as_uri(), "@id": "ex:b"}}
    with pytest.raises(DataError, match=r"nested\.jsonld.*inline JSON-LD @context object, got 'file:"):
        load_rdf(write(tmp_path, "nested.jsonld", json.dumps(nested)))
    scoped = {"@context": {"ex": "http://e/", "ex:p": {"@context": "ctx.jsonld"}}, "@id": "ex:a"}
    with pytest.raises(DataError, match=r"scoped\.jsonld.*got 'ctx\.jsonld'"):
        load_rdf(write(tmp_path, "scoped.jsonld", json.dumps(scoped)))
    imported = {"@context": {"@version": 1.1, "@import": "https://schema.org/"}, "@id": "http://e/a"}
    with pytest.raises(DataError, match=r"imported\.jsonld: JSON-LD without @import"):
        load_rdf(write(tmp_path, "imported.jsonld", json.dumps(imported)))
    assert no_fetch == []


def test_jsonld_inline_context_loads_without_fetching(tmp_path, no_fetch):
    doc = {"@context": {"ex": "http://e/", "knows": {"@id": "ex:knows", "@type": "@id"}},
           "@id": "ex:a", "knows": "ex:b", "ex:label": "A"}
    graph = load_rdf(write(tmp_path, "ok.jsonld", json.dumps(doc)))
    assert graph.triples == (("http://e/a", "http://e/knows", "http://e/b"),)
    assert graph.prefixes == {"ex": "http://e/"}
    assert no_fetch == []


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:ex="http://e/">
  <rdf:Description rdf:about="http://e/a"><ex:p>&lol3;</ex:p></rdf:Description>
</rdf:RDF>
"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:ex="http://e/">
<!ENTITY xxe SYSTEM "file:///etc/passwd">
  <rdf:Description rdf:about="http://e/a"><ex:p>&xxe;</ex:p></rdf:Description>
</rdf:RDF>
"""


def test_xml_doctype_and_entity_declarations_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"lolz\.rdf line 2: XML without <!DOCTYPE> declarations"):
        load_rdf(write(tmp_path, "lolz.rdf", BILLION_LAUGHS))
    with pytest.raises(DataError, match=r"xxe\.rdf line 3: XML without <!ENTITY> declarations"):
        load_rdf(write(tmp_path, "xxe.rdf", EXTERNAL_ENTITY))
    with pytest.raises(DataError, match=r"lolz\.trix line 2: XML without <!DOCTYPE>"):
        load_rdf(write(tmp_path, "lolz.trix", BILLION_LAUGHS))
    latin = BILLION_LAUGHS.replace('version="1.0"', 'version="1.0" encoding="ISO-8859-1"')
    latin = latin[: latin.index("<!DOCTYPE")] + latin[latin.index("<rdf:RDF"):].replace("&lol3;", "x")
    with pytest.raises(DataError, match=r"latin\.rdf line 1: an XML file in UTF-8, got encoding='ISO-8859-1'"):
        load_rdf(write(tmp_path, "latin.rdf", latin))
    utf16 = write(tmp_path, "utf16.rdf", "<?xml version='1.0'?><rdf:RDF/>".encode("utf-16-le"))
    with pytest.raises(DataError, match=r"utf16\.rdf line 1: text without NUL bytes"):
        load_rdf(utf16)


@pytest.mark.parametrize("name, text, line", [
    ("deep.ttl", "@prefix ex: <http://e/> .\n# [[[[ in a comment\nex:a ex:p\n"
                 + "[ ex:p " * 10_000 + "ex:b" + " ]" * 10_000 + " .\n", 4),
    ("deep_list.ttl", '@prefix ex: <http://e/> .\nex:a ex:p "((((" ;\n ex:q\n'
                      + "(" * 50_000 + ")" * 50_000 + " .\n", 4),
    ("deep.n3", "@prefix ex: <http://e/> .\n" + "{ ex:a ex:b " * 5_000 + "ex:c" + " }" * 5_000 + " .\n", 2),
    ("deep.trig", "@prefix ex: <http://e/> .\nex:g {\n ex:a ex:p " + "[ ex:p " * 100 + "ex:b"
                  + " ]" * 100 + " .\n}\n", 3),
    ("deep.jsonld", '{"@context": {"ex": "http://e/"},\n "@id": "ex:a",\n "ex:p": '
                    + '{"ex:p": ' * 100_000 + '"x"' + "}" * 100_000 + "}\n", 3),
    ("deep_list.jsonld", '{"@id": "http://e/a",\n "http://e/p":\n' + "[" * 200_000 + "]" * 200_000 + "}", 3),
], ids=lambda value: value if isinstance(value, str) and value.startswith("deep") else "")
def test_absurd_nesting_is_refused_with_its_line(tmp_path, name, text, line):
    with pytest.raises(DataError, match=rf"{name.replace('.', '[.]')} line {line}: nesting at most \d+ levels"):
        load_rdf(write(tmp_path, name, text))


def test_deep_rdfxml_parses_without_recursion(tmp_path):
    # rdflib's RDF/XML handler keeps its own stack, so depth is not refused there.
    depth = 3_000
    xml = ('<?xml version="1.0"?>\n<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
           'xmlns:ex="http://e/">\n<rdf:Description rdf:about="http://e/a">'
           + "<ex:p><rdf:Description>" * depth + "<ex:q>x</ex:q>" + "</rdf:Description></ex:p>" * depth
           + "</rdf:Description></rdf:RDF>\n")
    graph = load_rdf(write(tmp_path, "deep.rdf", xml))
    assert len(graph.triples) == depth and graph.skipped_literals == {"http://e/q": 1}


def test_nesting_within_the_limits_parses(tmp_path):
    depth = MAX_NESTING - 1
    ttl = "@prefix ex: <http://e/> .\nex:a ex:p " + "[ ex:p " * depth + "ex:b" + " ]" * depth + " .\n"
    assert len(load_rdf(write(tmp_path, "ok.ttl", ttl)).triples) == depth + 1
    depth = MAX_JSON_NESTING // 2 - 2
    doc = '{"@context": {"ex": "http://e/"}, "@id": "ex:a", "ex:p": ' + '{"ex:p": ' * depth + '"x"' + "}" * depth + "}"
    assert len(load_rdf(write(tmp_path, "ok.jsonld", doc)).triples) == depth


def test_owl_imports_is_a_plain_triple_never_followed(tmp_path, no_fetch):
    other = write(tmp_path, "other.ttl", "<http://e/secret> <http://e/p> <http://e/q> .\n")
    path = write(tmp_path, "onto.ttl",
                 "@prefix owl: <http://www.w3.org/2002/07/owl#> .\n"
                 f"<http://e/onto> owl:imports <{other.as_uri()}>, <https://example.org/remote.ttl> .\n")
    graph = load_rdf(path)
    assert set(graph.triples) == {
        ("http://e/onto", "http://www.w3.org/2002/07/owl#imports", "https://example.org/remote.ttl"),
        ("http://e/onto", "http://www.w3.org/2002/07/owl#imports", other.as_uri()),
    }  # and nothing from other.ttl
    assert kg_inputs(graph)[0][0][1] == "owl:imports"
    assert no_fetch == []
