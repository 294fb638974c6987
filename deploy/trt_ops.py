"""Static check of an ONNX file against the TensorRT ONNX parser's documented operator support.

Runs everywhere (no TensorRT, no GPU): the ops of an export are compared with the support matrix that the
onnx-tensorrt project publishes for each TensorRT release (``docs/operators.md``), kept as data in the package
(``data/trt_onnx_ops.json``, one table per TensorRT major version). What a table says is checked mechanically
where the restriction is about the graph itself (an op marked unsupported, an op the parser does not know, an
opset outside the parser's range, ops of other domains, inputs that must be initializers, Q/DQ zero points that
must be zero, pooling rank and dilations, the quantized and UINT8 types). What only a build can tell (kernels for
a given GPU and shape, fusions, the precision TensorRT chooses, memory) is listed in ``cannot_check`` of every
result, so a pass here is "the parser should accept this graph", not "TensorRT builds and matches".

Sources (read for this module and for ``trt_onnx_ops.json``):

* onnx/onnx-tensorrt ``docs/operators.md`` at tag ``release/10.1-GA`` (commit 96e7811, "TensorRT 10.0 supports
  operators in the inclusive range of opset 9 to opset 20"): the 10.x table, parsed by
  ``table_from_operators_markdown``.
* The 11.x table: no 11.x ``operators.md`` was reachable from this machine, so it is the 10.x table plus the
  parser changes that NVIDIA's 11.x release notes list: onnx-tensorrt release/11.0 ("Added support for Swish
  operator"), release/11.5-GA ("Added support for ONNX opset 25", "Squeeze when axis input is omitted"), and the
  TensorRT "ONNX Opset Guide" (docs.nvidia.com/deeplearning/tensorrt/latest/reference/onnx-opset-guide.html:
  11.x, maximum opset 25, minimum opset 9). The JSON records this provenance under ``source``.
"""
import json
import os
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .errors import DeployError
from .metadata import load_onnx

__all__ = [
    'TRT_MAJORS', 'CANNOT_CHECK', 'OpCheckResult', 'load_op_tables', 'op_table', 'table_from_operators_markdown',
    'check_onnx_for_tensorrt', 'tensorrt_info',
]

TRT_MAJORS = (10, 11)
DATA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'trt_onnx_ops.json')

#: what a static check cannot know; reported with every result
CANNOT_CHECK = (
    'whether the installed TensorRT has a kernel (tactic) for every layer at these shapes on the target GPU',
    'shape-dependent parser limits that appear only after constant folding and shape inference inside TensorRT',
    'which precision TensorRT 10 picks per layer when the FP16 builder flag lets it choose (weakly typed build)',
    'whether the engine fits the workspace limit and GPU memory, and its speed',
    'numerical agreement of the engine with PyTorch (that is what parity with runtime trt measures on a GPU)',
    'restrictions written as prose in operators.md that are not listed under checked_restrictions',
)

#: ONNX TensorProto elem_type -> the type words operators.md uses
_ONNX_TYPE_WORDS = {1: 'FP32', 2: 'UINT8', 3: 'INT8', 6: 'INT32', 7: 'INT64', 9: 'BOOL', 10: 'FP16', 11: 'DOUBLE',
                    16: 'BF16', 17: 'FP8', 18: 'FP8', 22: 'INT4'}
#: ops whose quantized (INT8/FP8/INT4) tensors are legal: TensorRT's quantized types exist only around Q/DQ
_QDQ_OPS = {'QuantizeLinear', 'DequantizeLinear'}


def table_from_operators_markdown(text: str) -> Dict[str, Any]:
    """Parse onnx-tensorrt's ``docs/operators.md`` into ``{opset_min, opset_max, types, notes, ops}``.

    ``ops`` maps each operator to ``{'supported': bool, 'types': [...], 'restrictions': str}``. The generator of
    ``trt_onnx_ops.json``; kept so that a newer ``operators.md`` can be turned into data the same way.
    """
    m = re.search(r'opset (\d+) to opset (\d+)', text) or re.search(r'up to Opset (\d+)()', text)
    opset_min = int(m.group(1)) if m and m.group(2) else None
    opset_max = int(m.group(2) or m.group(1)) if m else None
    types_m = re.search(r'supports the following ONNX data types: ([^\n]+)', text)
    words = {'FLOAT32': 'FP32', 'FLOAT16': 'FP16', 'BFLOAT16': 'BF16'}
    types = [re.sub(r'^and\s+', '', t.strip()) for t in types_m.group(1).split(',')] if types_m else []
    types = [words.get(t, t) for t in types if t]
    notes = [line[1:].strip() for line in text.splitlines() if line.startswith('>')]
    ops: Dict[str, Dict[str, Any]] = {}
    for line in text.splitlines():
        if not line.startswith('|'):
            continue
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) < 2 or cells[0] in ('Operator', '') or set(cells[0]) <= {'-'}:
            continue
        name, flag = cells[0], cells[1]
        type_cell = cells[2] if len(cells) > 2 else ''
        op_types = [t.strip().replace('INF64', 'INT64') for t in type_cell.split(',')] if type_cell else []
        ops[name] = {
            'supported': flag.upper().startswith('Y'),
            'experimental': 'EXPERIMENTAL' in flag.upper(),
            'types': [t for t in op_types if t],
            'restrictions': cells[3].replace('<br />', ' ').strip() if len(cells) > 3 else '',
        }
    return {'opset_min': opset_min, 'opset_max': opset_max, 'types': types, 'notes': notes, 'ops': ops}


@lru_cache(maxsize=1)
def load_op_tables() -> Dict[str, Any]:
    """The packaged tables, keyed by major version as a string (``'10'``, ``'11'``)."""
    try:
        with open(DATA_FILE) as f:
            return json.load(f)
    except OSError as e:
        raise DeployError(f'the TensorRT operator table is missing from the package ({DATA_FILE}: {e.strerror}); '
                          'reinstall timm-recal') from None


def op_table(trt_major: int) -> Dict[str, Any]:
    """The operator table of one TensorRT major version."""
    tables = load_op_tables()
    if str(trt_major) not in tables:
        raise DeployError(f'no ONNX operator table for TensorRT {trt_major}; known: {", ".join(sorted(tables))}')
    return tables[str(trt_major)]


@dataclass
class OpCheckResult:
    """What the static check found. ``passed`` means no ``errors``; warnings do not fail it."""
    onnx_path: str
    trt_major: int
    opset: Optional[int]
    op_counts: Dict[str, int]
    errors: List[Dict[str, str]] = field(default_factory=list)
    warnings: List[Dict[str, str]] = field(default_factory=list)
    checked_restrictions: Dict[str, str] = field(default_factory=dict)
    unchecked_restrictions: Dict[str, str] = field(default_factory=dict)
    cannot_check: List[str] = field(default_factory=lambda: list(CANNOT_CHECK))
    source: str = ''

    @property
    def passed(self) -> bool:
        return not self.errors

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d['passed'] = self.passed
        return d

    def summary(self) -> str:
        """One line per problem, for the command line."""
        head = (f'TensorRT {self.trt_major} static op check of {self.onnx_path}: '
                f"{'PASSED' if self.passed else 'FAILED'} ({sum(self.op_counts.values())} nodes, "
                f'{len(self.op_counts)} op types, opset {self.opset})')
        lines = [head]
        lines += [f"  error: {e['op']} {e['node']}: {e['problem']}" for e in self.errors]
        lines += [f"  warning: {w['op']} {w['node']}: {w['problem']}" for w in self.warnings]
        if self.unchecked_restrictions:
            rules = '; '.join(f'{k}: {v}' for k, v in self.unchecked_restrictions.items())
            lines.append(f'  not checked statically: {rules}')
        lines.append('  a static check cannot know: ' + '; '.join(self.cannot_check))
        return '\n'.join(lines)


def _all_nodes(graph) -> List[Any]:
    """Nodes of ``graph`` and of every subgraph (If/Loop/Scan bodies)."""
    out = []
    for node in graph.node:
        out.append(node)
        for attr in node.attribute:
            if attr.HasField('g'):
                out.extend(_all_nodes(attr.g))
            for g in attr.graphs:
                out.extend(_all_nodes(g))
    return out


def _tensor_types(model) -> Dict[str, int]:
    """elem_type of every named tensor that shape inference can type (inputs, outputs, value_info, initializers)."""
    import onnx
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # a graph shape inference cannot handle: fall back to what the file states
        inferred = model
    g = inferred.graph
    types = {t.name: t.data_type for t in g.initializer}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.HasField('tensor_type'):
            types[vi.name] = vi.type.tensor_type.elem_type
    return types


def _constant_names(graph) -> Dict[str, Any]:
    """Initializers and outputs of Constant nodes (name -> TensorProto): what the parser treats as constants."""
    consts = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == 'Constant' and node.output:
            for attr in node.attribute:
                if attr.name == 'value':
                    consts[node.output[0]] = attr.t
    return consts


def _input_index(op: str, opset: int, input_name: str) -> Optional[int]:
    """Position of a named formal input of ``op`` (ONNX schema), or None."""
    import onnx.defs
    try:
        schema = onnx.defs.get_schema(op, opset)
    except Exception:
        return None
    for i, formal in enumerate(schema.inputs):
        if formal.name == input_name:
            return i
    return None


def _attr(node, name: str):
    import onnx.helper
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return None


_INITIALIZER_RULE = re.compile(r'`(\w+)`(?: input)? must be an? (?:initializer|constant tensor)')
_ZERO_POINT_RULE = re.compile(r'`(\w+_zero_point)` must be (?:zero|0)')
_POOL_RANK_RULE = re.compile(r'2D or 3D [Pp]ooling only')
_DILATIONS_RULE = re.compile(r'`dilations` must be empty or all ones')
_INDICES_RULE = re.compile(r'`Indices` output tensor unsupported')


def _problem(items: List[Dict[str, str]], op: str, node: str, problem: str) -> None:
    items.append({'op': op, 'node': node, 'problem': problem})


def check_onnx_for_tensorrt(onnx_path: str, trt_major: int = 10) -> OpCheckResult:
    """Check the ops of ``onnx_path`` against TensorRT ``trt_major``'s documented ONNX parser support.

    Errors: ops the parser marks unsupported or does not list, ops outside the default ONNX domain, a default
    opset outside the parser's range, and violations of the restrictions that are about the graph (see module
    docstring). Warnings: experimental ops, DOUBLE tensors (TensorRT casts them down), data types a table does not
    list for an op. Restrictions written as prose are reported, per op present, as not checked.
    """
    if trt_major not in TRT_MAJORS:
        raise DeployError(f'trt_major must be one of {TRT_MAJORS}, got {trt_major}')
    table = op_table(trt_major)
    model = load_onnx(os.fspath(onnx_path), load_external_data=False)
    opsets = {o.domain or 'ai.onnx': o.version for o in model.opset_import}
    opset = opsets.get('ai.onnx')
    result = OpCheckResult(onnx_path=os.fspath(onnx_path), trt_major=trt_major, opset=opset, op_counts={},
                           source=table.get('source', ''))
    _check_opset_and_io(result, table, model)
    graph = model.graph
    types = _tensor_types(model)
    consts = _constant_names(graph)
    io_names = {vi.name for vi in list(graph.input) + list(graph.output)}
    for node in _all_nodes(graph):
        _check_node(result, table, node, opset, types, consts, io_names)
    # one message per distinct problem and op is enough for a report of a large graph
    result.errors = _dedupe(result.errors)
    result.warnings = _dedupe(result.warnings)
    return result


def _check_opset_and_io(result: OpCheckResult, table: Dict[str, Any], model: Any) -> None:
    """The default opset within the parser's range, and graph I/O of types TensorRT supports."""
    opset, trt_major = result.opset, result.trt_major
    if opset is None:
        _problem(result.errors, '-', '-', 'the model imports no default-domain (ai.onnx) opset')
    elif not table['opset_min'] <= opset <= table['opset_max']:
        _problem(result.errors, '-', '-', f"opset {opset} is outside TensorRT {trt_major}'s parser range "
                                          f"{table['opset_min']}..{table['opset_max']}; re-export with a supported "
                                          '--opset')
    for vi in list(model.graph.input) + list(model.graph.output):
        word = _ONNX_TYPE_WORDS.get(vi.type.tensor_type.elem_type, str(vi.type.tensor_type.elem_type))
        if word not in table['types']:
            _problem(result.errors, '-', vi.name, f'graph I/O of type {word}, which TensorRT {trt_major} does not '
                                                  'support')


def _check_node(result: OpCheckResult, table: Dict[str, Any], node: Any, opset: Optional[int],
                types: Dict[str, int], consts: Dict[str, Any], io_names: set) -> None:
    """One node: its domain, its entry in the operator table, its restrictions and its data types."""
    trt_major = result.trt_major
    op, name = node.op_type, node.name or (node.output[0] if node.output else '?')
    result.op_counts[op] = result.op_counts.get(op, 0) + 1
    if node.domain not in ('', 'ai.onnx'):
        _problem(result.errors, op, name, f"op of domain '{node.domain}' (not standard ONNX): the TensorRT parser "
                                          'only handles it through a plugin of that name, which this check cannot '
                                          'see')
        return
    entry = table['ops'].get(op)
    if entry is None:
        _problem(result.errors, op, name, f'not in the TensorRT {trt_major} ONNX parser operator table')
        return
    if not entry['supported']:
        _problem(result.errors, op, name, f'marked unsupported (N) for TensorRT {trt_major}')
        return
    if entry.get('experimental'):
        _problem(result.warnings, op, name, 'marked EXPERIMENTAL in the parser operator table')
    rules = entry.get('restrictions', '')
    checked = _check_restrictions(result, node, op, name, rules, opset, consts)
    if checked:
        result.checked_restrictions[op] = ', '.join(checked)
    elif rules:
        result.unchecked_restrictions[op] = rules
    _check_data_type(result, entry, node, op, name, types, io_names)
    if op in _QDQ_OPS:
        _check_quantized_type(result, node, op, name, types)


def _check_restrictions(result: OpCheckResult, node: Any, op: str, name: str, rules: str, opset: Optional[int],
                        consts: Dict[str, Any]) -> List[str]:
    """Check the restrictions of ``rules`` that are about the graph; return the names of those checked."""
    import onnx.numpy_helper

    checked = []
    for input_name in _INITIALIZER_RULE.findall(rules):
        idx = _input_index(op, opset or 18, input_name)
        checked.append(f'`{input_name}` constant')
        if idx is not None and idx < len(node.input) and node.input[idx] and node.input[idx] not in consts:
            _problem(result.errors, op, name, f"input `{input_name}` ({node.input[idx]}) must be an initializer or "
                                              'constant')
    for zp in _ZERO_POINT_RULE.findall(rules):
        idx = _input_index(op, opset or 18, zp)
        checked.append(f'`{zp}` zero')
        if idx is not None and idx < len(node.input) and node.input[idx]:
            t = consts.get(node.input[idx])
            if t is None:
                _problem(result.errors, op, name, f'`{zp}` is not a constant, so it cannot be shown to be zero')
            elif np.any(onnx.numpy_helper.to_array(t) != 0):
                _problem(result.errors, op, name, f'`{zp}` must be zero (TensorRT quantization is symmetric); this '
                                                  'one is not (asymmetric activations, e.g. ONNX Runtime U8 QDQ)')
    if _POOL_RANK_RULE.search(rules):
        checked.append('2D/3D pooling')
        kernel = _attr(node, 'kernel_shape')
        if kernel is not None and len(kernel) not in (2, 3):
            _problem(result.errors, op, name, f'{len(kernel)}D pooling; TensorRT supports 2D or 3D only')
    if _DILATIONS_RULE.search(rules):
        checked.append('dilations')
        dil = _attr(node, 'dilations')
        if dil and any(int(d) != 1 for d in dil):
            _problem(result.errors, op, name, f'dilations {list(dil)}; must be empty or all ones')
    if _INDICES_RULE.search(rules):
        checked.append('no Indices output')
        if len(node.output) > 1 and node.output[1]:
            _problem(result.errors, op, name, 'the Indices output is used; TensorRT does not support it')
    return checked


def _check_data_type(result: OpCheckResult, entry: Dict[str, Any], node: Any, op: str, name: str,
                     types: Dict[str, int], io_names: set) -> None:
    """The type of the first (data) input, where shape inference or the file says it."""
    if not (node.input and node.input[0] in types and entry.get('types')):
        return
    word = _ONNX_TYPE_WORDS.get(types[node.input[0]], str(types[node.input[0]]))
    if word in ('INT8', 'FP8', 'INT4') and op not in _QDQ_OPS:
        _problem(result.errors, op, name, f'{word} input outside Q/DQ: TensorRT supports quantized types only '
                                          'through QuantizeLinear/DequantizeLinear')
    elif word == 'UINT8' and op not in _QDQ_OPS | {'Cast'} and node.input[0] not in io_names:
        _problem(result.errors, op, name, 'UINT8 tensor inside the graph: TensorRT supports UINT8 only as network I/O')
    elif word == 'DOUBLE':
        _problem(result.warnings, op, name, 'DOUBLE input: TensorRT casts it down to FLOAT')
    elif word not in entry['types'] and word not in ('INT8', 'FP8', 'INT4', 'UINT8') and op not in _QDQ_OPS:
        _problem(result.warnings, op, name, f"{word} input; the table lists {', '.join(entry['types'])}")


def _check_quantized_type(result: OpCheckResult, node: Any, op: str, name: str, types: Dict[str, int]) -> None:
    """The quantized side of a Q/DQ pair: its zero point (or input) type must not be UINT8."""
    q_idx = 2
    q_name = node.input[q_idx] if len(node.input) > q_idx and node.input[q_idx] else None
    q_type = types.get(q_name) if q_name else (types.get(node.input[0]) if op == 'DequantizeLinear' else None)
    word = _ONNX_TYPE_WORDS.get(q_type) if q_type is not None else None
    if word == 'UINT8':
        _problem(result.errors, op, name, 'UINT8 quantized type (asymmetric, e.g. ONNX Runtime QUInt8 activations): '
                                          'TensorRT needs signed INT8 with zero point 0 (quantize with QInt8 '
                                          'symmetric activations)')


def _dedupe(items: Sequence[Dict[str, str]], keep: int = 3) -> List[Dict[str, str]]:
    """At most ``keep`` entries per (op, problem), then one ``(and N more)`` entry."""
    seen: Dict[tuple, int] = {}
    out: List[Dict[str, str]] = []
    for item in items:
        key = (item['op'], item['problem'])
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= keep:
            out.append(item)
    for (op, problem), n in seen.items():
        if n > keep:
            out.append({'op': op, 'node': f'(and {n - keep} more)', 'problem': problem})
    return out


def tensorrt_info(onnx_path: str) -> Dict[str, Any]:
    """Compact result per TensorRT major version, for ``timm-recal info``: passed, the problems (op: problem),
    the restrictions left unchecked, and what a static check cannot know."""
    out: Dict[str, Any] = {}
    for major in TRT_MAJORS:
        r = check_onnx_for_tensorrt(onnx_path, major)
        out[f'tensorrt{major}'] = {
            'passed': r.passed, 'opset': r.opset,
            'errors': [f"{e['op']} {e['node']}: {e['problem']}" for e in r.errors],
            'warnings': [f"{w['op']} {w['node']}: {w['problem']}" for w in r.warnings],
            'unchecked_restrictions': r.unchecked_restrictions,
        }
    out['cannot_check'] = list(CANNOT_CHECK)
    return out
