"""Multi-GPU and multi-node launch of timm's ``train.py`` with ``torchrun``, and the global batch size its
learning-rate rule scales with (Hu et al. train SE-ResNets at lr 0.6 for a global batch of 1024; see
docs/distributed.md). Nothing here starts a process: the command is built for a shell or a job script.
"""
import shlex
from typing import List, Optional, Sequence

from .config import TrainConfig

__all__ = ['torchrun_command', 'global_batch_size', 'format_command']


def global_batch_size(cfg: TrainConfig, world_size: int, grad_accum_steps: int = 1) -> int:
    """Images per optimizer step over all processes: train.py's ``batch_size`` is per process."""
    if world_size < 1 or grad_accum_steps < 1:
        raise ValueError(f"world_size and grad_accum_steps must be >= 1, got {world_size}, {grad_accum_steps}")
    return cfg.batch_size * world_size * grad_accum_steps


def torchrun_command(
        config: str,
        nproc_per_node: int,
        nnodes: int = 1,
        node_rank: int = 0,
        master_addr: Optional[str] = None,
        master_port: int = 29500,
        train_script: str = 'train.py',
        train_args: Sequence[str] = (),
        python: Optional[str] = None,
) -> List[str]:
    """``torchrun ... train.py --config CONFIG [train_args]`` for one node of an ``nnodes`` x ``nproc_per_node`` job.

    Run the same command on every node with its own ``node_rank``; multi-node jobs need the address of node 0
    (``master_addr``). With ``python`` the launcher is ``python -m torch.distributed.run`` (what ``torchrun``
    wraps), useful where the console script is not on PATH.
    """
    if nproc_per_node < 1 or nnodes < 1:
        raise ValueError(f"nproc_per_node and nnodes must be >= 1, got {nproc_per_node}, {nnodes}")
    if not 0 <= node_rank < nnodes:
        raise ValueError(f"node_rank must be in [0, {nnodes}), got {node_rank}")
    if nnodes > 1 and not master_addr:
        raise ValueError("a multi-node job needs master_addr (the host name or address of node 0)")
    if not 0 < master_port < 65536:
        raise ValueError(f"master_port must be a TCP port, got {master_port}")
    cmd = [python, '-m', 'torch.distributed.run'] if python else ['torchrun']
    if nnodes > 1:
        cmd += [f'--nnodes={nnodes}', f'--node_rank={node_rank}', f'--master_addr={master_addr}',
                f'--master_port={master_port}']
    else:
        cmd += ['--standalone', '--nnodes=1']  # a local rendezvous: no address, no port clashes
    cmd += [f'--nproc_per_node={nproc_per_node}', train_script, '--config', config, *train_args]
    return cmd


def format_command(cmd: Sequence[str]) -> str:
    """The command as one shell line (quoted where needed)."""
    return ' '.join(shlex.quote(c) for c in cmd)
