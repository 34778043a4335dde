"""hybridrec: a graph-plus-LLM hybrid recommender."""
from hybridrec.data import DataError, Dataset, IdMap, Interactions, Split, random_split

__all__ = ["DataError", "Dataset", "IdMap", "Interactions", "Split", "random_split"]
__version__ = "0.1.0"
