"""``python -m benchmarks.synthetic_catalog --out DIR --seed 0``: a seeded synthetic book
catalogue whose interactions follow latent tastes that show through the knowledge graph and
through text, written as the files a user brings (CSV + Turtle), so that it goes through the
same loaders, with the same flags, as ``kg/examples``::

    python -m benchmarks.synthetic_catalog --out /tmp/cat --seed 0
    python -m hybridrec.train $(python -m benchmarks.synthetic_catalog --flags /tmp/cat)
    python -m benchmarks.run $(python -m benchmarks.synthetic_catalog --flags /tmp/cat) ...

The generative story (every number a field of :class:`CatalogConfig`):

1. **Subjects.** 24 narrow subjects under 6 broad ones (``skos:broader``); each narrow subject
   is a latent topic with its own word list.
2. **Authors** write in one topic, some in a second one (mostly under the same broad subject);
   their productivity is heavy-tailed. An author may have **series** (one topic each); a book
   in a series takes its topic. **Publishers** lean to a few topics; an author mostly stays with
   one house.
3. **Books:** author, optional series (with its position), publisher, a title and description
   drawn from the topic's words mixed with related, wrong and generic ones (some descriptions
   empty), 0-3 subject headings (the true one first, sometimes wrong, sometimes missing,
   further ones related or broad) and a publication date. The latest ``new_release_fraction``
   of books are **new releases**, published during the last ``late_fraction`` of the
   interaction window; the rest were published before it.
4. **Popularity:** a lognormal per author times a lognormal per book, later volumes of a
   series a little less popular; a choice weighs items by ``popularity ** popularity_exponent``.
5. **Users:** heavy-tailed activity (``min_user_items`` plus a lognormal), 1-3 taste topics,
   favourite authors and series (drawn through those topics; busy readers have more of all
   three), a join date, and a personal mix of four ways to choose a book (a Dirichlet around
   :attr:`CatalogConfig.channels`): *topic* (a taste topic, then a book of it: what subjects
   and text carry), *author* (a few books of a favourite author) and *series* (a favourite
   series read on volume after volume): what only the KG's ``schema:author`` /
   ``schema:isPartOf`` edges carry, and *popular* (any book). The mixture stands in for a
   choice in proportion to ``popularity ** a * exp(affinity)`` whose affinity adds a topic part
   and an author/series part: drawn part by part, each draw is one search in cumulative
   weights, and no user-by-item matrix is ever built.
6. **Time:** a user's reads fall between their join date and the window's end; a share of each
   user's draws goes to new releases (dated after their publication) so that they take
   ``new_release_share`` of the late interactions; a user's reads of one series come in
   volume order. A repeated (user, item) is drawn again from the same pool until each user
   has their count; readers whose favourites are exhausted turn to their topics, then to
   popular books.
7. **Ratings** 1-5: higher for books chosen for their author or series than for their topic,
   lowest for popular picks, with noise.

Files written to ``--out`` (each to a temporary name, then renamed; ``catalog.json`` last):
``interactions.csv`` (``user_id,item_id,rating,timestamp``; epoch seconds), ``items.csv``
(``item_id,title,year,genre,iri,description``: ``genre`` the broad subjects of the book's
headings, ``iri`` its KG entity; ``description`` repeats the KG's ``schema:description`` for
CSV-only use: the example's flags read it from the KG, so naming it in ``--item-text`` as well
would say it twice), ``users.csv`` (``user_id,age,gender,occupation``),
``links.csv`` (``item_id,entity_id``), ``graph.ttl`` (books with ``schema:name`` and
``schema:description``, ``schema:author``, ``schema:isPartOf``, ``schema:publisher``,
``dcterms:subject``; people and publishers with ``rdfs:label``; series with ``schema:name``;
subjects with ``skos:prefLabel`` and ``skos:broader``), ``truth.json`` (the latent topic and
popularity of every book; the taste topics, favourite authors and series and channel mix of
every user) and ``catalog.json``
(parameters, counts, the new releases, the loading flags). The same seed gives the same bytes.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

log = logging.getLogger(__name__)

BASE_IRI = "http://example.org/catalog/"

# Broad subject -> narrow subjects -> topic words. Some words are shared across topics (galaxy,
# fleet, captain): text is ambiguous where real text is.
SUBJECTS: tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...] = (
    ("Mystery & Crime", (
        ("Detective fiction", ("detective", "clue", "inspector", "murder", "alibi", "suspect",
                               "manor", "poison", "witness", "sleuth", "motive", "butler",
                               "locked room", "confession", "vicar")),
        ("Police procedurals", ("precinct", "sergeant", "forensics", "homicide", "patrol",
                                "squad", "interrogation", "evidence", "warrant", "badge",
                                "autopsy", "informant", "stakeout", "cold case", "lieutenant")),
        ("Legal thrillers", ("courtroom", "verdict", "attorney", "jury", "trial", "lawyer",
                             "judge", "appeal", "testimony", "prosecutor", "defense",
                             "subpoena", "settlement", "law firm", "conviction")),
        ("Espionage", ("spy", "agent", "cipher", "embassy", "defector", "handler", "mole",
                       "border", "dossier", "surveillance", "safehouse", "codename", "traitor",
                       "intelligence", "cold war")),
    )),
    ("Science Fiction & Fantasy", (
        ("Space opera", ("starship", "galaxy", "empire", "fleet", "admiral", "planet",
                         "hyperspace", "rebellion", "space station", "nebula", "orbit",
                         "captain", "colony", "alien", "warp drive")),
        ("Cyberpunk", ("hacker", "neon", "implant", "android", "network", "megacity",
                       "corporation", "virus", "chrome", "drone", "firewall", "simulation",
                       "cyborg", "data", "grid")),
        ("Epic fantasy", ("dragon", "sword", "kingdom", "wizard", "prophecy", "throne", "elf",
                          "quest", "sorcery", "realm", "crown", "rune", "mage", "citadel",
                          "heir")),
        ("Time travel", ("paradox", "timeline", "time machine", "future", "century", "loop",
                         "chronicle", "era", "traveler", "clockwork", "anomaly", "epoch",
                         "portal", "yesterday", "tomorrow")),
    )),
    ("History", (
        ("Ancient history", ("pharaoh", "rome", "legion", "temple", "senate", "pyramid",
                             "gladiator", "emperor", "oracle", "athens", "papyrus", "dynasty",
                             "tomb", "republic", "empire")),
        ("Medieval history", ("castle", "knight", "crusade", "monastery", "feudal lord",
                              "plague", "abbey", "cathedral", "baron", "chivalry", "siege",
                              "manuscript", "guild", "serf", "charter")),
        ("Military history", ("battle", "general", "army", "campaign", "regiment", "trench",
                              "artillery", "war", "soldier", "front line", "invasion",
                              "victory", "strategy", "division", "armistice")),
        ("Maritime history", ("ship", "voyage", "navy", "harbor", "sail", "captain", "pirate",
                              "ocean", "whaling", "expedition", "shipwreck", "admiralty",
                              "mariner", "fleet", "compass")),
    )),
    ("Science", (
        ("Astronomy", ("telescope", "star", "cosmos", "comet", "black hole", "galaxy",
                       "universe", "supernova", "planet", "eclipse", "observatory", "gravity",
                       "light year", "quasar", "orbit")),
        ("Evolutionary biology", ("species", "evolution", "fossil", "darwin", "gene",
                                  "adaptation", "dinosaur", "ancestor", "extinction",
                                  "natural selection", "mutation", "primate", "lineage",
                                  "ecology", "dna")),
        ("Neuroscience", ("brain", "neuron", "memory", "consciousness", "mind", "cortex",
                          "perception", "synapse", "cognition", "sleep", "emotion", "attention",
                          "nervous system", "dopamine", "learning")),
        ("Climate science", ("climate", "carbon", "glacier", "atmosphere", "ocean", "warming",
                             "emissions", "weather", "drought", "ice sheet", "sea level",
                             "renewable energy", "greenhouse", "forest", "storm")),
    )),
    ("Food & Drink", (
        ("Baking", ("bread", "cake", "pastry", "flour", "oven", "sourdough", "butter", "cookie",
                    "dough", "tart", "yeast", "croissant", "pie", "frosting", "loaf")),
        ("Vegetarian cooking", ("vegetable", "vegan", "salad", "lentil", "tofu", "grain",
                                "herb", "bean", "plant based", "soup", "seasonal", "greens",
                                "chickpea", "mushroom", "kitchen garden")),
        ("Wine & spirits", ("wine", "vineyard", "grape", "cellar", "vintage", "whisky",
                            "cocktail", "distillery", "barrel", "champagne", "harvest",
                            "tasting", "sommelier", "terroir", "bottle")),
        ("Italian cuisine", ("pasta", "tuscany", "risotto", "olive oil", "pizza", "tomato",
                             "basil", "trattoria", "parmesan", "sicily", "espresso", "gelato",
                             "garlic", "antipasti", "nonna")),
    )),
    ("Romance", (
        ("Historical romance", ("duke", "regency", "ballroom", "governess", "countess",
                                "scandal", "courtship", "season", "earl", "heiress", "waltz",
                                "estate", "marriage", "gown", "rake")),
        ("Contemporary romance", ("coffee shop", "small town", "wedding", "neighbor",
                                  "heartbreak", "summer", "crush", "bakery", "roommate",
                                  "billionaire", "first date", "second chance", "best friend",
                                  "love", "holiday")),
        ("Paranormal romance", ("vampire", "werewolf", "witch", "curse", "shifter", "moon",
                                "immortal", "fae", "spell", "bite", "coven", "ghost",
                                "midnight", "demon", "mate")),
        ("Romantic suspense", ("bodyguard", "stalker", "danger", "witness protection",
                               "secret", "protector", "ranch", "cop", "rescue", "threat",
                               "safe house", "chase", "kidnapping", "trust", "revenge")),
    )),
)
GENERIC_NOUNS = ("life", "story", "world", "secret", "house", "night", "light", "road",
                 "heart", "journey", "return", "city", "river", "garden", "island", "winter",
                 "summer", "shadow", "letter", "family", "friend", "mother", "daughter",
                 "father", "son", "child", "stranger", "window", "door", "promise", "memory",
                 "year", "time", "truth", "lie", "game", "art", "book", "voice", "dream",
                 "place", "way", "end", "beginning", "word", "history", "people", "water",
                 "fire", "stone")
GENERIC_ADJECTIVES = ("Last", "Lost", "Hidden", "Silent", "Dark", "Golden", "Forgotten",
                      "Broken", "Secret", "Long", "Little", "Great", "Red", "Wild", "Quiet",
                      "Final", "Burning", "Distant", "Second", "Perfect", "Invisible", "Cold",
                      "Bright", "Strange", "Endless", "Complete", "Essential", "New")
DESCRIPTION_OPENINGS = ("A story of", "An account of", "A guide to", "The tale of", "Explores",
                        "A novel about", "An introduction to", "A portrait of", "Follows",
                        "A celebration of", "Reflections on", "A journey through")
DESCRIPTION_LINKS = ("and", "with", "of", "in", "about", "between", "after", "beyond", "for")
SERIES_SUFFIXES = ("Chronicles", "Saga", "Cycle", "Trilogy", "Sequence", "Series", "Quartet",
                   "Files", "Mysteries", "Books")
FIRST_NAMES = ("Anna", "Ben", "Clara", "David", "Elena", "Felix", "Grace", "Henry", "Iris",
               "James", "Kate", "Leo", "Maria", "Nathan", "Olivia", "Paul", "Rosa", "Samuel",
               "Tara", "Victor", "Wendy", "Yusuf", "Zoe", "Amir", "Bianca", "Carlos", "Diana",
               "Erik", "Fatima", "George", "Hannah", "Ivan", "Julia", "Kenji", "Laura",
               "Marcus", "Nina", "Oscar", "Priya", "Quentin", "Ruth", "Simon", "Thea", "Umar",
               "Vera", "Walter", "Xenia", "Yara", "Zachary", "Agnes")
LAST_NAMES = ("Abbott", "Becker", "Castillo", "Dawson", "Ellis", "Fischer", "Garcia", "Hughes",
              "Ibrahim", "Jensen", "Kowalski", "Lambert", "Moreau", "Nakamura", "Okafor",
              "Petrov", "Quinn", "Rossi", "Schmidt", "Tanaka", "Underwood", "Varga", "Walsh",
              "Xu", "Young", "Zimmer", "Andersen", "Baptiste", "Chen", "Duarte", "Eriksen",
              "Fontaine", "Gallagher", "Hartmann", "Ivanova", "Jordan", "Keller", "Lindqvist",
              "Marsh", "Novak", "O'Brien", "Pereira", "Ramirez", "Sato", "Thornton", "Ueda",
              "Vasquez", "Whitfield", "Yilmaz", "Zhou", "Albright", "Brennan", "Carver",
              "Delacroix", "Everett", "Farrow", "Greer", "Holloway", "Iqbal", "Kaur")
PUBLISHER_WORDS = ("Harbor", "Juniper", "Lantern", "Meridian", "Northgate", "Oakleaf", "Pinnacle",
                   "Quill", "Riverbend", "Saltmarsh", "Thistle", "Umber", "Vellum", "Wren",
                   "Yarrow", "Zephyr", "Amberly", "Bluestone", "Copperfield", "Driftwood",
                   "Ember", "Foxglove", "Granite", "Hollow Oak", "Ironwood", "Kestrel",
                   "Larkspur", "Moorland", "Nightjar", "Orchard", "Paperbark", "Redwing",
                   "Sparrow", "Tidewater", "Willow", "Aster", "Birchwood", "Cobalt", "Dunmore",
                   "Evergreen")
PUBLISHER_SUFFIXES = ("Press", "Books", "House", "Publishing", "& Sons", "Editions", "Media",
                      "Imprints")
GENDERS = ("F", "M", "X")
OCCUPATIONS = ("student", "teacher", "engineer", "nurse", "retired", "writer", "librarian",
               "designer", "clerk", "lawyer", "chef", "scientist", "programmer", "artist",
               "salesperson", "farmer", "doctor", "historian")
# Per broad subject, occupations its readers hold more often (a weak user-side signal).
BROAD_OCCUPATIONS = (("lawyer", "clerk", "retired"), ("programmer", "engineer", "student"),
                     ("historian", "teacher", "retired"), ("scientist", "doctor", "engineer"),
                     ("chef", "farmer", "designer"), ("nurse", "writer", "artist"))
BROAD_AGE = (52.0, 29.0, 55.0, 41.0, 44.0, 36.0)  # mean reader age per broad subject

# How a book is chosen (the ``channel`` of an interaction).
TOPIC, AUTHOR, SERIES, POPULAR = 0, 1, 2, 3
CHANNELS = ("topic", "author", "series", "popular")

_YEAR = 365.25 * 86400.0
_WIDEST = 3  # most taste topics, favourite authors (x2) and series a busy reader adds


@dataclass(frozen=True)
class CatalogConfig:
    """Every parameter of the generator; saved in ``catalog.json``.

    Args: see the comment on each field.
    """

    num_users: int = 2000  # users (all of them have interactions)
    num_items: int = 3000  # books
    num_interactions: int = 60_000  # distinct (user, item) rows to write
    seed: int = 0  # seeds numpy's default_rng; the same seed gives the same files
    # Catalogue structure.
    books_per_author: float = 5.0  # mean books per author (productivity is lognormal)
    author_productivity_sigma: float = 1.0  # lognormal sigma of an author's share of books
    second_topic: float = 0.35  # share of authors who also write in a second topic
    second_topic_related: float = 0.7  # ... which falls under their first topic's broad subject
    series_share: float = 0.6  # share of books of authors with 3+ books that are in a series
    house_loyalty: float = 0.75  # share of an author's books published by their main house
    # Subject headings.
    subjects_missing: float = 0.08  # books without any subject heading
    subject_wrong: float = 0.1  # first heading is a wrong (random) topic
    extra_subjects: tuple[float, float] = (0.35, 0.12)  # shares with a 2nd / 3rd heading
    # Text.
    title_topic_words: float = 0.55  # a title noun is a topic word (else generic)
    description_words: tuple[float, float, float] = (0.45, 0.1, 0.05)  # a description word is
    # from the book's topic, a related topic, any topic (else a generic word)
    description_missing: float = 0.15  # books with an empty description
    # Popularity.
    author_popularity_sigma: float = 1.2  # lognormal sigma shared by an author's books
    book_popularity_sigma: float = 1.4  # lognormal sigma of each book on top of its author's
    series_decay: float = 0.15  # log-popularity lost per later volume of a series
    popularity_exponent: float = 1.0  # a choice weighs items by popularity ** this
    series_run: float = 0.8  # chance that a reader of a favourite series reads on to the next
    # volume (a series is started at volume 1, sometimes later)
    author_run: float = 2.5  # mean books read when a favourite author is chosen
    fan_popularity_exponent: float = 0.3  # ... times this among a favourite's books: a fan
    # reads the less popular ones too
    # Users.
    min_user_items: int = 5  # fewest interactions of a user
    activity_sigma: float = 1.1  # lognormal sigma of a user's interactions above the minimum
    taste_topics: tuple[float, float, float] = (0.3, 0.45, 0.25)  # P(1, 2, 3 taste topics)
    related_taste: float = 0.6  # a further taste topic shares the first one's broad subject
    favourite_authors: int = 3  # favourite authors per user (drawn through taste topics)
    favourite_series: int = 2  # favourite series per user (drawn through taste topics)
    channels: tuple[float, float, float, float] = (0.35, 0.25, 0.3, 0.1)  # mean shares of the
    # topic / author / series / popular choices
    channel_concentration: float = 6.0  # Dirichlet concentration of a user's channel mix
    # Time.
    start: str = "2020-01-01"  # interaction window start (UTC)
    end: str = "2024-12-31"  # interaction window end (UTC)
    backlist_years: float = 6.0  # mean age (years) of a backlist book at the window start
    new_release_fraction: float = 0.1  # latest share of books, published in the late period
    late_fraction: float = 0.2  # last share of the window in which new releases appear
    new_release_share: float = 0.2  # share of late interactions that go to new releases

    def __post_init__(self) -> None:
        for name in ("num_users", "num_items", "min_user_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"CatalogConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.num_items < 20:
            raise ValueError(f"CatalogConfig: num_items must be >= 20, got {self.num_items}")
        if self.num_interactions < self.num_users * self.min_user_items:
            raise ValueError(f"CatalogConfig: num_interactions={self.num_interactions} is below "
                             f"num_users * min_user_items = {self.num_users * self.min_user_items}")
        if self.num_interactions > self.num_users * max(self.min_user_items, self.num_items // 5):
            raise ValueError(f"CatalogConfig: num_interactions={self.num_interactions} is over "
                             f"what the users can read (at most a fifth of the books each); "
                             f"add users or items")
        for name in ("second_topic", "second_topic_related", "series_share", "house_loyalty",
                     "subjects_missing", "subject_wrong", "title_topic_words",
                     "description_missing", "related_taste", "new_release_fraction",
                     "new_release_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"CatalogConfig: {name} must be in [0, 1], got "
                                 f"{getattr(self, name)}")
        if not 0 < self.late_fraction < 0.9:
            raise ValueError(f"CatalogConfig: late_fraction must be in (0, 0.9), got "
                             f"{self.late_fraction}")
        if _epoch(self.end) <= _epoch(self.start):
            raise ValueError(f"CatalogConfig: end {self.end!r} must be after start {self.start!r}")
        if sum(self.description_words) > 1 or sum(self.extra_subjects) > 1 - self.subjects_missing:
            raise ValueError("CatalogConfig: description_words and extra_subjects shares must "
                             "leave room for the rest")
        if len(self.channels) != 4 or min(self.channels) < 0 or sum(self.channels) <= 0:
            raise ValueError(f"CatalogConfig: channels must be four non-negative shares, got "
                             f"{self.channels}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CatalogConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"CatalogConfig: unknown keys {unknown}; valid: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _epoch(day: str) -> float:
    return datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp()


# ---------------------------------------------------------------------------------------------
# Sampling helpers.


def _categorical(weights: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per draw ``k``, a column of ``weights[rows[k]]`` drawn in proportion to that row.

    The rows' cumulative shares are laid end to end (row ``r`` spans ``[r, r + 1]``) so one
    ``searchsorted`` serves every draw. A row summing to zero gives its last column.
    """
    cdf = np.cumsum(weights, axis=1, dtype=np.float64)
    total = cdf[:, -1:]
    cdf /= np.where(total > 0, total, 1.0)
    cdf[:, -1] = 1.0
    flat = (cdf + np.arange(len(cdf))[:, None]).ravel()
    column = np.searchsorted(flat, rows + rng.random(len(rows)), side="right") - rows * cdf.shape[1]
    return np.minimum(column, cdf.shape[1] - 1)


class _Groups:
    """Items grouped by an integer key (``-1``: in no group); a draw from group ``g`` picks one
    of its items in proportion to ``weight``, or ``-1`` when the group is empty."""

    def __init__(self, key: np.ndarray, weight: np.ndarray, num_groups: int) -> None:
        member = np.flatnonzero(key >= 0)
        order = member[np.argsort(key[member], kind="stable")]
        self.items = order
        self.cum = np.cumsum(weight[order], dtype=np.float64)
        bounds = np.searchsorted(key[order], np.arange(num_groups + 1))
        edges = np.concatenate([[0.0], self.cum])
        self.lo, self.hi = edges[bounds[:-1]], edges[bounds[1:]]

    def draw(self, group: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        lo, hi = self.lo[group], self.hi[group]
        # Below hi: rounding must not carry a draw into the next group.
        x = np.minimum(lo + rng.random(len(group)) * (hi - lo), np.nextafter(hi, -np.inf))
        position = np.minimum(np.searchsorted(self.cum, x, side="right"), len(self.cum) - 1)
        out = self.items[position] if len(self.items) else np.zeros(len(group), np.int64)
        return np.where(hi > lo, out, -1)


def _rank_in_group(group: np.ndarray) -> np.ndarray:
    """Per element, how many earlier elements share its group (0, 1, 2, ...)."""
    order = np.argsort(group, kind="stable")
    sorted_group = group[order]
    start = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    counts = np.diff(np.r_[start, len(group)])
    rank = np.empty(len(group), np.int64)
    rank[order] = np.arange(len(group)) - np.repeat(start, counts)
    return rank


def _scale_to_total(raw: np.ndarray, total: int, cap: int) -> np.ndarray:
    """Non-negative integers in proportion to ``raw``, each at most ``cap``, summing to
    ``total`` (which must be at most ``cap * len(raw)``)."""
    # Water-filling: those over the cap keep the cap, the others share what is left.
    capped = np.zeros(len(raw), bool)
    while True:
        share = np.where(capped, cap, raw * (total - cap * capped.sum()) / raw[~capped].sum())
        over = ~capped & (share > cap)
        if not over.any():
            break
        capped |= over
    out = np.floor(share).astype(np.int64)
    # The largest remainders take the units that rounding down lost.
    out[np.argsort(out - share, kind="stable")[:total - int(out.sum())]] += 1
    return out


# ---------------------------------------------------------------------------------------------
# The catalogue in memory.


@dataclass
class Catalog:
    """The generated catalogue, as arrays (indices are 0-based positions in each table).

    ``item_*`` arrays are ``[num_items]``; ``user_*`` arrays ``[num_users]`` (favourites
    ``[num_users, k]``); interactions are rows ``[N]`` sorted by user, then time.
    """

    config: CatalogConfig
    topic_labels: list[str]
    broad_labels: list[str]
    author_names: list[str]
    series_names: list[str]
    series_author: np.ndarray
    series_topic: np.ndarray
    publisher_names: list[str]
    item_topic: np.ndarray
    item_author: np.ndarray
    item_series: np.ndarray  # -1: in no series
    item_position: np.ndarray  # volume number in its series (0 when in none)
    item_publisher: np.ndarray
    item_subjects: list[list[int]]  # subject indices: topics 0..T-1, then broad T..T+B-1
    item_published: np.ndarray  # epoch seconds
    item_new: np.ndarray  # bool: a new release
    item_popularity: np.ndarray
    titles: list[str]
    descriptions: list[str]
    user_topics: np.ndarray  # [U, 3] taste topics, -1 padded
    user_topic_weights: np.ndarray  # [U, 3]
    user_authors: np.ndarray  # [U, favourite_authors]
    user_series: np.ndarray  # [U, favourite_series], -1 when the taste has no series
    user_channels: np.ndarray  # [U, 4]
    user_start: np.ndarray  # epoch seconds
    user_age: np.ndarray
    user_gender: np.ndarray
    user_occupation: np.ndarray
    user: np.ndarray  # [N]
    item: np.ndarray  # [N]
    rating: np.ndarray  # [N] int8
    timestamp: np.ndarray  # [N] int64 epoch seconds
    channel: np.ndarray  # [N] how each row was chosen (CHANNELS)
    late_start: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


def _words(rng: np.random.Generator, topics: np.ndarray, count: int, shares: tuple[float, ...],
           vocab: _Vocabulary) -> np.ndarray:
    """``[len(topics), count]`` word ids: per word, from the topic, a related topic (same
    broad subject), any topic, or the generic nouns, by ``shares`` (the rest generic)."""
    n = len(topics)
    kind = _categorical(np.array([[*shares, 1 - sum(shares)]]), np.zeros(n * count, np.int64), rng)
    source = np.repeat(topics, count)
    related = vocab.broad[source] * vocab.per_broad + rng.integers(0, vocab.per_broad, n * count)
    source = np.where(kind == 1, related, source)
    source = np.where(kind == 2, rng.integers(0, vocab.num_topics, n * count), source)
    pick = (rng.random(n * count) * vocab.topic_size[source]).astype(np.int64)
    topical = vocab.topic_offset[source] + pick
    generic = rng.integers(0, len(GENERIC_NOUNS), n * count)
    return np.where(kind <= 2, topical, generic + len(vocab.topic_words)).reshape(n, count)


@dataclass(frozen=True)
class _Vocabulary:
    topic_words: tuple[str, ...]  # every topic's words, topic after topic
    topic_offset: np.ndarray
    topic_size: np.ndarray
    broad: np.ndarray  # topic -> broad subject
    num_topics: int
    per_broad: int

    @classmethod
    def build(cls) -> _Vocabulary:
        lists = [words for _, narrow in SUBJECTS for _, words in narrow]
        sizes = np.array([len(w) for w in lists])
        broad = np.repeat(np.arange(len(SUBJECTS)), [len(n) for _, n in SUBJECTS])
        per_broad = {len(n) for _, n in SUBJECTS}
        if len(per_broad) != 1:
            raise AssertionError("SUBJECTS: every broad subject needs as many narrow ones")
        return cls(tuple(w for words in lists for w in words),
                   np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes, broad, len(lists),
                   per_broad.pop())

    def word(self, index: int) -> str:
        if index < len(self.topic_words):
            return self.topic_words[index]
        return GENERIC_NOUNS[index - len(self.topic_words)]


def _titles(rng: np.random.Generator, topics: np.ndarray, config: CatalogConfig,
            vocab: _Vocabulary) -> list[str]:
    share = (config.title_topic_words, 0.0, 0.0)
    nouns = _words(rng, topics, 2, share, vocab)
    adjective = rng.integers(0, len(GENERIC_ADJECTIVES), len(topics))
    form = rng.integers(0, 5, len(topics))
    titles = []
    for (a, b), adj, f in zip(nouns.tolist(), adjective.tolist(), form.tolist()):
        n1, n2, adj_word = vocab.word(a).title(), vocab.word(b).title(), GENERIC_ADJECTIVES[adj]
        titles.append((f"The {adj_word} {n1}", f"{n1} of the {n2}", f"A {adj_word} {n1}",
                       f"{n1} and {n2}", f"The {n1}")[f])
    return titles


def _descriptions(rng: np.random.Generator, topics: np.ndarray, config: CatalogConfig,
                  vocab: _Vocabulary) -> list[str]:
    longest = 12
    words = _words(rng, topics, longest, config.description_words, vocab)
    length = rng.integers(5, longest + 1, len(topics))
    opening = rng.integers(0, len(DESCRIPTION_OPENINGS), len(topics))
    links = rng.integers(0, len(DESCRIPTION_LINKS), (len(topics), longest))
    empty = rng.random(len(topics)) < config.description_missing
    texts = []
    for row, n, o, link, none in zip(words.tolist(), length.tolist(), opening.tolist(),
                                     links.tolist(), empty.tolist()):
        if none:
            texts.append("")
            continue
        # Pairs of words joined by a small word: "bread with flour, oven in cake ...".
        pieces = [f"{vocab.word(row[k])} {DESCRIPTION_LINKS[link[k]]} {vocab.word(row[k + 1])}"
                  if k + 1 < n else vocab.word(row[k]) for k in range(0, n, 2)]
        texts.append(f"{DESCRIPTION_OPENINGS[o]} {', '.join(pieces)}.")
    return texts


def generate(config: CatalogConfig = CatalogConfig()) -> Catalog:
    """Draw a catalogue (see the module docstring for the story), all in memory."""
    rng = np.random.default_rng(config.seed)
    vocab = _Vocabulary.build()
    num_topics = vocab.num_topics
    num_items, num_users = config.num_items, config.num_users
    start, end = _epoch(config.start), _epoch(config.end)
    late_start = start + (1 - config.late_fraction) * (end - start)
    topic_share = rng.dirichlet(np.full(num_topics, 4.0))  # some topics are bigger

    # 1. Authors: topics, productivity; each writes at least one book.
    num_authors = int(np.clip(round(num_items / config.books_per_author), 4, num_items))
    author_topic = _categorical(topic_share[None], np.zeros(num_authors, np.int64), rng)
    related = (vocab.broad[author_topic] * vocab.per_broad
               + rng.integers(0, vocab.per_broad, num_authors))
    second = np.where(rng.random(num_authors) < config.second_topic_related, related,
                      rng.integers(0, num_topics, num_authors))
    has_second = (rng.random(num_authors) < config.second_topic) & (second != author_topic)
    author_weight = rng.lognormal(0.0, config.author_productivity_sigma, num_authors)
    item_author = np.concatenate([
        np.arange(num_authors),
        _categorical(author_weight[None], np.zeros(num_items - num_authors, np.int64), rng)])
    item_author = item_author[rng.permutation(num_items)]
    books_of = np.bincount(item_author, minlength=num_authors)

    # 2. Series: authors with 3+ books have 1-3 (prolific ones more); a series has one of its
    # author's topics.
    series_count = np.where(books_of >= 3, 1 + (books_of >= 12) + (books_of >= 30), 0)
    series_offset = np.concatenate([[0], np.cumsum(series_count)[:-1]])
    series_author = np.repeat(np.arange(num_authors), series_count)
    use_second = has_second[series_author] & (rng.random(len(series_author)) < 0.3)
    series_topic = np.where(use_second, second[series_author], author_topic[series_author])
    in_series = (series_count[item_author] > 0) & (rng.random(num_items) < config.series_share)
    pick = (rng.random(num_items) * series_count[item_author]).astype(np.int64)
    item_series = np.where(in_series, series_offset[item_author] + pick, -1)
    used, item_series_compact = np.unique(item_series[in_series], return_inverse=True)
    item_series[in_series] = item_series_compact  # only series that have a book
    series_author, series_topic = series_author[used], series_topic[used]

    # 3. Topics: a series book takes the series' topic, others one of the author's topics.
    own = np.where(has_second[item_author] & (rng.random(num_items) < 0.25),
                   second[item_author], author_topic[item_author])
    item_topic = np.where(in_series, series_topic[np.maximum(item_series, 0)], own)

    # 4. Publication: new releases in the late period, the backlist before the window.
    num_new = int(round(config.new_release_fraction * num_items))
    item_new = np.zeros(num_items, bool)
    item_new[rng.permutation(num_items)[:num_new]] = True
    age = np.minimum(rng.exponential(config.backlist_years, num_items), 40.0) * _YEAR
    fresh = late_start + rng.random(num_items) * (end - 30 * 86400 - late_start)
    item_published = np.floor(np.where(item_new, fresh, start - 86400 - age)).astype(np.int64)
    # Volumes in publication order.
    item_position = np.zeros(num_items, np.int64)
    members = np.flatnonzero(in_series)
    members = members[np.lexsort((members, item_published[members], item_series[members]))]
    item_position[members] = _rank_in_group(item_series[members]) + 1

    # 5. Publishers lean to a few topics; authors keep a main house.
    names = len(PUBLISHER_WORDS) * len(PUBLISHER_SUFFIXES)
    num_publishers = int(np.clip(num_items // 100, 8, names))
    lean = rng.dirichlet(np.full(num_topics, 0.3), num_publishers) * rng.lognormal(
        0, 0.7, num_publishers)[:, None]  # [P, T]
    house = _categorical(lean.T, author_topic, rng)  # per author
    other = _categorical(lean.T, item_topic, rng)
    item_publisher = np.where(rng.random(num_items) < config.house_loyalty, house[item_author],
                              other)
    used, item_publisher = np.unique(item_publisher, return_inverse=True)
    publisher_pick = rng.permutation(names)[:num_publishers]
    publisher_names = [f"{PUBLISHER_WORDS[k // len(PUBLISHER_SUFFIXES)]} "
                       f"{PUBLISHER_SUFFIXES[k % len(PUBLISHER_SUFFIXES)]}"
                       for k in publisher_pick[used].tolist()]

    # 6. Subject headings: the true topic first (sometimes wrong), then related or broad ones.
    how_many = _categorical(np.array([[config.subjects_missing,
                                       1 - config.subjects_missing - sum(config.extra_subjects),
                                       *config.extra_subjects]]),
                            np.zeros(num_items, np.int64), rng)
    first = np.where(rng.random(num_items) < config.subject_wrong,
                     rng.integers(0, num_topics, num_items), item_topic)
    extra_kind = rng.random((num_items, 2))
    extra_related = (vocab.broad[item_topic][:, None] * vocab.per_broad
                     + rng.integers(0, vocab.per_broad, (num_items, 2)))
    extra = np.where(extra_kind < 0.6, extra_related,
                     np.where(extra_kind < 0.85, num_topics + vocab.broad[item_topic][:, None],
                              rng.integers(0, num_topics, (num_items, 2))))
    item_subjects = [list(dict.fromkeys([f, *e][:k])) for f, e, k in
                     zip(first.tolist(), extra.tolist(), how_many.tolist())]

    # 7. Popularity: author x book, later volumes less.
    log_popularity = (rng.normal(0, config.author_popularity_sigma, num_authors)[item_author]
                      + rng.normal(0, config.book_popularity_sigma, num_items)
                      - config.series_decay * np.maximum(item_position - 1, 0))
    item_popularity = np.exp(log_popularity)

    # 8. Text.
    titles = _titles(rng, item_topic, config, vocab)
    descriptions = _descriptions(rng, item_topic, config, vocab)
    first_name = rng.integers(0, len(FIRST_NAMES), num_authors)
    initial = np.where(rng.random(num_authors) < 0.35, rng.integers(0, 26, num_authors), -1)
    last_name = rng.integers(0, len(LAST_NAMES), num_authors)
    author_names = [f"{FIRST_NAMES[f]} {chr(65 + i) + '. ' if i >= 0 else ''}{LAST_NAMES[s]}"
                    for f, i, s in zip(first_name.tolist(), initial.tolist(), last_name.tolist())]
    series_word = _words(rng, series_topic, 1, (1.0, 0.0, 0.0), vocab)[:, 0]
    series_suffix = rng.integers(0, len(SERIES_SUFFIXES), len(series_topic))
    series_names = [f"The {vocab.word(w).title()} {SERIES_SUFFIXES[s]}"
                    for w, s in zip(series_word.tolist(), series_suffix.tolist())]

    # 9. Users: activity, tastes, favourites, channel mix, join date, profile. Busy readers
    # read more widely: more taste topics, authors and series.
    cap = max(config.min_user_items, num_items // 5)
    extra_items = rng.lognormal(0.0, config.activity_sigma, num_users)
    user_count = config.min_user_items + _scale_to_total(
        extra_items, config.num_interactions - num_users * config.min_user_items,
        cap - config.min_user_items)
    # 0 below 40 books, 1 from 40, 2 from 80, 3 from 160.
    wider = np.clip(np.floor(np.log2(user_count / 40)) + 1, 0, _WIDEST).astype(np.int64)
    num_taste = 1 + _categorical(np.array([config.taste_topics]), np.zeros(num_users, np.int64),
                                 rng) + wider
    width = 3 + _WIDEST  # most taste topics
    first_taste = _categorical(topic_share[None], np.zeros(num_users, np.int64), rng)
    near = (vocab.broad[first_taste][:, None] * vocab.per_broad
            + rng.integers(0, vocab.per_broad, (num_users, width - 1)))
    anywhere = _categorical(topic_share[None], np.zeros((width - 1) * num_users, np.int64),
                            rng).reshape(num_users, -1)
    others = np.where(rng.random((num_users, width - 1)) < config.related_taste, near, anywhere)
    user_topics = np.concatenate([first_taste[:, None], others], axis=1)
    user_topics[np.arange(width)[None] >= num_taste[:, None]] = -1
    for k in range(1, width):  # a repeated topic is dropped
        user_topics[(user_topics[:, k:k + 1] == user_topics[:, :k]).any(1), k] = -1
    user_topic_weights = np.where(user_topics >= 0, rng.dirichlet(np.full(width, 2.0), num_users)
                                  + np.eye(width)[0], 0.0)
    user_topic_weights /= user_topic_weights.sum(1, keepdims=True)

    def taste_draw(rows: np.ndarray) -> np.ndarray:
        return user_topics[rows, _categorical(user_topic_weights, rows, rng)]

    def favourites(groups: _Groups, base: int, more: int) -> np.ndarray:
        """``[U, base + _WIDEST * more]`` picks through taste topics: ``base + wider * more``
        of them per user, then ``-1``."""
        k = base + _WIDEST * more
        rows = np.repeat(np.arange(num_users), k)
        picks = groups.draw(taste_draw(rows), rng).reshape(num_users, k)
        picks[np.arange(k)[None] >= (base + more * wider)[:, None]] = -1
        return picks

    fan_weight = item_popularity ** (config.popularity_exponent * config.fan_popularity_exponent)
    author_weight_total = np.bincount(item_author, weights=fan_weight, minlength=num_authors)
    user_authors = favourites(_Groups(author_topic, author_weight_total, num_topics),
                              config.favourite_authors, 2)
    series_weight = np.bincount(item_series[in_series], weights=fan_weight[in_series],
                                minlength=len(series_topic))
    user_series = favourites(_Groups(series_topic, series_weight, num_topics),
                             config.favourite_series, 1)
    user_channels = rng.dirichlet(np.asarray(config.channels) / sum(config.channels)
                                  * config.channel_concentration, num_users)
    # No favourite found in their topics (small catalogues): no such choices.
    user_channels[:, AUTHOR] *= (user_authors >= 0).any(1)
    user_channels[:, SERIES] *= (user_series >= 0).any(1)
    user_channels /= user_channels.sum(1, keepdims=True)
    joined = start + rng.beta(1.0, 2.5, num_users) * (late_start - start)  # more join early
    user_start = np.floor(joined).astype(np.int64)
    main_broad = vocab.broad[first_taste]
    user_age = np.clip(np.rint(rng.normal(np.asarray(BROAD_AGE)[main_broad], 12.0)), 16,
                       90).astype(np.int64)
    user_gender = _categorical(np.array([[0.52, 0.45, 0.03]]), np.zeros(num_users, np.int64), rng)
    leaning = np.asarray([[OCCUPATIONS.index(o) for o in group] for group in BROAD_OCCUPATIONS])
    user_occupation = np.where(rng.random(num_users) < 0.4,
                               leaning[main_broad, rng.integers(0, 3, num_users)],
                               rng.integers(0, len(OCCUPATIONS), num_users))

    # 10. Interactions: draw, drop repeats, draw again for the users still short.
    weight = item_popularity ** config.popularity_exponent
    pool = item_new.astype(np.int64)  # 0: backlist, 1: new releases
    by_topic = _Groups(pool * num_topics + item_topic, weight, 2 * num_topics)
    by_author = _Groups(pool * num_authors + item_author, fan_weight, 2 * num_authors)
    series_key = np.where(in_series, pool * len(series_topic) + item_series, -1)
    by_series = _Groups(series_key, fan_weight, 2 * len(series_topic))
    by_pool = _Groups(pool, weight, 2)
    # Share of draws that go to new releases, so that they take new_release_share of the late
    # rows: a user's backlist reads fall uniformly in [join, end], a share f_u of them late.
    late_of_user = (end - late_start) / (end - user_start)
    late_backlist = float((user_count * late_of_user).sum())
    r = config.new_release_share if num_new else 0.0
    new_share = r * late_backlist / (config.num_interactions * (1 - r) + r * late_backlist)

    # Backlist volumes of each series in order, for reading runs.
    volumes = np.flatnonzero(in_series & ~item_new)
    volumes = volumes[np.lexsort((item_position[volumes], item_series[volumes]))]
    volumes_first = np.searchsorted(item_series[volumes], np.arange(len(series_topic)))
    volumes_count = np.bincount(item_series[volumes], minlength=len(series_topic))

    def draw(rows: np.ndarray, new: np.ndarray, explore: float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Draws for users ``rows`` from the backlist (``new`` 0) or new releases (1):
        ``(rows, new, item, channel)``, longer than the input where a draw is a run (a
        favourite series read on volume after volume, several books of a favourite author).
        With probability ``explore`` a draw is a topic pick (and with ``explore ** 2`` a
        popular one): exhausted favourites send a reader to their topics, then anywhere."""
        channel = _categorical(user_channels, rows, rng)
        channel[rng.random(len(rows)) < explore] = TOPIC
        channel[rng.random(len(rows)) < explore ** 2] = POPULAR
        # 1. Runs: a series from volume 1 (or from a later one), an author's books.
        series = np.full(len(rows), -1, np.int64)
        m = np.flatnonzero(channel == SERIES)
        series[m] = user_series[rows[m], _categorical(user_series >= 0, rows[m], rng)]
        size = np.where((series >= 0) & (new == 0), volumes_count[np.maximum(series, 0)], 0)
        later = (rng.random(len(rows)) * size).astype(np.int64)
        first = np.where(rng.random(len(rows)) < 0.6, 0, later)
        length = np.where(size > 0, 1 + rng.binomial(np.maximum(size - first - 1, 0),
                                                     config.series_run), 1)
        length = np.where(channel == AUTHOR, rng.poisson(config.author_run - 1, len(rows)) + 1,
                          length)
        slot = np.repeat(np.arange(len(rows)), length)
        offset = np.arange(len(slot)) - np.repeat(np.cumsum(length) - length, length)
        rows, new, channel, series = rows[slot], new[slot], channel[slot], series[slot]
        item = np.full(len(rows), -1, np.int64)
        m = np.flatnonzero(size[slot] > 0)
        item[m] = volumes[volumes_first[series[m]] + first[slot][m] + offset[m]]
        m = np.flatnonzero((series >= 0) & (new == 1))  # a new volume of a followed series
        item[m] = by_series.draw(len(series_topic) + series[m], rng)
        m = np.flatnonzero(channel == AUTHOR)
        author = user_authors[rows[m], _categorical(user_authors >= 0, rows[m], rng)]
        got = by_author.draw(new[m] * num_authors + np.maximum(author, 0), rng)
        item[m] = np.where(author >= 0, got, -1)
        # 2. Topic draws, and the fallback of author/series draws that found nothing.
        channel = np.where((item < 0) & (channel != POPULAR), TOPIC, channel)
        m = np.flatnonzero(channel == TOPIC)
        item[m] = by_topic.draw(new[m] * num_topics + taste_draw(rows[m]), rng)
        channel[item < 0] = POPULAR
        m = np.flatnonzero(item < 0)
        item[m] = by_pool.draw(new[m], rng)
        return rows, new, item, channel

    # Each user's count splits into backlist and new-release draws; a repeated (user, item) is
    # drawn again from the same pool (so the pools keep their shares), and users whose tastes
    # are exhausted drift to popular picks round by round.
    want_new = np.minimum(rng.binomial(user_count, new_share), num_new // 3)
    want = np.stack([user_count - want_new, want_new], axis=1).ravel()  # [2U]: user * 2 + pool
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    channels: list[np.ndarray] = []
    have = np.zeros(0, np.int64)  # sorted user * num_items + item keys drawn so far
    count = np.zeros(2 * num_users, np.int64)
    rounds = 0
    for rounds in range(1, 41):
        short = want - count
        if not short.any():
            break
        ask = short if rounds == 1 else short * 2 ** min(rounds - 1, 8)
        group = np.repeat(np.arange(2 * num_users), ask)
        rows, new, item, channel = draw(group // 2, group % 2,
                                        explore=min(1.0, max(0, rounds - 2) / 8))
        group = rows * 2 + new
        key = rows * num_items + item
        # New keys: the first of equal keys in this round (a stable sort keeps draw order),
        # and none drawn before (a search in the sorted keys so far).
        order = np.argsort(key, kind="stable")
        fresh = np.zeros(len(key), bool)
        fresh[order] = np.r_[True, key[order][1:] != key[order][:-1]]
        seen = np.searchsorted(have, key)
        fresh &= have[np.minimum(seen, len(have) - 1)] != key if len(have) else True
        keep = np.flatnonzero(fresh)
        keep = keep[_rank_in_group(group[keep]) < short[group[keep]]]
        users.append(rows[keep])
        items.append(item[keep])
        channels.append(channel[keep])
        have = np.sort(np.concatenate([have, key[keep]]))
        count += np.bincount(group[keep], minlength=2 * num_users)
    user = np.concatenate(users)
    item = np.concatenate(items)
    channel = np.concatenate(channels).astype(np.int8)

    # 11. Times: uniform over the user's active span; new releases after publication.
    begin = np.maximum(user_start[user], np.where(item_new[item], item_published[item], 0))
    timestamp = np.floor(begin + rng.random(len(user)) * (end - begin)).astype(np.int64)
    # A user's reads of one series come in volume order (the times of the group, reassigned).
    rows = np.flatnonzero(item_series[item] >= 0)
    by_time = rows[np.lexsort((timestamp[rows], item_series[item[rows]], user[rows]))]
    by_volume = rows[np.lexsort((item_position[item[rows]], item_series[item[rows]], user[rows]))]
    timestamp[by_volume] = timestamp[by_time]

    # 12. Ratings: a favourite author's or series' book pleases most, a popular pick least.
    bonus = np.array([0.4, 0.9, 0.9, -0.2])[channel]
    rating = np.clip(np.rint(3.2 + bonus + rng.normal(0, 0.9, len(user))), 1, 5).astype(np.int8)

    order = np.lexsort((item, timestamp, user))
    late = timestamp[order] >= late_start
    stats = {"draw_rounds": rounds, "new_release_draw_share": round(new_share, 4),
             "late_rows": int(late.sum()),
             "late_new_release_share": round(float(item_new[item[order]][late].mean()), 4)
             if late.any() else 0.0,
             "channel_shares": {name: round(float((channel == k).mean()), 4)
                                for k, name in enumerate(CHANNELS)}}
    log.info("%d interactions drawn in %d rounds; channel shares %s", len(user), rounds,
             stats["channel_shares"])
    return Catalog(
        config=config, topic_labels=[label for _, narrow in SUBJECTS for label, _ in narrow],
        broad_labels=[label for label, _ in SUBJECTS], author_names=author_names,
        series_names=series_names, series_author=series_author, series_topic=series_topic,
        publisher_names=publisher_names, item_topic=item_topic, item_author=item_author,
        item_series=item_series, item_position=item_position, item_publisher=item_publisher,
        item_subjects=item_subjects, item_published=item_published, item_new=item_new,
        item_popularity=item_popularity, titles=titles, descriptions=descriptions,
        user_topics=user_topics, user_topic_weights=user_topic_weights, user_authors=user_authors,
        user_series=user_series, user_channels=user_channels, user_start=user_start,
        user_age=user_age, user_gender=user_gender, user_occupation=user_occupation,
        user=user[order], item=item[order], rating=rating[order], timestamp=timestamp[order],
        channel=channel[order], late_start=int(late_start), stats=stats)


# ---------------------------------------------------------------------------------------------
# Files.

#: ``catalog.json``'s format tag.
FORMAT = "hybridrec-synthetic-catalog/1"
_CHUNK = 1 << 20  # interaction rows formatted per write


def data_flags(folder: str | os.PathLike[str] = ".") -> list[str]:
    """The data flags of ``python -m hybridrec.train`` / ``python -m benchmarks.run`` for a
    generated folder: those of ``kg/examples`` (:data:`hybridrec.testing.EXAMPLE_DATA`) with
    its paths. ``data_flags(".")`` gives them relative to the folder."""
    path = lambda name: name if str(folder) == "." else str(Path(folder) / name)  # noqa: E731
    return ["--interactions", path("interactions.csv"), "--items", path("items.csv"),
            "--users", path("users.csv"), "--kg", path("graph.ttl"), "--item-iri", "iri",
            "--item-text", "title,year", "--item-categorical", "genre",
            "--user-text", "age", "--user-categorical", "gender,occupation"]


def _ids(prefix: str, n: int) -> list[str]:
    width = max(4, len(str(max(n - 1, 0))))
    return [f"{prefix}{k:0{width}d}" for k in range(n)]


def _slug(label: str) -> str:
    return "_".join("".join(c if c.isalnum() else " " for c in label.lower()).split())


def _literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _csv_cell(text: str) -> str:
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _write(path: Path, fill: Callable[[TextIO], None]) -> None:
    """``fill`` writes the file's text into a temporary file, then it is renamed onto
    ``path``: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            fill(f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _lines(f: TextIO, lines: Sequence[str]) -> None:
    for begin in range(0, len(lines), _CHUNK):
        f.write("".join(lines[begin:begin + _CHUNK]))


def write_catalog(catalog: Catalog, out: str | os.PathLike[str]) -> dict[str, Any]:
    """Write ``catalog`` as the files of the module docstring into ``out``; returns the
    manifest (``catalog.json``, written last)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    c = catalog
    num_topics = len(c.topic_labels)
    item_ids = np.asarray(_ids("b", len(c.titles)), dtype=object)
    user_ids = np.asarray(_ids("u", len(c.user_age)), dtype=object)
    author_ids = _ids("a", len(c.author_names))
    series_ids = _ids("s", len(c.series_names))
    publisher_ids = _ids("p", len(c.publisher_names))
    subject_ids = [_slug(label) for label in c.topic_labels + c.broad_labels]
    topic_broad = np.repeat(np.arange(len(c.broad_labels)), num_topics // len(c.broad_labels))
    item_iri = [f"{BASE_IRI}book/{i}" for i in item_ids]

    # 1. Interactions, formatted in chunks.
    def interactions(f: TextIO) -> None:
        f.write("user_id,item_id,rating,timestamp\n")
        for begin in range(0, len(c.user), _CHUNK):
            part = slice(begin, begin + _CHUNK)
            f.write("".join(f"{u},{i},{r},{t}\n" for u, i, r, t in zip(
                user_ids[c.user[part]], item_ids[c.item[part]], c.rating[part].tolist(),
                c.timestamp[part].tolist())))

    _write(out / "interactions.csv", interactions)

    # 2. Items, users and links.
    years = np.datetime_as_string(c.item_published.astype("datetime64[s]"), unit="D")
    genre = ["|".join(dict.fromkeys(c.broad_labels[s - num_topics if s >= num_topics
                                                    else topic_broad[s]] for s in subjects))
             for subjects in c.item_subjects]
    _write(out / "items.csv", lambda f: _lines(f, ["item_id,title,year,genre,iri,description\n"] + [
        f"{i},{_csv_cell(t)},{y[:4]},{_csv_cell(g)},{iri},{_csv_cell(d)}\n"
        for i, t, y, g, iri, d in zip(item_ids, c.titles, years, genre, item_iri,
                                      c.descriptions)]))
    _write(out / "users.csv", lambda f: _lines(f, ["user_id,age,gender,occupation\n"] + [
        f"{u},{a},{GENDERS[g]},{OCCUPATIONS[o]}\n" for u, a, g, o in zip(
            user_ids, c.user_age.tolist(), c.user_gender.tolist(), c.user_occupation.tolist())]))
    _write(out / "links.csv", lambda f: _lines(f, ["item_id,entity_id\n"] + [
        f"{i},{iri}\n" for i, iri in zip(item_ids, item_iri)]))

    # 3. The knowledge graph. Triples between resources (what the loader keeps): the subject
    # tree, a type per author and publisher, type and author per series, and per book its type,
    # author, publisher, series and subjects.
    triples = (len(c.broad_labels) + 2 * num_topics + len(author_ids) + len(publisher_ids)
               + 2 * len(series_ids) + 3 * len(item_ids) + int((c.item_series >= 0).sum())
               + sum(map(len, c.item_subjects)))

    def graph(f: TextIO) -> None:
        f.write(f"# A synthetic book catalogue (benchmarks/synthetic_catalog.py, seed "
                f"{c.config.seed}). Items link here by items.csv's iri column or links.csv.\n")
        for prefix, iri in (("book", f"{BASE_IRI}book/"), ("author", f"{BASE_IRI}author/"),
                            ("series", f"{BASE_IRI}series/"),
                            ("publisher", f"{BASE_IRI}publisher/"),
                            ("subject", f"{BASE_IRI}subject/"), ("schema", "http://schema.org/"),
                            ("rdfs", "http://www.w3.org/2000/01/rdf-schema#"),
                            ("skos", "http://www.w3.org/2004/02/skos/core#"),
                            ("dcterms", "http://purl.org/dc/terms/"),
                            ("xsd", "http://www.w3.org/2001/XMLSchema#")):
            f.write(f"@prefix {prefix}: <{iri}> .\n")
        lines = ["\n"]
        for k, label in enumerate(c.broad_labels):
            lines.append(f"subject:{subject_ids[num_topics + k]} a skos:Concept ; "
                         f"skos:prefLabel {_literal(label)} .\n")
        for k, label in enumerate(c.topic_labels):
            lines.append(f"subject:{subject_ids[k]} a skos:Concept ; skos:prefLabel "
                         f"{_literal(label)} ; skos:broader "
                         f"subject:{subject_ids[num_topics + topic_broad[k]]} .\n")
        for a, name in zip(author_ids, c.author_names):
            lines.append(f"author:{a} a schema:Person ; rdfs:label {_literal(name)} .\n")
        for p, name in zip(publisher_ids, c.publisher_names):
            lines.append(f"publisher:{p} a schema:Organization ; rdfs:label {_literal(name)} .\n")
        for s, name, a in zip(series_ids, c.series_names, c.series_author.tolist()):
            lines.append(f"series:{s} a schema:BookSeries ; schema:name {_literal(name)} ; "
                         f"schema:author author:{author_ids[a]} .\n")
        for k in range(len(item_ids)):
            block = [f"book:{item_ids[k]} a schema:Book", f"schema:name {_literal(c.titles[k])}"]
            if c.descriptions[k]:
                block.append(f"schema:description {_literal(c.descriptions[k])}")
            block += [f'schema:datePublished "{years[k]}"^^xsd:date',
                      f"schema:author author:{author_ids[c.item_author[k]]}"]
            if c.item_series[k] >= 0:
                block += [f"schema:isPartOf series:{series_ids[c.item_series[k]]}",
                          f"schema:position {c.item_position[k]}"]
            block.append(f"schema:publisher publisher:{publisher_ids[c.item_publisher[k]]}")
            if c.item_subjects[k]:
                block.append("dcterms:subject " + ", ".join(
                    f"subject:{subject_ids[s]}" for s in c.item_subjects[k]))
            lines.append(" ;\n    ".join(block) + " .\n")
        _lines(f, lines)

    _write(out / "graph.ttl", graph)

    # 4. The latent truth, then the manifest.
    truth = {
        "topics": [{"subject": subject_ids[k], "label": label,
                    "broad": c.broad_labels[topic_broad[k]]}
                   for k, label in enumerate(c.topic_labels)],
        "item_topic": c.item_topic.tolist(),
        "item_popularity": np.round(c.item_popularity, 4).tolist(),
        "user_topics": [[t for t in row if t >= 0] for row in c.user_topics.tolist()],
        "user_topic_weights": [[round(w, 4) for w in row if w > 0]
                               for row in c.user_topic_weights.tolist()],
        "user_authors": [[author_ids[a] for a in row if a >= 0]
                         for row in c.user_authors.tolist()],
        "user_series": [[series_ids[s] for s in row if s >= 0] for row in c.user_series.tolist()],
        "user_channels": np.round(c.user_channels, 4).tolist(),
        "note": "lists follow the rows of items.csv / users.csv; topics index 'topics'; "
                "user_channels are the shares of " + "/".join(CHANNELS) + " choices",
    }
    _write(out / "truth.json", lambda f: f.write(json.dumps(truth, separators=(",", ":")) + "\n"))
    iso = lambda t: datetime.fromtimestamp(t, timezone.utc).strftime(  # noqa: E731
        "%Y-%m-%dT%H:%M:%SZ")
    manifest = {
        "format": FORMAT,
        "config": asdict(c.config),
        "counts": {"users": len(user_ids), "items": len(item_ids), "interactions": len(c.user),
                   "authors": len(author_ids), "series": len(series_ids),
                   "publishers": len(publisher_ids), "subjects": len(subject_ids),
                   "broad_subjects": len(c.broad_labels), "kg_triples": triples,
                   "new_releases": int(c.item_new.sum())},
        "window": {"start": iso(_epoch(c.config.start)), "end": iso(_epoch(c.config.end)),
                   "late_start": iso(c.late_start), "late_start_epoch": c.late_start},
        "new_releases": item_ids[c.item_new].tolist(),
        "stats": c.stats,
        "files": sorted(["interactions.csv", "items.csv", "users.csv", "links.csv", "graph.ttl",
                         "truth.json"]),
        "load_flags": data_flags("."),
        "note": "load_flags name the files relative to this folder; truth.json holds the "
                "latent topics, tastes and favourites",
    }
    _write(out / "catalog.json", lambda f: f.write(json.dumps(manifest, indent=1) + "\n"))
    return manifest


def make_catalog(out: str | os.PathLike[str], config: CatalogConfig = CatalogConfig()
                 ) -> dict[str, Any]:
    """Generate a catalogue and write it into ``out``; returns the manifest."""
    return write_catalog(generate(config), out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.synthetic_catalog",
        description="Write a seeded synthetic book catalogue (CSV + Turtle) that loads with the "
                    "data flags of kg/examples.")
    defaults = CatalogConfig()
    parser.add_argument("--out", type=Path, help="output folder (created)")
    parser.add_argument("--users", type=int, default=defaults.num_users,
                        help=f"users (default: {defaults.num_users})")
    parser.add_argument("--items", type=int, default=defaults.num_items,
                        help=f"books (default: {defaults.num_items})")
    parser.add_argument("--interactions", type=int, default=defaults.num_interactions,
                        help=f"interaction rows (default: {defaults.num_interactions})")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help=f"seed (default: {defaults.seed})")
    parser.add_argument("--flags", type=Path, metavar="DIR",
                        help="print the data flags that load the catalogue in DIR, and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.flags is not None:
        print(" ".join(data_flags(args.flags)))
        return 0
    if args.out is None:
        build_parser().error("--out is required (or --flags DIR)")
    config = CatalogConfig(num_users=args.users, num_items=args.items,
                           num_interactions=args.interactions, seed=args.seed)
    begin = time.perf_counter()
    catalog = generate(config)
    generated = time.perf_counter() - begin
    manifest = write_catalog(catalog, args.out)
    total = time.perf_counter() - begin
    size = sum((args.out / name).stat().st_size for name in manifest["files"] + ["catalog.json"])
    counts = manifest["counts"]
    print(f"wrote {args.out}: {counts['users']:,} users, {counts['items']:,} books "
          f"({counts['new_releases']:,} new releases), {counts['interactions']:,} interactions, "
          f"{counts['kg_triples']:,} KG triples; {size / 2**20:.1f} MiB; generated in "
          f"{generated:.1f}s, written in {total - generated:.1f}s")
    print("load it with: " + " ".join(data_flags(args.out)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValueError as err:  # a bad parameter: one clean line
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
