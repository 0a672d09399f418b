"""Data-parallel training under ``torchrun`` (DistributedDataParallel; gloo on CPU, NCCL on GPU).

A trainer calls :func:`init` once. Outside ``torchrun`` (no ``WORLD_SIZE`` > 1 in
the environment) it returns a one-process :class:`Dist` and every helper below is
a no-op, so the single-process code path is unchanged.

Equivalence with single-process training (same seed, same *global* batch ``B``):

* every rank holds the same data and the same ``torch.Generator``, draws the same
  permutation / augmentation / loss randomness, and takes its contiguous share
  ``B/W`` of each global batch (:func:`Dist.share`);
* BatchNorm layers use the statistics of the global batch
  (:class:`GlobalBatchNorm2d`, all-reduced; torch's ``SyncBatchNorm`` is GPU-only);
* each rank's outputs are all-gathered (:func:`Dist.gather_rows`: other ranks'
  rows detached) and every rank evaluates the loss of the *global* batch, so the
  loss and its random draws (e.g. LEXU's rater sampling) equal the single-process
  ones; ``backward(loss * W)`` under DDP's gradient averaging gives exactly the
  single-process gradient, up to floating-point summation order;
* rank 0 alone logs, shows progress and writes files; :func:`Dist.barrier` before
  other ranks read them.

Not exact: methods whose forward pass itself draws random numbers from the
global RNG (MC-dropout's dropout masks) — the masks differ from one process's.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """True on rank 0 (the one process that logs and writes)."""
        return self.rank == 0

    def share(self, idx: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """This rank's contiguous part of the global batch indices ``idx (B,)`` and every
        rank's part size (``B/W`` each, sizes differing by at most one)."""
        parts = idx.tensor_split(self.world)
        return parts[self.rank], [len(p) for p in parts]

    def gather_rows(self, local: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        """``(sizes[rank], ...)`` per rank -> ``(sum(sizes), ...)`` in rank order; this
        rank's rows keep their autograd graph, the others are detached copies."""
        if not self.active:
            return local
        import torch.distributed as dist

        m = max(sizes)
        pad = local.detach()
        if pad.shape[0] < m:
            pad = torch.cat([pad, pad.new_zeros((m - pad.shape[0], *pad.shape[1:]))])
        buf = [torch.empty_like(pad) for _ in range(self.world)]
        dist.all_gather(buf, pad.contiguous())
        parts = [b[:s] for b, s in zip(buf, sizes)]
        parts[self.rank] = local
        return torch.cat(parts)

    def run_rows(self, fn, *xs: torch.Tensor):
        """``fn`` on this rank's contiguous share of the rows of the batch tensors ``xs``,
        outputs (a tensor or a tuple of them) gathered as by :meth:`gather_rows`: the
        network forward is split over the ranks, everything after it sees the global batch."""
        if not self.active:
            return fn(*xs)
        mine, sizes = self.share(torch.arange(xs[0].shape[0]))
        out = fn(*(x[mine] for x in xs))
        if isinstance(out, tuple):
            return tuple(self.gather_rows(o, sizes) for o in out)
        return self.gather_rows(out, sizes)

    def average_grads(self, params) -> None:
        """DDP's gradient step by hand (one flat all-reduce): every rank's ``.grad``
        becomes the mean over ranks (missing gradients count as zeros)."""
        if not self.active:
            return
        import torch.distributed as dist

        params = [p for p in params if p.requires_grad]
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        dist.all_reduce(flat)
        flat /= self.world
        k = 0
        for p in params:
            p.grad = flat[k : k + p.numel()].view_as(p).clone()
            k += p.numel()

    def sum_grads(self, params) -> None:
        """Gradient accumulation across ranks (one flat all-reduce): every rank's ``.grad``
        becomes the sum over ranks. A parameter with no gradient on any rank keeps ``None``
        (an optimiser then skips it, as in one process; Adam would move a zero gradient's
        parameter by its momentum); one missing on some ranks counts as zeros there."""
        if not self.active:
            return
        import torch.distributed as dist

        params = [p for p in params if p.requires_grad]
        if not params:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
                         + [torch.tensor([float(p.grad is not None) for p in params], dtype=params[0].dtype,
                                         device=params[0].device)])
        dist.all_reduce(flat)
        k = 0
        for i, p in enumerate(params):
            has = bool(flat[flat.numel() - len(params) + i] > 0)
            p.grad = flat[k : k + p.numel()].view_as(p).clone() if has else None
            k += p.numel()

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on one (e.g. a time limit)."""
        if not self.active:
            return bool(flag)
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def all_reduce_mean(self, value: float) -> float:
        """The mean of ``value`` over ranks (the value itself in one process)."""
        if not self.active:
            return float(value)
        import torch.distributed as dist

        t = torch.tensor([float(value)], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t) / self.world

    def wrap(self, net: nn.Module, forward) -> nn.Module:
        """``forward(net, *args)`` as a module: under ``torchrun`` a DDP module with
        :class:`GlobalBatchNorm2d` layers, else a plain one (the same call either way)."""
        step = _Forward(net, forward)
        if not self.active:
            return step
        for m in net.modules():
            if type(m) is nn.BatchNorm2d:
                m.__class__ = GlobalBatchNorm2d  # same parameters, buffers and state-dict keys
        from torch.nn.parallel import DistributedDataParallel as DDP

        dev = next(net.parameters()).device
        # find_unused_parameters: some variants leave parameters out of a step's graph
        return DDP(step, device_ids=[dev.index] if dev.type == "cuda" else None, broadcast_buffers=False,
                   find_unused_parameters=True)

    def close(self, net: nn.Module | None = None) -> None:
        """Undo :meth:`wrap`'s BatchNorm change and leave the process group."""
        if net is not None:
            for m in net.modules():
                if type(m) is GlobalBatchNorm2d:
                    m.__class__ = nn.BatchNorm2d
        if self.active:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


class _Forward(nn.Module):
    def __init__(self, net: nn.Module, forward):
        super().__init__()
        self.net, self.fn = net, forward

    def forward(self, *args):
        return self.fn(self.net, *args)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the global batch of all ranks (gloo or NCCL): in training mode
    the per-channel mean and biased variance are all-reduced (two passes, with
    gradients through the reduction), running statistics updated as torch does
    (unbiased variance, ``momentum``). Eval mode and one process: plain BatchNorm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        c = x.shape[1]
        n = all_reduce(x.new_tensor([x.numel() / c])).detach()
        mean = all_reduce(x.sum((0, 2, 3))) / n
        xc = x - mean[None, :, None, None]
        var = all_reduce((xc * xc).sum((0, 2, 3))) / n
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * n / max(float(n) - 1, 1.0))
                self.num_batches_tracked.add_(1)
        y = xc * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks, differentiable (the gradient of a sum is summed too)."""

    @staticmethod
    def forward(ctx, t):
        import torch.distributed as dist

        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, g):
        return _AllReduceSum.forward(ctx, g)


def init(device: str = "cpu") -> Dist:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT`` in the environment): NCCL for CUDA
    devices (each local rank on ``cuda:LOCAL_RANK``), gloo otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(rank=rank, world=world, local_rank=local)


def single_process_only(method: str, why: str) -> None:
    """``ValueError`` under ``torchrun`` with more than one process (for trainers
    that cannot be data-parallel; otherwise every rank would write the same folder)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(f"--method {method} cannot train on several processes ({why}); run it without --nproc/torchrun")


def device_for(d: Dist, device: str) -> str:
    """``--device cuda`` under torchrun -> this local rank's GPU; anything else unchanged."""
    return f"cuda:{d.local_rank}" if d.active and str(device) == "cuda" else str(device)


def launch_command(argv: list[str], nproc: int, nnodes: int = 1, rdzv_endpoint: str | None = None,
                   node_rank: int | None = None) -> list[str]:
    """The ``torchrun`` command running ``clinloop <argv>`` on ``nproc`` processes per
    node: ``--standalone`` on one node, c10d rendezvous at ``rdzv_endpoint`` across nodes."""
    if nproc < 1 or nnodes < 1:
        raise ValueError(f"--nproc and --nnodes must be >= 1, got {nproc}, {nnodes}")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", f"--nnodes={nnodes}"]
    if rdzv_endpoint:
        cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}"]
    elif nnodes == 1:
        cmd += ["--standalone"]
    else:
        raise ValueError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (the same on every node)")
    if node_rank is not None:
        cmd += [f"--node-rank={node_rank}"]
    return cmd + ["--no-python", sys.executable, "-c", "import sys; from clinloop.cli import main; sys.exit(main())",
                  *argv]


def launch(argv: list[str], nproc: int, nnodes: int = 1, rdzv_endpoint: str | None = None,
           node_rank: int | None = None) -> int:
    """Run :func:`launch_command` and return its exit status."""
    return subprocess.call(launch_command(argv, nproc, nnodes, rdzv_endpoint, node_rank))
