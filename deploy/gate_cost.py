"""What each gate costs: parameters, MACs, and its measured share of inference time in PyTorch and ONNX Runtime.

* ``macs``: multiply-accumulates of the gate's own convolutions / linear layers for one image (the squeeze MLP,
  AB's depthwise 1x1, SLE's 4x4 conv), counted by forward hooks; ``map_multiplies`` is the elements of the map the
  gate scales (the multiply, and the pool reads as many).
* ``torch_share``: ``torch.profiler`` CPU time inside the gate module over the time of the whole forward,
  batched, after warm-up (each gate is wrapped in a ``record_function`` by forward hooks).
* ``ort_share``: ONNX Runtime's own profile (``enable_profiling``) of the exported file: node kernel times, each
  node assigned to a gate by the module scope the dynamo exporter records on it (``pkg.torch.onnx.name_scopes``),
  over the time of all nodes.
"""
import json
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .gate_probe import GateSite

__all__ = ['node_scopes', 'gate_macs', 'torch_time_shares', 'onnx_gate_of_nodes', 'ort_time_shares']


def gate_macs(model: nn.Module, sites: Sequence[GateSite], x: torch.Tensor) -> Dict[str, Dict[str, int]]:
    """Per gate, for one image: ``params``, ``macs`` of its conv/linear layers and ``map_multiplies``."""
    counts: Dict[str, Dict[str, int]] = {s.name: {'params': sum(p.numel() for p in s.module.parameters()),
                                                  'macs': 0, 'map_multiplies': 0} for s in sites}
    handles = []

    def layer_hook(gate: str):
        def hook(m: nn.Module, args, out: torch.Tensor):
            if isinstance(m, nn.Conv2d):
                per_out = (m.in_channels // m.groups) * int(np.prod(m.kernel_size))
            else:
                per_out = m.in_features
            counts[gate]['macs'] += int(out[0].numel()) * per_out
        return hook

    def gate_hook(gate: str):
        def hook(m: nn.Module, args, out: torch.Tensor):
            counts[gate]['map_multiplies'] += int(out[0].numel())
        return hook

    for s in sites:
        handles.append(s.module.register_forward_hook(gate_hook(s.name)))
        for m in s.module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                handles.append(m.register_forward_hook(layer_hook(s.name)))
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    return counts


def torch_time_shares(model: nn.Module, sites: Sequence[GateSite], x: torch.Tensor, repeats: int = 5) -> Dict[str, Any]:
    """``{'total_ms', 'gates': {name: share}}``: profiler CPU time per gate over a whole forward of ``x``."""
    # kineto writes 'USDT: ... profiler_start/stop' to stderr at its level 5 (its top one), so 5 still printed them;
    # 6 is above every level. Read when the profiler starts; a user's own setting wins.
    os.environ.setdefault('KINETO_LOG_LEVEL', '6')
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity, profile
    open_ranges: Dict[str, Any] = {}
    handles = []
    for s in sites:
        def pre(m, args, name=f'gate::{s.name}'):
            open_ranges[name] = record_function(name)
            open_ranges[name].__enter__()

        def post(m, args, out, name=f'gate::{s.name}'):
            open_ranges.pop(name).__exit__(None, None, None)
        handles += [s.module.register_forward_pre_hook(pre), s.module.register_forward_hook(post)]
    try:
        with torch.no_grad():
            model(x)  # warm-up
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(repeats):
                    with record_function('gate_inspect::forward'):
                        model(x)
    finally:
        for h in handles:
            h.remove()
    times = {e.key: e.cpu_time_total for e in prof.key_averages()}
    total = times.get('gate_inspect::forward', 0.0)
    shares = {s.name: (times.get(f'gate::{s.name}', 0.0) / total if total else None) for s in sites}
    return {'total_ms': round(total / 1000.0 / repeats, 3), 'batch': int(x.shape[0]), 'gates': shares}


def node_scopes(node) -> List[str]:
    """The module scopes the dynamo exporter records on an ONNX node (``[]`` when absent)."""
    for p in node.metadata_props:
        if p.key == 'pkg.torch.onnx.name_scopes':
            try:
                import ast
                return list(ast.literal_eval(p.value))
            except (ValueError, SyntaxError):
                return []
    return []


def onnx_gate_of_nodes(proto, gate_names: Sequence[str]) -> Dict[str, str]:
    """ONNX node name -> the gate whose module scope holds it (from the dynamo exporter's name scopes)."""
    gates = sorted(gate_names, key=len, reverse=True)
    owner = {}
    for node in proto.graph.node:
        scopes = node_scopes(node)
        for g in gates:
            if any(sc == g or sc.startswith(g + '.') for sc in scopes):
                owner[node.name] = g
                break
    return owner


def _file_node(profiled: str, names: set, producer: Dict[str, str]) -> Optional[str]:
    """The file node an ORT profile entry ran: itself, or (ORT's NCHWc layout pass names the nodes it rewrites
    ``<output tensor>_nchwc``) the producer of that tensor."""
    if profiled in names:
        return profiled
    if profiled.endswith('_nchwc'):
        return producer.get(profiled[:-len('_nchwc')])
    return None


def ort_time_shares(onnx_path: str, gate_names: Sequence[str], x: np.ndarray, tmp: str, repeats: int = 5,
                    threads: Optional[int] = None) -> Dict[str, Any]:
    """``{'total_ms', 'reorder_share', 'unassigned_nodes', 'gates': {name: share}}`` from ONNX Runtime's profile.

    A node ORT's NCHWc pass rewrote is found by its output tensor; the layout reorders that pass inserts belong to
    no module and are reported together (``reorder_share``); other nodes ORT created count as outside every gate
    (``unassigned_nodes``)."""
    import onnx
    import onnxruntime as ort
    proto = onnx.load(onnx_path, load_external_data=False)
    owner = onnx_gate_of_nodes(proto, gate_names)
    names = {n.name for n in proto.graph.node}
    producer = {o: n.name for n in proto.graph.node for o in n.output}
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tmp, 'ort_profile')
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(onnx_path, sess_options=opts, providers=['CPUExecutionProvider'])
    feed = {sess.get_inputs()[0].name: x.astype(np.float32)}
    sess.run(None, feed)  # warm-up, in the profile too; dropped below by run order
    for _ in range(repeats):
        sess.run(None, feed)
    with open(sess.end_profiling(), encoding='utf-8') as f:
        events = json.load(f)
    runs = [e for e in events if e.get('cat') == 'Session' and e.get('name') == 'model_run']
    start = runs[1]['ts'] if len(runs) > 1 else 0  # skip the warm-up run
    durations: Dict[str, List[float]] = {}
    ops: Dict[str, str] = {}
    for e in events:
        if e.get('cat') != 'Node' or not e.get('name', '').endswith('_kernel_time') or e['ts'] < start:
            continue
        profiled = e['name'][:-len('_kernel_time')]
        durations.setdefault(profiled, []).append(float(e['dur']))
        ops[profiled] = str((e.get('args') or {}).get('op_name', ''))
    # per node, the median over the runs: a preempted run on a busy machine does not move it
    per_run = {p: float(np.median(d)) * len(d) / repeats for p, d in durations.items()}
    per_gate: Dict[str, float] = {g: 0.0 for g in gate_names}
    total, reorder, unassigned = sum(per_run.values()), 0.0, set()
    for profiled, t in per_run.items():
        node = _file_node(profiled, names, producer)
        if node is None:
            if ops[profiled].startswith('Reorder'):
                reorder += t
            else:
                unassigned.add(profiled)
        elif owner.get(node) is not None:
            per_gate[owner[node]] += t
    return {'total_ms': round(total / 1000.0, 3), 'batch': int(x.shape[0]),
            'reorder_share': reorder / total if total else None, 'unassigned_nodes': len(unassigned),
            'gates': {g: (t / total if total else None) for g, t in per_gate.items()}}
