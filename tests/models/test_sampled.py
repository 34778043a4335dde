"""Neighbour-sampled steps: exact where the fan-outs cover every neighbour, bounded where they
do not, cold items cut off, and training with them lowers the loss and is validated as usual."""
import pytest
import torch

from hybridrec.config import ModelConfig
from hybridrec.graph import INTERACTS, REV_INTERACTS
from hybridrec.models import GNNScorer, Tower
from hybridrec.models.sampled import NeighborSampler, SampledLoss
from hybridrec.testing import devices, random_feature_graph
from hybridrec.trainer import train_gnn

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(example_dataset):
    return random_feature_graph(example_dataset)[1]


def _model(graph):
    torch.manual_seed(0)
    return GNNScorer.from_config(ModelConfig(hidden_channels=8), graph)


def _inputs(graph):
    return ({t: graph[t].x for t in graph.node_types if "x" in graph[t]},
            dict(graph.edge_index_dict))


@pytest.mark.parametrize("device", devices())
def test_blocks_with_every_neighbour_give_the_full_graph_rows(tiny, device):
    model = _model(tiny).eval().to(device)
    x, edges = _inputs(tiny)
    x, edges = {t: v.to(device) for t, v in x.items()}, {e: v.to(device) for e, v in edges.items()}
    full = model.embed_parts(x, edges)
    loss = SampledLoss(model, x, edges, (1000, 1000), torch.Generator().manual_seed(0))
    users = torch.tensor([0, 3, 7], device=device)
    items = torch.tensor([1, 2, 5, 11], device=device)
    parts = loss.embed(model, x, users, items,
                       torch.zeros(model.num_items, dtype=torch.bool, device=device))
    torch.testing.assert_close(parts.user, full.user[users])
    torch.testing.assert_close(parts.item, full.item[items])
    torch.testing.assert_close(parts.user_text, full.user_text[users])
    torch.testing.assert_close(parts.item_text, full.item_text[items])


def test_fanouts_bound_the_neighbours_and_cut_cold_items(tiny):
    model = _model(tiny)
    x, edges = _inputs(tiny)
    sampler = NeighborSampler(edges, model.gnn.edge_types, model.gnn.num_nodes_dict, (2, 1),
                              torch.Generator().manual_seed(0))
    cold = torch.zeros(model.num_items, dtype=torch.bool)
    cold[[1, 2]] = True
    seeds = {"user": torch.arange(model.num_users), "item": torch.tensor([1, 4])}
    blocks = sampler.sample(seeds, cold)
    assert len(blocks.nodes) == 3 and len(blocks.plans) == 2
    for k, plan in enumerate(blocks.plans):  # each level a prefix of the one before
        for t, nodes in blocks.nodes[k + 1].items():
            assert torch.equal(blocks.nodes[k][t][:len(nodes)], nodes)
        fanout = (2, 1)[k]
        for t, adj_t in plan.adj_t.items():  # at most `fanout` per relation and node
            per_relation = len(plan.blocks[t])
            assert int((adj_t.crow_indices().diff()).max()) <= fanout * per_relation
    # The seeds' own last layer: no user reads a cold item, no cold item reads a user.
    plan = blocks.plans[-1]
    reads = {}
    for t in ("user", "item"):
        start = 0
        for r, source_type, local in plan.blocks[t]:
            if model.gnn.edge_types[r] in (INTERACTS, REV_INTERACTS):
                dense = plan.adj_t[t].to_dense()[:, start:start + len(local)]
                reads[t] = blocks.nodes[-2][source_type][local][dense.sum(0) > 0]
                if t == "item":  # seed item 1 is cold: its row is empty
                    assert dense[0].sum() == 0 and dense[1].sum() > 0
            start += len(local)
    assert not cold[reads["user"]].any() and len(reads["user"]) > 0


def test_sampled_training_lowers_the_loss_and_is_validated(tiny):
    model = _model(tiny)
    seen = []

    def validate(tower: Tower) -> float:
        seen.append(tower.item.shape)
        return float(len(seen))  # always better: every epoch is kept

    result = train_gnn(model, tiny, validate=validate, epochs=4, batch_size=8, lr=0.02,
                       num_negatives=6, fanouts=(3, 3), show_progress=False,
                       generator=torch.Generator().manual_seed(0))
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert len(seen) == 4 and seen[0][0] == model.num_items  # full-graph validation


def test_bad_fanouts_are_refused(tiny):
    model = _model(tiny)
    x, edges = _inputs(tiny)
    with pytest.raises(ValueError, match="one per GNN layer"):
        SampledLoss(model, x, edges, (5,), torch.Generator())
    with pytest.raises(ValueError, match=">= 1"):
        SampledLoss(model, x, edges, (5, 0), torch.Generator())
