"""Baselines with the same ``score(user_index)`` face as the hybrid model.

Each follows scikit-learn (``__init__`` stores arguments, ``fit(...) -> self``, learned
attributes end in ``_``) and saves as JSON + safetensors. :func:`load_scorer` reads any of them
back.
"""
from hybridrec.baselines.als import ALS
from hybridrec.baselines.base import BaseScorer, Callback, NotFittedError, Scorer
from hybridrec.baselines.bpr_mf import BPRMF, MatrixFactorization
from hybridrec.baselines.ease import EASE
from hybridrec.baselines.itemknn import ItemKNN
from hybridrec.baselines.lightgcn import LightGCN
from hybridrec.baselines.pop import MostPopular
from hybridrec.baselines.rp3beta import RP3beta
from hybridrec.baselines.search import (
    EarlyStopping,
    SearchResult,
    grid_search,
    validation_metric,
)
from hybridrec.baselines.text_only import TextOnly

load_scorer = BaseScorer.load

__all__ = [
    "ALS", "BPRMF", "EASE", "BaseScorer", "Callback", "EarlyStopping", "ItemKNN", "LightGCN",
    "MatrixFactorization", "MostPopular", "NotFittedError", "RP3beta", "Scorer", "SearchResult",
    "TextOnly", "grid_search", "load_scorer", "validation_metric",
]
