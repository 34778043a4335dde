"""The MF branch: user and item ID embeddings, optionally smoothed LightGCN-style."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import Embedding, Parameter
from torch_geometric.utils import degree

from hybridrec.models.gnn import _csr, _SpMM


class MatrixFactorization(torch.nn.Module):
    r"""ID embeddings with an item bias (`Koren et al. <https://doi.org/10.1109/MC.2009.263>`_),
    optionally propagated over the user–item graph as LightGCN does
    (`He et al. <https://arxiv.org/abs/2002.02126>`_).

    .. math::
        s_{\text{mf}}(u, i) = \mathbf{p}_u^\top \mathbf{q}_i + b_i, \qquad
        [\mathbf{p}; \mathbf{q}] = \frac{1}{K+1} \sum_{k=0}^{K}
        \big(\mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}\big)^k [\mathbf{P}; \mathbf{Q}]

    Masked (cold) items get a zero embedding and bias, as an item with no ID signal has.

    Args:
        num_users: number of users.
        num_items: number of items.
        embedding_dim: embedding width (default: :obj:`64`).
        num_layers: propagation steps :math:`K`; ``0`` is plain MF (default: :obj:`0`).
        bias: learn :math:`b_i` (default: :obj:`True`).

    Shapes:
        - **input:** user–item ``edge_index`` :math:`(2, |\mathcal{E}|)` (users in row 0,
          items in row 1; only needed when ``num_layers > 0``), ``item_mask`` :math:`(I,)`
        - **output:** :math:`(U, H)`, :math:`(I, H)`, :math:`(I,)`
    """

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64,
                 num_layers: int = 0, bias: bool = True) -> None:
        super().__init__()
        if num_layers < 0:
            raise ValueError(f"MatrixFactorization: num_layers must be >= 0, got {num_layers}")
        self.num_users = num_users
        self.num_items = num_items
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.user_emb = Embedding(num_users, embedding_dim)
        self.item_emb = Embedding(num_items, embedding_dim)
        self.item_bias = Parameter(torch.zeros(num_items)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.normal_(self.user_emb.weight, std=0.1)
        torch.nn.init.normal_(self.item_emb.weight, std=0.1)
        if self.item_bias is not None:
            torch.nn.init.zeros_(self.item_bias)

    def forward(
        self,
        edge_index: Tensor | None = None,
        item_mask: Tensor | None = None,
        user_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """User embeddings, item embeddings and item biases; masked rows zeroed."""
        users, items = self.user_emb.weight, self.item_emb.weight
        bias = (self.item_bias if self.item_bias is not None
                else items.new_zeros(self.num_items))
        if user_mask is not None:
            users = users * (~user_mask).unsqueeze(-1).to(users.dtype)
        if item_mask is not None:
            keep = (~item_mask).to(items.dtype)
            items, bias = items * keep.unsqueeze(-1), bias * keep
        if self.num_layers:
            if edge_index is None:
                raise ValueError("MatrixFactorization: num_layers > 0 needs the user-item "
                                 "edge_index")
            adj = self.adjacency(edge_index)
            x = out = torch.cat([users, items])
            for _ in range(self.num_layers):
                x = _SpMM.apply(adj, adj, x)  # symmetric: its own transpose
                out = out + x
            out = out / (self.num_layers + 1)
            users, items = out[:self.num_users], out[self.num_users:]
        return users, items, bias

    def adjacency(self, edge_index: Tensor) -> Tensor:
        r""":math:`\mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}` of the user–item graph over
        ``num_users + num_items`` nodes, as a sparse CSR matrix."""
        n = self.num_users + self.num_items
        row = torch.cat([edge_index[0], edge_index[1] + self.num_users])
        col = torch.cat([edge_index[1] + self.num_users, edge_index[0]])
        deg = degree(row, n).clamp_(min=1)
        return _csr(row, col, (deg[row] * deg[col]).rsqrt(), (n, n))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.num_users}, {self.num_items}, "
                f"embedding_dim={self.embedding_dim}, num_layers={self.num_layers})")
