"""``quantize --float-gates-from REPORT``: which nodes of an FP32 file to keep in float, from a gate-level diff.

``inspect FILE.onnx`` ranks the gates of a quantized file by how far their outputs moved from PyTorch FP32
(``gate_diff``). The gates it ranks most damaged are kept in float in the next quantization: every node the
dynamo exporter scoped inside those gate modules (pool, squeeze MLP, sigmoid, multiply).
"""
import json
import os
from typing import Any, Dict, List, Optional, Tuple

from .errors import DeployError
from .gate_cost import onnx_gate_of_nodes

__all__ = ['read_gate_report', 'damaged_gate_nodes']


def read_gate_report(path: str) -> Dict[str, Any]:
    """The JSON of ``inspect FILE.onnx`` (``gate_diff.json``, or its folder), checked for a gate ranking."""
    if os.path.isdir(path):
        path = os.path.join(path, 'gate_diff.json')
    if not os.path.isfile(path):
        raise DeployError(f'--float-gates-from: {path} not found (the gate_diff.json of '
                          '`timm-recal inspect FILE.onnx`)')
    try:
        with open(path, encoding='utf-8') as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        raise DeployError(f'--float-gates-from: {path} is not a JSON report: {e}') from None
    if not isinstance(report, dict) or not isinstance(report.get('ranking'), list):
        raise DeployError(f'--float-gates-from: {path} has no gate ranking; give the gate_diff.json that '
                          '`timm-recal inspect FILE.onnx -o DIR` writes')
    return report


def damaged_gate_nodes(report_path: str, count: Optional[int], proto, meta: Dict[str, Any],
                       onnx_path: str) -> Tuple[List[str], List[str]]:
    """``(gates, node names)``: the ``count`` most damaged gates of the report (default: those it marks damaged)
    and the nodes of ``proto`` inside them. A report on another architecture is refused."""
    report = read_gate_report(report_path)
    arch, ours = report.get('architecture'), meta.get('architecture')
    if arch and ours and arch != ours:
        raise DeployError(f'--float-gates-from: the report is about {arch}, {onnx_path} is {ours}')
    if count is not None and count < 0:
        raise DeployError(f'--float-gates must be >= 0, got {count}')
    gates = list(report['ranking'][:count]) if count is not None else list(report.get('damaged') or [])
    owner = onnx_gate_of_nodes(proto, gates)
    missing = [g for g in gates if g not in owner.values()]
    if missing:
        raise DeployError(f"--float-gates-from: {onnx_path} has no nodes scoped in gate(s) {', '.join(missing[:4])} "
                          '(export it with `timm-recal export`, the dynamo exporter)')
    return gates, [n for n, g in owner.items()]
