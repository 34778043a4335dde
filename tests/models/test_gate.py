"""The gate: in (0, 1), reacts to degree, learns to prefer the informative score."""
import pytest
import torch

from hybridrec.models.gate import ScoreGate


def test_gate_is_a_probability_and_mixes():
    torch.manual_seed(0)
    gate = ScoreGate(3, 8)
    users = ScoreGate.signals(torch.tensor([0, 5, 50]), torch.randn(3, 4), torch.randn(3, 4))
    items = ScoreGate.signals(torch.tensor([0, 1, 300, 7]), torch.randn(4, 4), torch.randn(4, 4))
    a, b = gate(users, items)
    g = torch.sigmoid(a[:, None] + b[None, :])  # [3, 4]
    assert g.shape == (3, 4) and bool(((g > 0) & (g < 1)).all())
    s = ScoreGate.mix(torch.ones(3, 4), torch.zeros(3, 4), g)
    torch.testing.assert_close(s, g)


def test_a_fresh_gate_is_the_fixed_mix_and_a_trained_one_reacts_to_degree():
    torch.manual_seed(0)
    gate = ScoreGate(3, 8)
    emb = torch.randn(2, 4)
    low = ScoreGate.signals(torch.tensor([0, 0]), emb, emb)
    high = ScoreGate.signals(torch.tensor([200, 200]), emb, emb)
    a, b = gate(low, high)
    assert bool((torch.sigmoid(a + b) == 0.5).all()) and float(gate.temperature().detach()) == 1.0
    torch.nn.init.normal_(gate.item_mlp[2].weight)  # as after a step of training
    assert not torch.allclose(gate.item_mlp(low), gate.item_mlp(high))
    # The signals are log1p(degree) and detached norms.
    assert torch.allclose(high[:, 0], torch.log1p(torch.tensor(200.0)))
    emb = torch.randn(1, 4, requires_grad=True)
    assert not ScoreGate.signals(torch.tensor([1]), emb).requires_grad


def test_gate_learns_to_trust_the_gnn_where_items_are_cold():
    # Cold items (degree 0): only s_gnn knows the answer; popular items: only s_mf does.
    torch.manual_seed(0)
    gate = ScoreGate(1, 8)
    degree = torch.cat([torch.zeros(50), torch.full((50,), 100.0)])
    label = torch.randint(0, 2, (100,)).float()
    noise = torch.randn(100)
    s_gnn = torch.where(degree == 0, 4 * (2 * label - 1), noise)
    s_mf = torch.where(degree == 0, noise, 4 * (2 * label - 1))
    optimizer = torch.optim.Adam(gate.parameters(), lr=0.05)
    items = ScoreGate.signals(degree)
    users = ScoreGate.signals(torch.zeros(1))
    for _ in range(200):
        a, b = gate(users, items)
        g = torch.sigmoid(a + b)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            ScoreGate.mix(s_gnn, s_mf, g), label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        a, b = gate(users, items)
        g = torch.sigmoid(a + b)
    assert float(g[:50].mean()) > 0.8 > 0.2 > float(g[50:].mean())


def test_a_fresh_gate_starts_at_its_prior():
    gate = ScoreGate(2, 8, prior=0.25)
    signals = ScoreGate.signals(torch.tensor([0, 9]), torch.randn(2, 4))
    a, b = gate(signals, signals)
    torch.testing.assert_close(torch.sigmoid(a + b), torch.full((2,), 0.25))
    assert "prior=0.25" in repr(gate)
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="prior must lie in"):
            ScoreGate(prior=bad)
