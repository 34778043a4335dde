"""hybridrec: a graph-plus-LLM hybrid recommender.

The public API, re-exported lazily so that ``import hybridrec.data`` stays free of torch.
"""
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    **dict.fromkeys(
        ["DataError", "Dataset", "IdMap", "Interactions", "RdfGraph", "Split", "cold_item_split",
         "cold_user_split", "leave_last_out", "load_atomic", "load_csv", "load_ml100k",
         "load_rdf", "make_split", "random_split", "split_from_files", "temporal_split",
         "write_split_files"],
        "hybridrec.data"),
    "Recommender": "hybridrec.recommender",
    "fit": "hybridrec.recommender",
    "load": "hybridrec.recommender",
    "RunConfig": "hybridrec.config",
    "evaluate": "hybridrec.evaluation",
    "build_graph": "hybridrec.graph",
    "to_networkx": "hybridrec.graph",
    "pick_device": "hybridrec.device",
    "seed_everything": "hybridrec.device",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hybridrec' has no attribute {name!r}")
