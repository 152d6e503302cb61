"""Efficient attentive probing (EP, Psomas et al. 2025) on the frozen encoder's patch tokens.

Mean pooling erases *where* things are and dilutes a pattern that only a few patches carry; MAE-style encoders
spread what they know over patch tokens, so a linear probe on the mean under-reports them. EP lets a few learned
queries cross-attend to the tokens: keys are the tokens themselves (a key projection would be redundant with a
learned query), one value projection is shared, and query m contributes chunk m of the value channels, so the
pooled vector keeps the token width and the probe stays small (queries + one D x D map + the linear head).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rspretrain.probe_classifiers import fit

EP_QUERIES = 8


def check_queries(dim: int, queries: int) -> None:
    """Each query owns an equal chunk of the channels, so the query count must divide the token width."""
    if queries < 1 or dim % queries:
        raise ValueError(f"--ep-queries must divide the token width {dim}, got {queries}")


class EfficientProbe(nn.Module):
    """M learned queries over (B, N, D) tokens -> (B, D) pooled -> linear head."""

    def __init__(self, dim: int, num_classes: int, queries: int = EP_QUERIES):
        super().__init__()
        check_queries(dim, queries)
        self.queries = nn.Parameter(torch.randn(queries, dim) * 0.02)
        self.value = nn.Linear(dim, dim, bias=False)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def attention(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, M, N) attention of each query over the patch tokens."""
        return (tokens @ self.queries.T / math.sqrt(tokens.shape[-1])).softmax(dim=1).transpose(1, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, _, d = tokens.shape
        m = len(self.queries)
        # query m keeps chunk m of the value channels; the value map is linear, so it is applied to each query's
        # weighted token average instead of to every token (cost independent of the number of patches)
        attended = self.attention(tokens) @ tokens  # (B, M, D)
        pooled = torch.einsum("bmd,mcd->bmc", attended, self.value.weight.view(m, d // m, d)).reshape(b, d)
        return self.head(pooled)


def attentive_predict(
    train_tokens: torch.Tensor,
    train_y: torch.Tensor,
    test_tokens: torch.Tensor,
    num_classes: int,
    seed: int,
    epochs: int = 50,
    queries: int = EP_QUERIES,
    lr: float = 1e-2,
    weight_decay: float = 0.05,
    batch_size: int = 256,
) -> torch.Tensor:
    """Predicted class of each test row from (rows, patches, width) tokens (float16 from the cache: each batch
    is cast to float32): EP trained with AdamW and a cosine decay to 0."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    probe = EfficientProbe(train_tokens.shape[-1], num_classes, queries)
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    fit(probe, train_tokens, train_y, opt, epochs, batch_size, gen)
    batch_size = min(batch_size, len(train_tokens))
    probe.eval()
    with torch.no_grad():
        return torch.cat([probe(test_tokens[i : i + batch_size].float()).argmax(1)
                          for i in range(0, len(test_tokens), batch_size)])
