"""benchmarks.gate_headroom's degree gate: zero slopes are the fixed mix, slopes move weight."""
import torch

from benchmarks.gate_headroom import DegreeGate
from hybridrec.models import Mix, Tower

NUM_USERS, NUM_ITEMS = 6, 9


def _mix():
    g = torch.Generator().manual_seed(0)
    towers = {name: Tower(torch.randn(NUM_USERS, 4, generator=g),
                          torch.randn(NUM_ITEMS, 4, generator=g))
              for name in ("gnn", "als", "lightgcn")}
    return Mix(towers, torch.arange(1.0, NUM_USERS + 1), torch.arange(NUM_ITEMS).float())


def test_zero_slopes_are_the_fixed_mix():
    mix, users = _mix(), torch.arange(NUM_USERS)
    torch.testing.assert_close(DegreeGate(mix, {}, {}).score(users), mix.score(users))


def test_a_steep_item_slope_hands_popular_items_to_that_tower():
    """With the GNN's logit rising steeply in item degree, the most popular item is scored by
    the GNN alone and the least popular by the other two."""
    mix, users = _mix(), torch.arange(NUM_USERS)
    scores = DegreeGate(mix, {"gnn": 50.0}, {}).score(users)
    parts = mix.parts(users)
    z = {name: parts[name] / mix.weights[name] for name in mix.names}
    top, bottom = NUM_ITEMS - 1, 0
    torch.testing.assert_close(scores[:, top], z["gnn"][:, top])
    torch.testing.assert_close(scores[:, bottom], (z["als"][:, bottom] + z["lightgcn"][:, bottom])
                               / 2, atol=1e-4, rtol=1e-4)
