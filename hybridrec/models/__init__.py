"""The hybrid's parts: the GNN scorer, the gate and the mix of scorers."""
from hybridrec.models.cold import ColdStart
from hybridrec.models.gate import ScoreGate
from hybridrec.models.gnn import HeteroGNN, RelationalLayer, RelationalPlan, RelationalPlanner
from hybridrec.models.gnn_scorer import GNNScorer
from hybridrec.models.losses import bpr_loss, sampled_softmax_loss
from hybridrec.models.mix import Mix, Tower
from hybridrec.models.prepare import graph_inputs, prepare_graph

__all__ = [
    "ColdStart", "GNNScorer", "HeteroGNN", "Mix", "RelationalLayer", "RelationalPlan", "RelationalPlanner",
    "ScoreGate", "Tower", "bpr_loss", "graph_inputs", "prepare_graph", "sampled_softmax_loss",
]
