"""The data layer: loaders, the Dataset, splits."""
from hybridrec.data.dataset import Dataset, Interactions
from hybridrec.data.errors import DataError
from hybridrec.data.idmap import IdMap
from hybridrec.data.split import Split, random_split

__all__ = ["DataError", "Dataset", "IdMap", "Interactions", "Split", "random_split"]
