"""The global batch of a contrastive loss under data parallelism: every rank's embeddings gathered with their
gradients, so each rank can score its own pairs against the negatives of all ranks."""

from __future__ import annotations

import torch


class _GatherWithGrad(torch.autograd.Function):
    """All ranks' rows of `tensor` (equal counts per rank), differentiable: every rank's loss reads every rank's
    rows, so the gradient of this rank's rows is the sum over ranks of the gradients flowing into them."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows = torch.distributed.get_rank(), tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        torch.distributed.all_reduce(grad)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(every rank's rows of `tensor` in rank order, differentiable; the index of this rank's first row among
    them). Outside data parallelism (one process): (`tensor`, 0). The ranks must hold equal row counts, which
    Accelerate's default `even_batches` ensures."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if not distributed or torch.distributed.get_world_size() == 1:
        return tensor, 0
    return _GatherWithGrad.apply(tensor), torch.distributed.get_rank() * tensor.shape[0]
