"""The CSV loader: exact ids, column mapping, numbers and times, and every bad input."""
import logging
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from hybridrec.data import DataError
from hybridrec.data.tabular import load_csv, read_table

TTL = """\
@prefix ex: <http://example.org/kg/> .
@prefix schema: <http://schema.org/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
ex:heat schema:director ex:mann ; schema:name "Heat" .
ex:up schema:director ex:docter ; schema:name "Up" .
ex:mann rdfs:label "Michael Mann" .
"""


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_column_mapping_and_ids_that_only_look_numeric_stay_exact(tmp_path):
    inter = write(tmp_path, "ratings.csv",
                  "customer_id,isbn,stars,ts,note\n"
                  "01,0012345678901234567890,4.5,1700000000,x\n"
                  "1,1.0,3,1700000100,\n"
                  "1.0,1e3,5,1700000200,\n"
                  "01,1.0,2,1700000300,\n")
    data = load_csv(inter, columns={"customer_id": "user_id", "isbn": "item_id", "stars": "rating",
                                    "ts": "timestamp"})
    assert data.users.ids == ("01", "1", "1.0")
    assert data.items.ids == ("0012345678901234567890", "1.0", "1e3")
    assert data.interactions.rating.tolist() == [4.5, 3.0, 5.0, 2.0]
    assert data.interactions.timestamp.tolist() == [1.7e9, 1.7e9 + 100, 1.7e9 + 200, 1.7e9 + 300]
    assert data.name == tmp_path.name


def test_tables_roles_categorical_split_and_tsv(tmp_path):
    inter = write(tmp_path, "inter.tsv", "user_id\titem_id\n007\tA\n007\tB\n008\tB\n")
    items = write(tmp_path, "items.tsv", "item_id\ttitle\tgenre\nA\tHeat, the film\tCrime|Thriller\n"
                                         "B\tUp\tAnimation||\nC\tCold\t\n")
    users = write(tmp_path, "users.tsv", "user_id\tjob\n007\tspy\n008\tspy;cook\n")
    data = load_csv(inter, items, users, item_text_columns=("title",),
                    item_categorical_columns=("genre",), user_categorical_columns=("job",),
                    separator={"genre": "|", "job": ";"}, name="toy")
    assert data.name == "toy" and data.num_items == 3 and data.interactions.rating is None
    assert data.item_table["title"].tolist() == ["Heat, the film", "Up", "Cold"]
    assert data.entities.ids == ("genre:Crime", "genre:Thriller", "genre:Animation", "job:spy", "job:cook")
    assert len(data.item_attributes) == 3 and len(data.user_attributes) == 3
    # No splitting: the whole cell is one value.
    data = load_csv(inter, items, users, user_categorical_columns=("job",), separator=None)
    assert "job:spy;cook" in data.entities


def test_timestamps_epoch_and_iso8601(tmp_path):
    inter = write(tmp_path, "inter.csv", "user_id,item_id,timestamp\n"
                                         "u,a,2024-03-01T09:30:00Z\n"
                                         "u,b,2024-03-01T10:30:00+01:00\n"
                                         "u,c,2024-03-01 09:30\n"
                                         "u,d,2024-03-01\n"
                                         "u,e,86400.5\n")
    stamps = load_csv(inter).interactions.timestamp.tolist()
    at = datetime(2024, 3, 1, 9, 30, tzinfo=timezone.utc).timestamp()
    assert stamps == [at, at, at, at - 9.5 * 3600, 86400.5]
    write(tmp_path, "bad.csv", "user_id,item_id,timestamp\nu,a,1700000000\nu,b,yesterday\n")
    with pytest.raises(DataError, match=r"bad\.csv line 3 \(row 2\), column 'timestamp': seconds since the epoch "
                                        r"or an ISO-8601 date/time .*got 'yesterday'"):
        load_csv(tmp_path / "bad.csv")


@pytest.mark.parametrize("cell", ["five", "", "nan", "inf", "4,5"])
def test_a_rating_that_is_not_a_number_names_file_row_and_column(tmp_path, cell):
    inter = write(tmp_path, "ratings.csv", f'user_id,item_id,rating\nu1,i1,4\nu2,i1,"{cell}"\n')
    with pytest.raises(DataError, match=rf"ratings\.csv line 3 \(row 2\), column 'rating': a number, got '{cell}'"):
        load_csv(inter)


def test_missing_file_extension_and_url(tmp_path):
    with pytest.raises(DataError, match=r"nothere\.csv: an interactions table, but the file does not exist"):
        load_csv(tmp_path / "nothere.csv")
    with pytest.raises(DataError, match=r"ratings\.xlsx: an interactions table as a file ending in "
                                        r"\.csv / \.tsv / \.tab, got '\.xlsx'"):
        load_csv(write(tmp_path, "ratings.xlsx", "user_id,item_id\n1,2\n"))
    with pytest.raises(DataError, match=r"URLs are refused"):
        load_csv("https://example.org/ratings.csv")


def test_missing_or_misnamed_columns_list_what_was_found(tmp_path):
    inter = write(tmp_path, "inter.csv", "customer,isbn\n1,2\n")
    with pytest.raises(DataError, match=r"inter\.csv line 1, column 'user_id': a column 'user_id' in an "
                                        r"interactions table; columns found: \['customer', 'isbn'\]; "
                                        r"no column mapping given \(rename a file column: "
                                        r"--columns <file column>=user_id"):
        load_csv(inter)
    with pytest.raises(DataError, match=r"column 'item_id'.*columns found: \['customer', 'isbn'\]; "
                                        r"column mapping customer=user_id"):
        load_csv(inter, columns={"customer": "user_id"})
    with pytest.raises(DataError, match=r"inter\.csv: every key of the column mapping to name a file "
                                        r"column; \['stars'\] match none"):
        load_csv(inter, columns={"customer": "user_id", "isbn": "item_id", "stars": "rating"})
    items = write(tmp_path, "items.csv", "item_id,name\n2,Heat\n")
    with pytest.raises(DataError, match=r"items\.csv line 1, column 'title': the column 'title' named in "
                                        r"item_text_columns; columns found: \['item_id', 'name'\]"):
        load_csv(inter, items, columns={"customer": "user_id", "isbn": "item_id"},
                 item_text_columns=("title",))
    with pytest.raises(DataError, match=r"inter\.csv line 1: unique column names after renaming, "
                                        r"'user_id' appears twice"):
        load_csv(inter, columns={"customer": "user_id", "isbn": "user_id"})
    with pytest.raises(DataError, match=r"dup\.csv line 1: unique column names, 'a' appears twice"):
        read_table(write(tmp_path, "dup.csv", "a,b,a\n1,2,3\n"), "a table")


def test_empty_tables_and_malformed_rows(tmp_path):
    with pytest.raises(DataError, match=r"empty\.csv: an interactions table with a header row, got an empty file"):
        load_csv(write(tmp_path, "empty.csv", ""))
    with pytest.raises(DataError, match=r"header\.csv: an interactions table with at least one data row"):
        load_csv(write(tmp_path, "header.csv", "user_id,item_id\n\n"))
    inter = write(tmp_path, "inter.csv", "user_id,item_id\n1,2\n")
    with pytest.raises(DataError, match=r"items\.csv: an items table with at least one data row"):
        load_csv(inter, write(tmp_path, "items.csv", "item_id,title\n"))
    with pytest.raises(DataError, match=r"wide\.csv line 4 \(row 2\): 2 fields as in the header \['user_id', "
                                        r"'item_id'\], got 3"):
        load_csv(write(tmp_path, "wide.csv", "user_id,item_id\n1,2\n\n1,3,9\n"))
    with pytest.raises(DataError, match=r"blank\.csv line 3 \(row 2\), column 'item_id': a non-empty id"):
        load_csv(write(tmp_path, "blank.csv", "user_id,item_id\n1,2\n1,\n"))
    with pytest.raises(DataError, match=r"quote\.csv line 3: well-formed CSV"):
        load_csv(write(tmp_path, "quote.csv", 'user_id,item_id\n1,2\n1,"3"x\n'))


def test_non_utf8_bytes_name_the_offset_and_line(tmp_path):
    path = write(tmp_path, "latin.csv", b"user_id,item_id\n1,caf\xe9\n")
    with pytest.raises(DataError, match=r"latin\.csv line 2: UTF-8 text, got byte 0xe9 at byte offset 21"):
        load_csv(path)
    # A UTF-8 byte-order mark is fine.
    assert load_csv(write(tmp_path, "bom.csv", b"\xef\xbb\xbfuser_id,item_id\n1,2\n")).users.ids == ("1",)


def test_repeated_interactions_keep_the_latest_and_warn(tmp_path, caplog):
    inter = write(tmp_path, "inter.csv", "user_id,item_id,rating,timestamp\n"
                                         "u,a,5,2024-01-03\nu,a,1,2024-01-01\nu,b,3,2024-01-02\nu,a,2,2024-01-02\n")
    with caplog.at_level(logging.WARNING):
        data = load_csv(inter)
    assert len(data.interactions) == 2
    assert data.interactions.rating.tolist() == [5.0, 3.0]  # u-a kept at its latest time
    assert "2 repeated (user, item) rows dropped" in caplog.text and "inter.csv" in caplog.text


def test_interactions_naming_unknown_users_or_items(tmp_path):
    inter = write(tmp_path, "inter.csv", "user_id,item_id\nu1,i1\nu2,i9\n")
    items = write(tmp_path, "items.csv", "item_id\ni1\ni2\n")
    users = write(tmp_path, "users.csv", "user_id\nu1\n")
    with pytest.raises(DataError, match=r"inter\.csv line 3 \(row 2\), column 'item_id': an item listed in "
                                        r".*items\.csv, got 'i9'"):
        load_csv(inter, items)
    with pytest.raises(DataError, match=r"inter\.csv line 3 \(row 2\), column 'user_id': a user listed in "
                                        r".*users\.csv, got 'u2'"):
        load_csv(inter, users=users)
    with pytest.raises(DataError, match=r"users2\.csv line 3 \(row 2\), column 'user_id': a unique id"):
        load_csv(inter, users=write(tmp_path, "users2.csv", "user_id\nu1\nu1\nu2\n"))


def test_kg_with_link_table_or_iri_column(tmp_path):
    inter = write(tmp_path, "inter.csv", "user_id,item_id\nu1,1\nu2,2\n")
    items = write(tmp_path, "items.csv", "item_id,iri\n1,http://example.org/kg/heat\n2,\n")
    kg = write(tmp_path, "kg.ttl", TTL)
    links = write(tmp_path, "links.csv", "film,entity\n1,http://example.org/kg/heat\n")
    by_table = load_csv(inter, items, kg=kg, links=links, columns={"film": "item_id", "entity": "entity_id"})
    by_iri = load_csv(inter, items, kg=kg, item_iri_column="iri")
    for data in (by_table, by_iri):
        heat = data.entities.index("http://example.org/kg/heat")
        assert data.item_entity.tolist() == [[0, heat]]
        assert data.relations.ids == ("schema:director",)
        assert data.entity_text[heat] == "Heat"
        assert data.entity_text[data.entities.index("http://example.org/kg/mann")] == "Michael Mann"
        assert data.entity_text[data.entities.index("http://example.org/kg/docter")] == ""
    assert by_table.entities == by_iri.entities


def test_links_naming_unknown_items_or_entities(tmp_path):
    inter = write(tmp_path, "inter.csv", "user_id,item_id\nu1,1\n")
    items = write(tmp_path, "items.csv", "item_id,iri\n1,http://example.org/kg/nope\n")
    kg = write(tmp_path, "kg.ttl", TTL)
    bad_item = write(tmp_path, "links.csv", "item_id,entity_id\n1,http://example.org/kg/heat\n7,http://example.org/kg/up\n")
    with pytest.raises(DataError, match=r"links\.csv line 3 \(row 2\), column 'item_id': an item of the data set, got '7'"):
        load_csv(inter, items, kg=kg, links=bad_item)
    bad_entity = write(tmp_path, "links2.csv", "item_id,entity_id\n1,http://example.org/kg/nope\n")
    with pytest.raises(DataError, match=r"links2\.csv line 2 \(row 1\), column 'entity_id': an entity that "
                                        r"appears in the knowledge graph \(.*kg\.ttl\), got "
                                        r"'http://example.org/kg/nope'"):
        load_csv(inter, items, kg=kg, links=bad_entity)
    with pytest.raises(DataError, match=r"items\.csv line 2 \(row 1\), column 'iri': an entity IRI that appears in "
                                        r".*kg\.ttl, got 'http://example.org/kg/nope'"):
        load_csv(inter, items, kg=kg, item_iri_column="iri")
    with pytest.raises(ValueError, match=r"links= .* needs kg="):
        load_csv(inter, items, links=bad_item)
    with pytest.raises(ValueError, match=r"item column roles given without items="):
        load_csv(inter, item_text_columns=("title",))
    with pytest.raises(DataError, match=r"URLs are refused"):
        load_csv(inter, kg="https://example.org/kg.ttl")


def test_kg_as_a_csv_triple_table_and_rdf_errors_pass_through(tmp_path):
    inter = write(tmp_path, "inter.csv", "user_id,item_id\nu1,1\n")
    kg = write(tmp_path, "kg.csv", "head_id,relation_id,tail_id\nm.1,film.director,m.9\nm.9,born_in,m.5\n")
    links = write(tmp_path, "links.csv", "item_id,entity_id\n1,m.1\n")
    data = load_csv(inter, kg=kg, links=links)
    assert data.kg_triples.shape == (2, 3) and data.relations.ids == ("film.director", "born_in")
    assert np.array_equal(data.item_entity, [[0, 0]])
    with pytest.raises(DataError, match=r"kg\.ttl line 2: valid turtle"):
        load_csv(inter, kg=write(tmp_path, "kg.ttl", "@prefix ex: <http://e/> .\nex:a ex:b .\n"))
    with pytest.raises(DataError, match=r"kg\.data: an RDF file extension among"):
        load_csv(inter, kg=write(tmp_path, "kg.data", TTL))
    assert load_csv(inter, kg=tmp_path / "kg.data", kg_format="turtle").num_entities == 4
