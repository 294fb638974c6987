"""The static TensorRT operator check: the packaged tables, every restriction rule on hand-made graphs (each must
be able to fail), the INT8 export of ``quantize`` (asymmetric U8 activations, which TensorRT cannot take), and real
exports: a set covering every gate and every family in CI, the whole registry under ``slow``."""
import json
import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import numpy as np  # noqa: E402
import pytest  # noqa: E402

onnx = pytest.importorskip('onnx')
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import timm_recal  # noqa: E402,F401
from timm_recal_deploy.errors import DeployError  # noqa: E402
from timm_recal_deploy.trt_ops import (CANNOT_CHECK, check_onnx_for_tensorrt, load_op_tables,  # noqa: E402
                                       table_from_operators_markdown, tensorrt_info)

from deploy_helpers import ci_img_size, ci_models, family_of, gate_of  # noqa: E402

MD = """# Supported ONNX Operators

TensorRT 10.0 supports operators in the inclusive range of opset 9 to opset 20. More details below.

TensorRT supports the following ONNX data types: DOUBLE, FLOAT32, FLOAT16, INT8, UINT8, and BOOL

> Note: UINT8 is only supported as network input or output tensor types.

| Operator                  | Supported  | Supported Types | Restrictions |
|---------------------------|------------|-----------------|--------------|
| Abs                       | Y          | FP32, FP16, INT32 |
| AffineGrid                | N          |
| MaxPool                   | Y          | FP32, FP16 | 2D or 3D pooling only. `Indices` output tensor unsupported. `dilations` must be empty or all ones
| NonMaxSuppression         | Y [EXPERIMENTAL] | FP32 | Inputs `x` must be initializers.<br />Padded output |
"""


def test_operators_markdown_is_parsed_into_a_table():
    t = table_from_operators_markdown(MD)
    assert (t['opset_min'], t['opset_max']) == (9, 20)
    assert t['types'] == ['DOUBLE', 'FP32', 'FP16', 'INT8', 'UINT8', 'BOOL']
    assert t['ops']['Abs'] == {'supported': True, 'experimental': False, 'types': ['FP32', 'FP16', 'INT32'],
                               'restrictions': ''}
    assert t['ops']['AffineGrid']['supported'] is False
    assert t['ops']['MaxPool']['restrictions'].startswith('2D or 3D pooling only')
    nms = t['ops']['NonMaxSuppression']
    assert nms['supported'] and nms['experimental']
    assert nms['restrictions'] == 'Inputs `x` must be initializers. Padded output'
    assert t['notes'] == ['Note: UINT8 is only supported as network input or output tensor types.']


def test_packaged_tables_per_major_version():
    tables = load_op_tables()
    assert sorted(tables) == ['10', '11']
    t10, t11 = tables['10'], tables['11']
    assert (t10['opset_min'], t10['opset_max']) == (9, 20) and (t11['opset_min'], t11['opset_max']) == (9, 25)
    assert 'release/10.1-GA' in t10['source'] and 'derived' in t11['source'] and t11['changes_from_10']
    assert 'Swish' not in t10['ops'] and t11['ops']['Swish']['supported']
    assert len(t10['ops']) > 150
    for op in ('Conv', 'Relu', 'Sigmoid', 'ReduceMean', 'GlobalAveragePool', 'Gemm', 'QuantizeLinear'):
        assert t10['ops'][op]['supported'], op
    assert t10['ops']['QuantizeLinear']['restrictions'] == '`y_zero_point` must be 0'


def _model(nodes, inputs, outputs, inits=(), opset=18, domains=()):
    graph = helper.make_graph(nodes, 'g', inputs, outputs, initializer=list(inits))
    imports = [helper.make_opsetid('', opset)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(graph, opset_imports=imports)


def _save(model, tmp_path, name='m.onnx') -> str:
    path = str(tmp_path / name)
    onnx.save(model, path)
    return path


def _vi(name, elem=TensorProto.FLOAT, shape=('N', 3, 8, 8)):
    return helper.make_tensor_value_info(name, elem, list(shape))


def _problems(result):
    return [(e['op'], e['problem']) for e in result.errors]


def test_a_plain_graph_passes_and_says_what_it_cannot_know(tmp_path):
    m = _model([helper.make_node('Relu', ['x'], ['r']), helper.make_node('Sigmoid', ['r'], ['y'])],
               [_vi('x')], [_vi('y')])
    r = check_onnx_for_tensorrt(_save(m, tmp_path), 10)
    assert r.passed and r.errors == [] and r.op_counts == {'Relu': 1, 'Sigmoid': 1}
    assert r.cannot_check == list(CANNOT_CHECK) and 'kernel' in r.summary()
    assert r.to_dict()['passed'] is True


def test_unsupported_unknown_and_foreign_domain_ops_fail(tmp_path):
    nodes = [helper.make_node('Relu', ['x'], ['a']),
             helper.make_node('FancyOp', ['a'], ['b']),  # not in any table
             helper.make_node('FusedConv', ['b'], ['y'], domain='com.microsoft')]
    m = _model(nodes, [_vi('x')], [_vi('y')], domains=['com.microsoft'])
    r = check_onnx_for_tensorrt(_save(m, tmp_path), 10)
    probs = dict(_problems(r))
    assert not r.passed
    assert 'not in the TensorRT 10 ONNX parser operator table' in probs['FancyOp']
    assert "domain 'com.microsoft'" in probs['FusedConv']
    # an op the table marks N
    grid = _model([helper.make_node('AffineGrid', ['t', 's'], ['y'])],
                  [_vi('t', shape=(1, 2, 3)), _vi('s', TensorProto.INT64, (4,))], [_vi('y', shape=(1, 4, 4, 2))],
                  opset=20)
    r = check_onnx_for_tensorrt(_save(grid, tmp_path, 'g.onnx'), 10)
    assert ('AffineGrid', 'marked unsupported (N) for TensorRT 10') in _problems(r)


def test_opset_range_and_swish_differ_between_10_and_11(tmp_path):
    m = _model([helper.make_node('Swish', ['x'], ['y'])], [_vi('x')], [_vi('y')], opset=24)
    path = _save(m, tmp_path)
    r10, r11 = check_onnx_for_tensorrt(path, 10), check_onnx_for_tensorrt(path, 11)
    assert any('outside' in p for _, p in _problems(r10)) and ('Swish', 'not in the TensorRT 10 ONNX parser operator '
                                                               'table') in _problems(r10)
    assert r11.passed, r11.errors
    old = _save(_model([helper.make_node('Relu', ['x'], ['y'])], [_vi('x')], [_vi('y')], opset=8), tmp_path, 'o.onnx')
    assert any('opset 8 is outside' in p for _, p in _problems(check_onnx_for_tensorrt(old, 11)))
    with pytest.raises(DeployError, match='trt_major'):
        check_onnx_for_tensorrt(path, 9)


def test_initializer_rule_pooling_rules(tmp_path):
    # Slice with computed axes (graph input) violates "`axes` must be an initializer"; constant axes pass
    starts = numpy_helper.from_array(np.array([0], np.int64), 'starts')
    ends = numpy_helper.from_array(np.array([2], np.int64), 'ends')
    axes_c = numpy_helper.from_array(np.array([1], np.int64), 'axes_c')
    bad = _model([helper.make_node('Slice', ['x', 'starts', 'ends', 'axes_in'], ['y'])],
                 [_vi('x'), _vi('axes_in', TensorProto.INT64, (1,))], [_vi('y')], inits=[starts, ends])
    good = _model([helper.make_node('Slice', ['x', 'starts', 'ends', 'axes_c'], ['y'])],
                  [_vi('x')], [_vi('y')], inits=[starts, ends, axes_c])
    r = check_onnx_for_tensorrt(_save(bad, tmp_path, 'bad.onnx'), 10)
    assert any(op == 'Slice' and '`axes`' in p for op, p in _problems(r))
    r = check_onnx_for_tensorrt(_save(good, tmp_path, 'good.onnx'), 10)
    assert r.passed and r.checked_restrictions['Slice'] == '`axes` constant'
    # MaxPool: dilations, the Indices output, 1-D pooling
    pool = _model([helper.make_node('MaxPool', ['x'], ['y', 'idx'], kernel_shape=[2, 2], dilations=[2, 2])],
                  [_vi('x')], [_vi('y'), _vi('idx', TensorProto.INT64)])
    probs = [p for op, p in _problems(check_onnx_for_tensorrt(_save(pool, tmp_path, 'p.onnx'), 10)) if op == 'MaxPool']
    assert any('dilations' in p for p in probs) and any('Indices' in p for p in probs)
    pool1d = _model([helper.make_node('MaxPool', ['x'], ['y'], kernel_shape=[2])],
                    [_vi('x', shape=('N', 3, 8))], [_vi('y', shape=('N', 3, 7))])
    assert any('1D pooling' in p for _, p in _problems(check_onnx_for_tensorrt(_save(pool1d, tmp_path, 'p1.onnx'), 10)))
    ok = _model([helper.make_node('MaxPool', ['x'], ['y'], kernel_shape=[2, 2])], [_vi('x')], [_vi('y')])
    assert check_onnx_for_tensorrt(_save(ok, tmp_path, 'ok.onnx'), 10).passed


def _qdq(tmp_path, zp_type, zp_value, name):
    scale = numpy_helper.from_array(np.array(0.05, np.float32), 'scale')
    zp = numpy_helper.from_array(np.array(zp_value, dtype=np.uint8 if zp_type == 'u8' else np.int8), 'zp')
    m = _model([helper.make_node('QuantizeLinear', ['x', 'scale', 'zp'], ['q']),
                helper.make_node('DequantizeLinear', ['q', 'scale', 'zp'], ['d']),
                helper.make_node('Relu', ['d'], ['y'])], [_vi('x')], [_vi('y')], inits=[scale, zp])
    return check_onnx_for_tensorrt(_save(m, tmp_path, name), 10)


def test_qdq_must_be_symmetric_signed_int8(tmp_path):
    assert _qdq(tmp_path, 's8', 0, 's8.onnx').passed
    r = _qdq(tmp_path, 's8', 3, 's8zp.onnx')
    assert {op for op, p in _problems(r) if 'must be zero' in p} == {'QuantizeLinear', 'DequantizeLinear'}
    r = _qdq(tmp_path, 'u8', 128, 'u8.onnx')
    assert any('UINT8 quantized type' in p for _, p in _problems(r))


def test_quantize_int8_export_is_flagged_for_tensorrt(tmp_path, capsys):
    """``quantize`` writes ONNX Runtime's U8S8 QDQ (asymmetric uint8 activations): the TensorRT parser requires
    zero points of 0 and signed INT8, so the check must refuse it, naming the fix."""
    pytest.importorskip('onnxruntime')
    from timm_recal_deploy.export import export_onnx
    from timm_recal_deploy.quantize import quantize_int8
    fp32 = export_onnx('cnn3', str(tmp_path / 'cnn3.onnx'), exporter='legacy')['output']
    assert check_onnx_for_tensorrt(fp32, 10).passed
    q = quantize_int8(fp32, str(tmp_path / 'cnn3_int8.onnx'), None, calib_images=8, batch_size=8, progress=False)
    r = check_onnx_for_tensorrt(q['output'], 11)
    assert not r.passed
    assert any('UINT8 quantized type' in e['problem'] for e in r.errors)
    assert any('must be zero' in e['problem'] for e in r.errors)
    assert any(e['node'].startswith('(and ') for e in r.errors)  # long lists are summarized
    info = tensorrt_info(q['output'])
    assert info['tensorrt10']['passed'] is False and info['tensorrt11']['errors'] and info['cannot_check']
    assert tensorrt_info(fp32)['tensorrt10'] == {'passed': True, 'opset': 18, 'errors': [], 'warnings': [],
                                                 'unchecked_restrictions': {}}
    from timm_recal.cli import main  # `timm-recal info` carries the check, as text and --json
    assert main(['info', q['output'], '--json']) == 0
    info_json = json.loads(capsys.readouterr().out)['tensorrt']
    assert info_json['tensorrt10']['passed'] is False and info_json['tensorrt11']['errors']
    assert info_json['cannot_check'] == info['cannot_check']
    assert main(['info', q['output']]) == 0
    text = capsys.readouterr().out
    assert 'TensorRT 10: FAILS' in text and 'TensorRT 11: FAILS' in text and 'UINT8 quantized type' in text
    assert 'cannot know without TensorRT' in text
    assert main(['info', fp32]) == 0
    text = capsys.readouterr().out
    assert 'TensorRT 10: passes' in text and 'TensorRT 11: passes' in text


def covering_models():
    """Few exports that still cover every gate prefix and every family of ``ci_models()`` (the ops of a gated
    model are its family's ops plus its gate's): per gate the cheapest model, preferring a family not yet
    covered; then any family still missing."""
    cost = {'cnn': 0, 'resnet_cifar': 1, 'shufflenetv2_cifar': 2, 'wrn_cifar': 3, 'resnet': 4, 'shufflenetv2': 5}
    models = sorted(ci_models(), key=lambda n: (cost.get(family_of(n), 9), n))
    chosen, families = [], set()
    for gate in sorted({gate_of(n) for n in models}):
        options = [n for n in models if gate_of(n) == gate]
        pick = next((n for n in options if family_of(n) not in families), options[0])
        chosen.append(pick)
        families.add(family_of(pick))
    for name in models:
        if family_of(name) not in families:
            chosen.append(name)
            families.add(family_of(name))
    return sorted(chosen)


def _export_and_check(name, tmp_path, exporter):
    if exporter == 'dynamo':
        pytest.importorskip('onnxscript')
    from timm_recal_deploy.export import export_onnx
    size = ci_img_size(name)
    try:
        path = export_onnx(name, str(tmp_path / f'{name}.onnx'), img_size=size, exporter=exporter)['output']
    except DeployError as e:  # e.g. adaptive pooling to a size the legacy exporter cannot express
        if exporter != 'legacy' or 'legacy exporter failed' not in str(e):
            raise
        path = export_onnx(name, str(tmp_path / f'{name}.onnx'), img_size=size)['output']
    for major in (10, 11):
        r = check_onnx_for_tensorrt(path, major)
        assert r.passed, f'{name} TensorRT {major}:\n{r.summary()}'
        assert r.opset == 18 and sum(r.op_counts.values()) > 0


@pytest.mark.parametrize('name', covering_models())
def test_exports_pass_the_static_check(name, tmp_path):
    """Exports (32 px for CIFAR-sized models, 64 px otherwise) covering every gate and every family, with the
    legacy exporter (3x faster here, and its graphs have more op types: Shape/Gather/Slice arithmetic) where it
    can export the model, else the default one; the default exporter is covered below and in ``slow``."""
    _export_and_check(name, tmp_path, 'legacy')


def test_default_exporter_passes_the_static_check(tmp_path):
    _export_and_check('se_shufflenetv2_x0_5_cifar', tmp_path, 'dynamo')


@pytest.mark.slow
@pytest.mark.parametrize('name', __import__('timm_recal.registry', fromlist=['x']).recal_models())
def test_full_registry_passes_the_static_check(name, tmp_path):
    """Every registered model with the default exporter."""
    _export_and_check(name, tmp_path, 'dynamo')
