"""Does onnxruntime.quantization.qdq_loss_debug serve for the sensitivity ranking? Rank the computing nodes of the
trained se_shufflenetv2_x0_5_cifar by (a) ours: logit error with each node quantized alone, (b) qdq_loss_debug:
SQNR of each node's output in the fully quantized model vs float; keep each top-48 in float; measure top-1
agreement with FP32 on 1000 CIFAR-10 test images.

Run from the repository root after `timm-recal export local-dir:weights/se_shufflenetv2_x0_5_cifar.cifar10 -o
/tmp/readme-cmds/m.onnx`; writes /tmp/qdqm/result.json (copied to qdq_loss_debug_vs_sensitivity.json)."""
import json, os, sys, time
import numpy as np
from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_static, quant_pre_process)
from onnxruntime.quantization import qdq_loss_debug as dbg
from timm_recal_deploy.quantize import quantize_int8, QuantizeOptions, RANKED_OPS, _ImageReader
from timm_recal_deploy.images import make_loader
from timm_recal_deploy.metadata import read_metadata, load_onnx, copy_metadata, set_metadata
from timm_recal_deploy.sources import onnx_data_config
from timm_recal_deploy.parity import parity
import onnx

D = '/tmp/qdqm'
FP32 = '/tmp/readme-cmds/m.onnx'
TRAIN, TEST = '../shared/data/cifar10/train', '../shared/data/cifar10/test'
SPEC = 'local-dir:weights/se_shufflenetv2_x0_5_cifar.cifar10'
K = 48
t0 = time.time()
if not os.path.exists(f'{D}/ours.onnx'):
    quantize_int8(FP32, f'{D}/ours.onnx', TRAIN, QuantizeOptions(calib_method='percentile', fp32_layers=K,
                                                                 calib_images=512, force=True))
print('ours done', time.time() - t0, flush=True)
ranking_ours = [n for n, _ in read_metadata(f'{D}/ours.onnx')['quantization']['sensitivity']]
meta = read_metadata(FP32)
cfg = onnx_data_config(meta, FP32)
loader = make_loader(TRAIN, cfg, 32, limit=512)
pre = f'{D}/pre.onnx'
quant_pre_process(FP32, pre, skip_symbolic_shape=False)
extra = {'ActivationSymmetric': False, 'WeightSymmetric': True, 'CalibMovingAverage': False}
def q(out, **nodes):
    quantize_static(pre, out, _ImageReader(loader, 'input', False), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.Percentile, extra_options=extra, **nodes)
q(f'{D}/full.onnx')
dbg.modify_model_output_intermediate_tensors(pre, f'{D}/pre_aug.onnx')
dbg.modify_model_output_intermediate_tensors(f'{D}/full.onnx', f'{D}/full_aug.onnx')
small = make_loader(TRAIN, cfg, 32, limit=128)
feeds = [{'input': x.numpy()} for x, _ in small]
fa = dbg.collect_activations(f'{D}/pre_aug.onnx', feeds)
qa = dbg.collect_activations(f'{D}/full_aug.onnx', feeds)
match = dbg.create_activation_matching(qa, fa)
err = dbg.compute_activation_error(match)
graph = onnx.load(pre).graph
out_of = {o: n for n in graph.node for o in n.output}
scores = []
for n in graph.node:
    if n.op_type in RANKED_OPS and n.output[0] in err:
        e = err[n.output[0]]
        scores.append((n.name, float(e.get('xmodel_err', e.get('qdq_err', np.inf)))))
scores.sort(key=lambda t: t[1])  # lowest SQNR = most error
ranking_dbg = [n for n, _ in scores]
print('ranked by qdq_loss_debug:', len(ranking_dbg), 'of', len(ranking_ours), flush=True)
q(f'{D}/dbg_raw.onnx', nodes_to_exclude=ranking_dbg[:K])
proto = onnx.load(f'{D}/dbg_raw.onnx')
src = load_onnx(FP32)
copy_metadata(src, proto)
set_metadata(proto, {'precision': 'int8', 'quantization': {'calib_data': os.path.abspath(TRAIN)}})
onnx.save(proto, f'{D}/dbg.onnx')
res = {'top48_overlap': len(set(ranking_ours[:K]) & set(ranking_dbg[:K])), 'n_ours': len(ranking_ours),
       'n_dbg': len(ranking_dbg)}
for name in ('ours', 'dbg'):
    r = parity(SPEC, onnx_path=f'{D}/{name}.onnx', data=TEST, limit=1000, threads=1)
    res[name] = {'top1_agreement': r.top1_agreement, 'mean_rel_err': r.mean_rel_err}
    print(name, res[name], flush=True)
res['seconds'] = time.time() - t0
print(json.dumps(res, indent=1))
json.dump(res, open(f'{D}/result.json', 'w'), indent=1)
