"""``torch_threads(n)``: torch's intra-op threads for one stage, restored after it.

``--threads`` of a stage applies to the PyTorch runners too (eager, inductor, aoti and the PyTorch side of parity),
which take their threads from the process; set for the stage only, so a library caller's setting survives it.
"""
from contextlib import contextmanager
from typing import Iterator, Optional

import torch

__all__ = ['torch_threads']


@contextmanager
def torch_threads(threads: Optional[int]) -> Iterator[int]:
    """Run the block with ``threads`` intra-op threads (None or 0: as they are); yields the count in force."""
    previous = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
