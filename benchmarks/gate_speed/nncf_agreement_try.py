import numpy as np, os, sys
from timm_recal_deploy.export import export_onnx
from timm_recal_deploy.images import make_loader
from timm_recal_deploy.metadata import read_metadata
from timm_recal_deploy.openvino_runtime import open_openvino, quantize_nncf, top1_agreement
arch = sys.argv[1]; D = '/work/exp-openvino/nt/'; os.makedirs(D, exist_ok=True)
fp32 = D + arch + '.onnx'
if not os.path.exists(fp32):
    export_onnx(f'local-dir:/work/wt/openvino/weights/{arch}.cifar10', fp32)
test = '/work/wt/shared/data/cifar10/test'; train = '/work/wt/shared/data/cifar10/train'
images = np.concatenate([x.numpy() for x, _ in make_loader(test, read_metadata(fp32), 500, limit=3000)])
ref = open_openvino(fp32)(images)
for tag, kw in [('default', {}), ('mixed', {'preset': 'mixed'}), ('no_dw', {'ignored_scope': {'types': ['GroupConvolution']}}),
                ('no_dw_mixed', {'preset': 'mixed', 'ignored_scope': {'types': ['GroupConvolution']}})]:
    out = quantize_nncf(fp32, train, D + f'{arch}_{tag}.xml', num_images=300, force=True, **kw)
    r = open_openvino(out['output'], precision='int8')
    print(arch, tag, out['fake_quantize_nodes'], round(top1_agreement(r(images), ref), 4), flush=True)
