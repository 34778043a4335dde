"""The hybrid model and its parts."""
from hybridrec.models.gate import ScoreGate
from hybridrec.models.gnn import HeteroGNN, RelationalLayer, RelationalPlan, RelationalPlanner
from hybridrec.models.hybrid import (INTERACTS, REV_INTERACTS, HybridEmbeddings, HybridModel,
                                     HybridScorer, ScoreParts)
from hybridrec.models.losses import bpr_loss, sampled_softmax_loss
from hybridrec.models.mf import MatrixFactorization
from hybridrec.models.prepare import graph_inputs, prepare_graph

__all__ = [
    "INTERACTS", "REV_INTERACTS", "HeteroGNN", "HybridEmbeddings", "HybridModel", "HybridScorer",
    "MatrixFactorization", "RelationalLayer", "RelationalPlan", "ScoreGate", "ScoreParts",
    "RelationalPlanner", "bpr_loss", "graph_inputs", "prepare_graph", "sampled_softmax_loss",
]
