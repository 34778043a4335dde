"""RecBole atomic files, and the built-in ml-100k made from them."""
import pytest

from hybridrec.data import DataError
from hybridrec.data.atomic import load_atomic


def write(folder, name, text):
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_atomic_files_load_with_kg_and_links(tmp_path):
    write(tmp_path, "toy.inter", "user_id:token\titem_id:token\trating:float\n1\t10\t4\n2\t10\t2\n2\t011\t5\n")
    write(tmp_path, "toy.item", "item_id:token\ttitle:token_seq\tclass:token_seq\n10\tHeat\tAction Crime\n011\tUp\tAnimation\n")
    write(tmp_path, "toy.kg", "head_id:token\trelation_id:token\ttail_id:token\nm.a\tfilm.director\tm.d\n")
    write(tmp_path, "toy.link", "item_id:token\tentity_id:token\n10\tm.a\n")
    data = load_atomic(tmp_path, "toy", item_text_columns=("title",), item_categorical_columns=("class",))
    assert data.items.ids == ("10", "011")  # exact ids, "011" stays "011"
    assert data.interactions.rating.tolist() == [4.0, 2.0, 5.0]
    assert data.relations.ids == ("class", "film.director")
    assert len(data.item_attributes) == 3 and len(data.kg_triples) == 1
    assert data.item_entity.tolist() == [[0, data.entities.index("m.a")]]


def test_atomic_bad_inputs_name_the_place(tmp_path):
    write(tmp_path, "a.inter", "user_id:token\titem_id:token\trating:float\n1\t10\tfive\n")
    with pytest.raises(DataError, match=r"a.inter line 2 \(row 1\), column 'rating': a number, got 'five'"):
        load_atomic(tmp_path, "a")
    write(tmp_path, "b.inter", "user_id:token\titem_id:token\n1\t10\t7\n")
    with pytest.raises(DataError, match=r"b.inter line 2: 2 tab-separated fields, got 3"):
        load_atomic(tmp_path, "b")
    write(tmp_path, "c.inter", "user:token\titem_id:token\n1\t10\n")
    with pytest.raises(DataError, match=r"c.inter line 1, column 'user_id'.*fields found"):
        load_atomic(tmp_path, "c")
    (tmp_path / "d.inter").write_bytes(b"user_id:token\titem_id:token\n1\t\xff\n")
    with pytest.raises(DataError, match=r"d.inter line 2: UTF-8 text, got byte 0xff"):
        load_atomic(tmp_path, "d")
    with pytest.raises(DataError, match="does not exist"):
        load_atomic(tmp_path, "missing")


@pytest.mark.slow
def test_ml100k_counts(ml100k):
    data = ml100k
    info = data.info()
    assert (info["users"], info["items"], info["interactions"]) == (943, 1682, 100_000)
    assert (info["kg_triples"], info["linked_items"]) == (91_631, 1_598)
    # 24 Freebase relations plus the categorical columns genre, gender and occupation.
    assert info["relations"] == 27
    assert data.item_table["title"][0] == "Toy Story"
    genres = {data.entity_text[t] for h, _, t in data.item_attributes if h == 0}
    assert genres == {"Animation", "Children's", "Comedy"}
