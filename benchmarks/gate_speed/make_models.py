"""Random-weight (randomized BN) exports + QDQ INT8 of the 224px ResNet trio, for gate-speed experiments."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'tests'))
import timm, timm_recal, torch
from deploy_helpers import randomize_weights_, sample_batch
from timm_recal_deploy.export import export_onnx
from timm_recal_deploy.quantize import quantize_int8
D = os.environ.get('GATE_SPEED_DIR', '/work/exp-openvino/m/')
os.makedirs(D, exist_ok=True)
for name in sys.argv[1:]:
    size = 32 if 'cifar' in name else 224
    m = randomize_weights_(timm.create_model(name), sample_batch(name, size))
    torch.save(m.state_dict(), os.path.join(D, name) + '.pth')
    export_onnx(name, os.path.join(D, name) + '.onnx', model=m, force=True)
    quantize_int8(os.path.join(D, name) + '.onnx', os.path.join(D, name) + '_int8.onnx', None, calib_images=12, batch_size=12, force=True, progress=False)
    print('done', name, flush=True)
