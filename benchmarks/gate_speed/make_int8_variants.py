"""INT8 variants for the gate-speed table (bundled samples for calibration: speed only)."""
import os, sys, contextlib, onnx
os.chdir(os.environ.get('GATE_SPEED_DIR', '/work/exp-openvino/m'))
from timm_recal_deploy.openvino_runtime import quantize_nncf
from timm_recal_deploy.quantize import quantize_int8
from timm_recal_deploy.gate_fusion import find_gates, apply_gate_fusion
import onnxruntime.quantization as oq
def gate_nodes(path):
    m = onnx.load(path, load_external_data=False)
    prod = {o: n for n in m.graph.node for o in n.output}
    names = []
    for g in find_gates(m):
        names.append(g['mul'].name)
        todo = [g['gate']]
        while todo:  # walk back through the gate branch up to the pool
            n = prod.get(todo.pop())
            if n is None or n.name in names: continue
            names.append(n.name)
            if n.op_type not in ('ReduceMean', 'GlobalAveragePool'):
                todo += [i for i in n.input if i in prod]
    return names
which = sys.argv[1:]
for n in ['seresnet50', 'ab_resnet50']:
    if 'es' in which: apply_gate_fusion(n + '.onnx', n + '_es.onnx', ['early_squeeze'], force=True)
for n in ['resnet50', 'seresnet50', 'ab_resnet50', 'seresnet50_es', 'ab_resnet50_es']:
    if 'nncf' in which:
        quantize_nncf(n + '.onnx', None, n + '_nncf.xml', num_images=12, force=True); print('nncf', n, flush=True)
    if n.endswith('_es') and 'qdq' in which:
        quantize_int8(n + '.onnx', n + '_int8.onnx', None, calib_images=12, batch_size=12, force=True, progress=False); print('qdq', n, flush=True)
for n in (['seresnet50_es', 'ab_resnet50_es'] if 'esgf' in which else ['seresnet50', 'ab_resnet50']):
    if 'gf' in which:
        # our QDQ recipe with the gate branch (pool .. sigmoid, multiply) left in float
        excl = gate_nodes(n + '.onnx')
        from timm_recal_deploy import quantize as q
        reader_loader = None
        from timm_recal_deploy.images import make_loader
        from timm_recal_deploy.metadata import read_metadata
        from timm_recal_deploy.sources import onnx_data_config
        cfg = onnx_data_config(read_metadata(n + '.onnx'), n + '.onnx')
        loader = make_loader(None, cfg, 12, limit=12)
        r = q._ImageReader(loader, 'input', progress=False)
        oq.quant_pre_process(n + '.onnx', '/tmp/ovpre.onnx')
        oq.quantize_static('/tmp/ovpre.onnx', n.replace('_es', '') + ('_esgf' if n.endswith('_es') else '_gf') + '_int8.onnx', r, quant_format=oq.QuantFormat.QDQ, per_channel=True,
                           activation_type=oq.QuantType.QUInt8, weight_type=oq.QuantType.QInt8, nodes_to_exclude=excl,
                           extra_options={'ActivationSymmetric': False, 'WeightSymmetric': True, 'CalibMovingAverage': True})
        print('gf', n, len(excl), flush=True)
    if 'nncfgf' in which:
        # NNCF with the gate multiply ignored (types would hit every Multiply; names of the OV nodes are the ONNX ones)
        import openvino as ov
        m = ov.Core().read_model(n + '.onnx')
        muls = [op.get_friendly_name() for op in m.get_ops() if op.get_type_name() == 'Multiply']
        quantize_nncf(n + '.onnx', None, n + '_nncfgf.xml', num_images=12, force=True, ignored_scope={'names': muls})
        print('nncfgf', n, len(muls), flush=True)
