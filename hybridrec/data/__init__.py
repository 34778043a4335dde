"""The data layer: loaders, the Dataset, splits. Imports no torch."""
from hybridrec.data.atomic import load_atomic
from hybridrec.data.dataset import Dataset, Interactions
from hybridrec.data.errors import DataError
from hybridrec.data.idmap import IdMap
from hybridrec.data.movielens import load_ml100k
from hybridrec.data.rdf import RdfGraph, load_rdf
from hybridrec.data.split import (
    Split, SplitKind, cold_item_split, cold_user_split, leave_last_out, make_split, random_split,
    split_from_files, temporal_split, write_split_files,
)
from hybridrec.data.tabular import load_csv

__all__ = [
    "DataError", "Dataset", "IdMap", "Interactions", "RdfGraph", "Split", "SplitKind",
    "cold_item_split", "cold_user_split", "leave_last_out", "load_atomic", "load_csv",
    "load_ml100k", "load_rdf", "make_split", "random_split", "split_from_files",
    "temporal_split", "write_split_files",
]
