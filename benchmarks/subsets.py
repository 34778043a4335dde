"""A data set with some items taken out, and what it takes to add them back later."""
from __future__ import annotations

import dataclasses

import numpy as np

from hybridrec.data.dataset import Dataset, Interactions
from hybridrec.data.idmap import IdMap
from hybridrec.data.split import Split


def without_items(dataset: Dataset, split: Split, item_ids: set[str]
                  ) -> tuple[Dataset, Split, list[dict[str, str]], list, dict[str, str]]:
    """``dataset`` and ``split`` without the items ``item_ids`` (their interactions, table
    rows, attributes and item links removed; the KG keeps their entities; the split's other
    cold items stay cold), and the
    ``(rows, triples, links)`` that :meth:`~hybridrec.Recommender.add_items` takes to add
    them back: the table rows, no extra triples (the KG already holds them), and each item's
    link to its KG entity."""
    gone = np.array([i in item_ids for i in dataset.items.ids])
    remap = np.full(dataset.num_items, -1, dtype=np.int64)
    remap[~gone] = np.arange(int((~gone).sum()))

    def keep(inter: Interactions) -> Interactions:
        rows = np.flatnonzero(~gone[inter.item_index])
        part = inter.select(rows)
        return dataclasses.replace(part, item_index=remap[part.item_index])

    links = {dataset.items.ids[i]: dataset.entities.ids[e]
             for i, e in dataset.item_entity if gone[i]}
    rows = [{"item_id": dataset.items.ids[i],
             **{c: str(v[i]) for c, v in dataset.item_table.items()}}
            for i in np.flatnonzero(gone)]
    attributes = dataset.item_attributes[~gone[dataset.item_attributes[:, 0]]].copy()
    attributes[:, 0] = remap[attributes[:, 0]]
    item_entity = dataset.item_entity[~gone[dataset.item_entity[:, 0]]].copy()
    item_entity[:, 0] = remap[item_entity[:, 0]]
    reduced = dataclasses.replace(
        dataset, items=IdMap(i for i, g in zip(dataset.items.ids, gone) if not g),
        interactions=keep(dataset.interactions),
        item_table={c: v[~gone] for c, v in dataset.item_table.items()},
        item_attributes=attributes, item_entity=item_entity)
    cold_kept = split.cold_items[~gone[split.cold_items]]  # cold items not removed stay cold
    reduced_split = Split(split.kind, keep(split.train), keep(split.valid), keep(split.test),
                          cold_items=remap[cold_kept], cold_users=split.cold_users,
                          seed=split.seed)
    return reduced, reduced_split, rows, [], links
