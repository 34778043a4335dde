"""``python -m hybridrec.recommend RUN``: a trained run, asked from the command line.

Examples::

    python -m hybridrec.recommend runs/hybrid-ml-100k-random --user 196 -k 10 --explain
    python -m hybridrec.recommend RUN --history 50,181,100 --json
    python -m hybridrec.recommend RUN --text "space opera with big battles"
    python -m hybridrec.recommend RUN --similar 50
    python -m hybridrec.recommend RUN --add-items new.csv --kg new.ttl   # updates RUN
    python -m hybridrec.recommend RUN --add-interactions events.csv     # updates RUN

A readable table by default (title, score, a short reason with ``--explain``); JSON with
``--json``. Every call is one method of :class:`~hybridrec.Recommender`.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from hybridrec.cli_args import run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hybridrec.recommend",
                                     description="Recommend from a trained run folder.")
    parser.add_argument("run", type=Path, help="run folder (from python -m hybridrec.train)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--user", help="a known user's raw id")
    what.add_argument("--history", help="comma-separated item ids of a new user")
    what.add_argument("--text", help="a sentence describing what a new user wants")
    what.add_argument("--similar", metavar="ITEM", help="items similar to this item id")
    what.add_argument("--add-items", metavar="CSV", type=Path,
                      help="add the items of this CSV to the run folder, without "
                           "retraining: an item_id column, then the training items' columns "
                           "(categorical values split as in the training data); edges that "
                           "cannot attach are listed")
    what.add_argument("--add-interactions", metavar="CSV", type=Path,
                      help="add the (user_id, item_id) rows of this CSV to the run folder, "
                           "without retraining (new user ids become users)")
    parser.add_argument("--kg", type=Path, help="with --add-items: an RDF file of their KG "
                                                "triples (Turtle, N-Triples, RDF/XML, JSON-LD)")
    parser.add_argument("-k", type=int, default=10, help="list length (default: 10)")
    parser.add_argument("--explain", action="store_true", help="add the reasons (--user)")
    parser.add_argument("--fallback", action="store_true",
                        help="popular items for an unknown --user instead of an error")
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")
    return parser


def _table(ranking, reasons: list[str] | None) -> str:
    lines = [f"{'#':>3}  {'item':<12} {'score':>8}  title" + ("  | reason" if reasons else "")]
    for n, (item, title, score) in enumerate(zip(ranking.item_ids, ranking.titles,
                                                 ranking.scores), start=1):
        line = f"{n:>3}  {item:<12} {score:>8.3f}  {title}"
        if reasons:
            line += f"  | {reasons[n - 1]}"
        lines.append(line)
    return "\n".join(lines)


def _reason(explanation) -> str:
    if explanation.kg_paths:
        return explanation.kg_paths[0].text
    if explanation.similar_history:
        return f"like {explanation.similar_history[0]['title']}"
    return "popular with similar users"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hybridrec.recommender import Recommender

    rec = Recommender.load(args.run)
    if args.add_items is not None:
        return _add_items(rec, args)
    if args.add_interactions is not None:
        return _add_interactions(rec, args)
    if args.kg is not None:
        raise ValueError("--kg goes with --add-items")
    if args.user is not None:
        ranking = rec.recommend(args.user, k=args.k, fallback=args.fallback)
    elif args.history is not None:
        ranking = rec.recommend_for_history([i.strip() for i in args.history.split(",")
                                             if i.strip()], k=args.k)
    elif args.text is not None:
        ranking = rec.recommend_for_text(args.text, k=args.k)
    else:
        ranking = rec.similar_items(args.similar, k=args.k)
    explanations = None
    if args.explain and args.user is not None and ranking.source == "model":
        explanations = [rec.explain(args.user, item) for item in ranking.item_ids]
    if args.json:
        out = ranking.to_dict()
        if explanations is not None:
            for entry, e in zip(out["items"], explanations):
                entry["explanation"] = e.to_dict()
        print(json.dumps(out, indent=1, ensure_ascii=False))
    else:
        header = {"model": f"Top {len(ranking.item_ids)} for user {args.user}",
                  "popular": f"User {args.user} is unknown: the most popular items",
                  "history": "Top items for the given history",
                  "text": f"Top items for: {args.text}"}[ranking.source]
        if args.similar is not None:
            header = f"Items similar to {args.similar}"
        print(header)
        print(_table(ranking, None if explanations is None else
                     [_reason(e) for e in explanations]))
    return 0


def _add_items(rec, args: argparse.Namespace) -> int:
    import pandas as pd

    from hybridrec.data.rdf import kg_inputs, load_rdf
    from hybridrec.data.tabular import read_table

    frame = read_table(args.add_items, "an items table", required=("item_id",)).fillna("")
    triples, labels = ([], {}) if args.kg is None else kg_inputs(load_rdf(args.kg))
    added = rec.add_items(pd.DataFrame(frame), triples, entity_text=labels)
    rec.save(args.run)
    result = {"added": list(added.item_ids), "edges": added.edges,
              "skipped": list(added.skipped), "run": str(args.run)}
    if args.json:
        print(json.dumps(result, indent=1, ensure_ascii=False))
    else:
        print(f"added {len(added.item_ids)} items ({', '.join(added.item_ids)}) with "
              f"{added.edges} graph edges to {args.run}"
              + (f"; {len(added.skipped)} edges skipped: " + "; ".join(added.skipped)
                 if added.skipped else ""))
    return 0


def _add_interactions(rec, args: argparse.Namespace) -> int:
    from hybridrec.data.tabular import read_table

    frame = read_table(args.add_interactions, "an interactions table",
                       required=("user_id", "item_id"))
    pairs = list(zip(frame["user_id"].astype(str), frame["item_id"].astype(str)))
    users = rec.add_interactions(pairs)
    rec.save(args.run)
    if args.json:
        print(json.dumps({"interactions": len(pairs), "users": users, "run": str(args.run)},
                         indent=1, ensure_ascii=False))
    else:
        print(f"added {len(pairs)} interactions of {len(users)} users to {args.run}")
    return 0


if __name__ == "__main__":
    run_cli(main)
