"""Will a batch fit in memory? Checked before bench builds anything for it.

A batch the machine cannot hold does not fail cleanly: ONNX Runtime's allocation raises deep inside a run, or the
process takes most of the machine's memory and swaps. So bench estimates what one image needs and refuses a batch
that cannot fit, with the number it would need.

The estimate is cheap: the input image plus the largest working set of one layer (its inputs and its output,
which must be in memory together), from a batch-1 forward with a hook on every leaf module of a PyTorch model, or
from ONNX shape inference on a file (batch axis 1). It is close to what a runtime really takes, not a bound: for
cnn3 under ONNX Runtime CPU it says 281 MB at batch 1024 where the process grew by 251 MB (the input and the run;
in-place and fused ops take less, other live tensors and arenas more). A batch is refused only when this
estimate exceeds the free memory, so a passed batch may still be too large for a busy machine. Free memory is
``MemAvailable`` of ``/proc/meminfo`` bounded by the cgroup's limit (containers), or ``torch.cuda.mem_get_info``
on CUDA.
"""
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from .errors import DeployError

__all__ = ['Footprint', 'model_footprint', 'onnx_footprint', 'available_bytes', 'check_batches_fit']


@dataclass
class Footprint:
    """Bytes one image needs: its input and the largest layer working set (``layer`` names that layer)."""
    input_bytes: int
    layer_bytes: int
    layer: str

    @property
    def per_image(self) -> int:
        return self.input_bytes + self.layer_bytes


def model_footprint(model, input_size: Sequence[int], device: str = 'cpu') -> Footprint:
    """A batch-1 forward of ``model`` with a hook on every leaf module (its inputs and output, in bytes)."""
    import torch
    best = [0, '']

    def hook(name):
        def record(module, inputs, output):
            tensors = [t for t in (*inputs, output) if isinstance(t, torch.Tensor)]
            size = sum(t.numel() * t.element_size() for t in tensors)
            if size > best[0]:
                best[0], best[1] = size, name or type(module).__name__
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if not list(m.children())]
    param = next(model.parameters(), None)
    x = torch.zeros((1, *input_size), device=param.device if param is not None else device,
                    dtype=param.dtype if param is not None and param.is_floating_point() else torch.float32)
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return Footprint(x.numel() * 4, best[0], best[1])  # the benchmark input is float32 (runtimes.bench_input)


def onnx_footprint(path: str, input_size: Sequence[int]) -> Footprint:
    """ONNX shape inference on ``path`` with every symbolic axis (the batch) taken as 1."""
    import numpy as np
    import onnx
    from onnx import helper, shape_inference
    from .metadata import load_onnx
    model = load_onnx(path, load_external_data=False)
    try:
        model = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001  (a graph shape inference cannot follow: the input alone is the floor)
        pass
    weights = {t.name for t in model.graph.initializer}
    sizes = {}
    for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        t = v.type.tensor_type
        if v.name in weights or not t.HasField('shape') or t.elem_type == onnx.TensorProto.UNDEFINED:
            continue
        dims = [d.dim_value if d.HasField('dim_value') else 1 for d in t.shape.dim]
        sizes[v.name] = int(np.prod(dims)) * np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).itemsize
    best, layer = 0, ''
    for node in model.graph.node:
        size = sum(sizes.get(n, 0) for n in (*node.input, *node.output) if n and n not in weights)
        if size > best:
            best, layer = size, node.name or node.op_type
    return Footprint(int(np.prod(input_size)) * 4, best, layer)


def _cgroup_free() -> Optional[int]:
    """The cgroup v2 memory limit less its usage, where a limit is set."""
    try:
        with open('/sys/fs/cgroup/memory.max') as f:
            limit = f.read().strip()
        with open('/sys/fs/cgroup/memory.current') as f:
            used = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return None if limit == 'max' else max(int(limit) - used, 0)


def available_bytes(device: str = 'cpu') -> Tuple[Optional[int], str]:
    """``(free bytes, where they were read)``; ``None`` where this system does not say."""
    if device.startswith('cuda'):
        import torch
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free), f'free on {device} (torch.cuda.mem_get_info)'
    free = None
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    free = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    cgroup = _cgroup_free()
    if cgroup is not None and (free is None or cgroup < free):
        return cgroup, 'left under the cgroup memory limit'
    return free, 'MemAvailable in /proc/meminfo'


def _size(n: float) -> str:
    for unit, scale in (('GB', 1e9), ('MB', 1e6)):
        if n >= scale:
            return f'{n / scale:.1f} {unit}'
    return f'{n / 1e3:.0f} kB'


def check_batches_fit(footprint: Footprint, batches: Sequence[int], device: str, what: str) -> None:
    """Refuse the first of ``batches`` whose input and largest layer cannot fit in the free memory."""
    free, where = available_bytes(device)
    if free is None:
        return
    for b in sorted(batches, reverse=True):
        need = b * footprint.per_image
        if need > free:
            fits = max(free // max(footprint.per_image, 1), 0)
            raise DeployError(
                f'--batch {b} needs about {_size(need)} for {what} ({_size(footprint.per_image)} per image: the '
                f'input and the largest layer, {footprint.layer}, with its input), but {_size(free)} are available '
                f'({where}); the largest batch that could fit is about {fits}')
