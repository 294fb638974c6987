"""Triton model repositories: every config.pbtxt parses into Triton's own ``ModelConfig`` and matches the
artifact's I/O, the folder is written whole (and replaced only with force), the TensorRT flavour is described by
the engine sidecar, and the client example's preprocessing equals the model's own (timm's eval transform)."""
import json
import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import numpy as np  # noqa: E402
import pytest  # noqa: E402

onnx = pytest.importorskip('onnx')
pytest.importorskip('tritonclient.grpc.model_config_pb2', reason='needs tritonclient[grpc] (the [test] extra)')
from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402

import timm_recal  # noqa: E402,F401
from timm_recal_deploy import tensorrt_build as tb  # noqa: E402
from timm_recal_deploy.errors import DeployError  # noqa: E402
from timm_recal_deploy.images import CIFAR10_CLASSES  # noqa: E402
from timm_recal_deploy.triton import (artifact_io, triton_client_example, triton_config_text,  # noqa: E402
                                      validate_triton_config, write_triton_repository)


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    from timm_recal_deploy.export import export_onnx
    out = tmp_path_factory.mktemp('triton') / 'se_cnn3.onnx'
    return export_onnx('se_cnn3', str(out), exporter='legacy')['output']


def _parse(path) -> 'model_config_pb2.ModelConfig':
    cfg = model_config_pb2.ModelConfig()
    with open(path) as f:
        text_format.Parse(f.read(), cfg)
    return cfg


@pytest.mark.parametrize('backend,kind', [('onnxruntime', 'KIND_CPU'), ('openvino', 'KIND_CPU')])
def test_onnx_repository_parses_and_matches_the_model(exported, tmp_path, backend, kind):
    repo = tmp_path / 'repo'
    r = write_triton_repository(exported, str(repo), backend=backend, max_batch_size=32,
                                preferred_batch_sizes=(8, 16), max_queue_delay_us=500, instance_count=2)
    assert r['validated_with_model_config_pb2'] and r['model_name'] == 'se_cnn3'
    assert sorted(os.listdir(repo)) == ['se_cnn3']
    assert sorted(os.listdir(repo / 'se_cnn3')) == ['1', 'config.pbtxt', 'labels.txt']
    assert os.listdir(repo / 'se_cnn3' / '1') == ['model.onnx']
    assert open(repo / 'se_cnn3' / '1' / 'model.onnx', 'rb').read() == open(exported, 'rb').read()
    cfg = _parse(repo / 'se_cnn3' / 'config.pbtxt')
    io = artifact_io(exported)
    assert cfg.name == 'se_cnn3' and cfg.backend == backend and cfg.max_batch_size == 32
    assert [(i.name, list(i.dims), model_config_pb2.DataType.Name(i.data_type)) for i in cfg.input] == \
        [(t['name'], t['shape'][1:], 'TYPE_FP32') for t in io['inputs']] == [('input', [3, 32, 32], 'TYPE_FP32')]
    assert [(o.name, list(o.dims), o.label_filename) for o in cfg.output] == [('logits', [10], 'labels.txt')]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [8, 16]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    assert [(g.count, model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind)) for g in cfg.instance_group] == [(2, kind)]
    assert cfg.default_model_filename == ('model.onnx' if backend == 'openvino' else '')
    labels = (repo / 'se_cnn3' / 'labels.txt').read_text().splitlines()
    assert labels == list(CIFAR10_CLASSES)


def test_repository_is_replaced_only_with_force(exported, tmp_path):
    repo = tmp_path / 'repo'
    write_triton_repository(exported, str(repo), name='first')
    with pytest.raises(DeployError, match='--force'):
        write_triton_repository(exported, str(repo), name='second')
    assert sorted(os.listdir(repo)) == ['first']
    write_triton_repository(exported, str(repo), name='second', force=True)
    assert sorted(os.listdir(repo)) == ['second']  # nothing of the previous run survives
    assert sorted(os.listdir(tmp_path)) == ['repo']  # no temporary folders left


def test_bad_arguments_write_nothing(exported, tmp_path):
    repo = tmp_path / 'repo'
    with pytest.raises(DeployError, match='backend must be one of'):
        write_triton_repository(exported, str(repo), backend='tensorflow')
    with pytest.raises(DeployError, match='serves an AOTInductor package'):
        write_triton_repository(exported, str(repo), backend='pytorch')
    with pytest.raises(DeployError, match='build one first'):
        write_triton_repository(exported, str(repo), backend='tensorrt')
    with pytest.raises(DeployError, match='preferred batch sizes'):
        write_triton_repository(exported, str(repo), max_batch_size=8, preferred_batch_sizes=(16,))
    with pytest.raises(DeployError, match='model file not found'):
        write_triton_repository(str(tmp_path / 'missing.onnx'), str(repo))
    assert not repo.exists()


def test_fixed_batch_model_needs_max_batch_size_zero(tmp_path):
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [4, 3, 8, 8])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [4, 3, 8, 8])
    m = helper.make_model(helper.make_graph([helper.make_node('Relu', ['x'], ['y'])], 'g', [x], [y]),
                          opset_imports=[helper.make_opsetid('', 18)])
    path = str(tmp_path / 'fixed.onnx')
    onnx.save(m, path)
    with pytest.raises(DeployError, match='fixed first axis'):
        write_triton_repository(path, str(tmp_path / 'r'))
    r = write_triton_repository(path, str(tmp_path / 'r'), max_batch_size=0)
    cfg = _parse(r['config'])
    assert cfg.max_batch_size == 0 and list(cfg.input[0].dims) == [4, 3, 8, 8] and not cfg.HasField('dynamic_batching')
    assert r['labels'] is None and cfg.output[0].label_filename == ''


def test_validation_catches_a_config_that_does_not_match(exported):
    io = artifact_io(exported)
    text = triton_config_text('m', 'onnxruntime', io, max_batch_size=8)
    validate_triton_config(text, io, 'onnxruntime', 8)
    with pytest.raises(DeployError, match='dims'):
        validate_triton_config(text.replace('dims: [ 3, 32, 32 ]', 'dims: [ 3, 64, 64 ]'), io, 'onnxruntime', 8)
    with pytest.raises(DeployError, match='KIND_GPU'):
        validate_triton_config(text, io, 'tensorrt', 8)
    with pytest.raises(DeployError, match='does not parse'):
        validate_triton_config(text.replace('max_batch_size: 8', 'max_batch: 8'), io, 'onnxruntime', 8)


def test_tensorrt_repository_from_a_plan_and_its_sidecar(exported, tmp_path):
    """The plan's I/O comes from its sidecar (hand-made here: no TensorRT on CI); the sidecar travels along."""
    plan = tmp_path / 'se_cnn3.plan'
    plan.write_bytes(b'not a real engine')
    io = artifact_io(exported)
    side = {'format': tb.SIDECAR_FORMAT, 'tensorrt_version': '10.13.0', 'precision': 'fp16',
            'gpu': {'name': 'NVIDIA L4', 'compute_capability': '8.9'},
            'inputs': io['inputs'], 'outputs': io['outputs'],
            'profile': {'input': 'input', 'min': [1, 3, 32, 32], 'opt': [8, 3, 32, 32], 'max': [16, 3, 32, 32]},
            'metadata': {k: io['metadata'][k] for k in ('architecture', 'class_labels', 'input_size', 'mean', 'std')}}
    (tmp_path / 'se_cnn3.plan.json').write_text(json.dumps(side))
    with pytest.raises(DeployError, match='exceeds the engine profile max batch 16'):
        write_triton_repository(str(plan), str(tmp_path / 'r'), backend='tensorrt', max_batch_size=32)
    with pytest.raises(DeployError, match='a TensorRT engine \\(.plan\\) is served by --backend tensorrt'):
        write_triton_repository(str(plan), str(tmp_path / 'r'), backend='onnxruntime')
    r = write_triton_repository(str(plan), str(tmp_path / 'r'), backend='tensorrt', max_batch_size=16,
                                preferred_batch_sizes=(4, 16))
    model = tmp_path / 'r' / 'se_cnn3'
    assert sorted(os.listdir(model / '1')) == ['model.plan', 'model.plan.json']
    assert (model / '1' / 'model.plan').read_bytes() == b'not a real engine'
    cfg = _parse(model / 'config.pbtxt')
    assert cfg.backend == 'tensorrt' and cfg.max_batch_size == 16
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(cfg.instance_group[0].kind) == 'KIND_GPU'
    assert [list(i.dims) for i in cfg.input] == [[3, 32, 32]] and cfg.output[0].label_filename == 'labels.txt'
    assert (model / 'labels.txt').read_text().splitlines() == list(CIFAR10_CLASSES)
    assert r['runtime'] == 'trt'


def test_wrong_label_count_is_refused(exported, tmp_path, monkeypatch):
    import timm_recal_deploy.triton as triton
    real = triton._onnx_io

    def fewer_labels(path):
        io = real(path)
        io['metadata']['class_labels'] = io['metadata']['class_labels'][:3]
        return io

    monkeypatch.setattr(triton, '_onnx_io', fewer_labels)
    with pytest.raises(DeployError, match='10 outputs but 3 class labels'):
        write_triton_repository(exported, str(tmp_path / 'r'))


@pytest.mark.parametrize('name,size,folder', [('se_cnn3', None, 'cifar10_samples'),
                                              ('resnet18', 224, 'imagenet_samples')])
def test_client_example_preprocessing_equals_the_models(name, size, folder):
    """The example runs with PIL and numpy only; its ``preprocess`` must give the tensor timm's eval transform
    gives (resize with the model's interpolation and crop_pct, center crop, normalize)."""
    import timm
    import torch
    from importlib import resources
    from PIL import Image
    from timm_recal_deploy.images import make_transform
    from timm_recal_deploy.model_io import data_config_of
    with torch.device('meta'):
        cfg = data_config_of(timm.create_model(name), size)
    meta = {'input_size': list(cfg['input_size']), 'mean': list(cfg['mean']), 'std': list(cfg['std']),
            'crop_pct': cfg['crop_pct'], 'interpolation': cfg['interpolation'], 'input_name': 'input',
            'output_name': 'logits'}
    code = triton_client_example(name, meta)
    ns = {'__name__': 'example'}
    exec(compile(code, 'client_example.py', 'exec'), ns)  # also proves it imports tritonclient.grpc
    root = os.fspath(resources.files('timm_recal.assets').joinpath(folder))
    images = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith('.jpg'))[:3]
    transform = make_transform(cfg)
    for path in images:
        ours = ns['preprocess'](path)
        ref = transform(Image.open(path).convert('RGB')).numpy()[None]
        assert ours.shape == ref.shape == (1, 3) + tuple(cfg['input_size'][-2:])
        np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert "class_count=5" in code and f"client.infer({name!r}" in code


def test_triton_verb(exported, tmp_path, capsys):
    from timm_recal.cli import main
    assert main(['triton', exported, '--client-example']) == 0
    code = capsys.readouterr().out
    compile(code, 'example', 'exec')
    assert "client.infer('se_cnn3'" in code and not os.listdir(tmp_path)
    repo = tmp_path / 'repo'
    assert main(['triton', exported, '-o', str(repo), '--backend', 'openvino', '--preferred-batch-sizes', '4,8',
                 '--instances', '3']) == 0
    cfg = _parse(repo / 'se_cnn3' / 'config.pbtxt')
    assert cfg.backend == 'openvino' and list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.instance_group[0].count == 3
    assert main(['triton', exported, '-o', str(tmp_path / 'r2'), '--preferred-batch-sizes', 'a']) == 2
    assert 'positive integers' in capsys.readouterr().err and not (tmp_path / 'r2').exists()


def test_triton_verb_exports_a_model_spec_through_the_export_stage(tmp_path, capsys):
    """SOURCE a model spec: exported (export stage, legacy exporter for speed), then the repository is written
    and its config matches the exported file's I/O."""
    from timm_recal.cli import main
    repo = tmp_path / 'repo'
    assert main(['triton', 'cnn3', '-o', str(repo), '--exporter', 'legacy', '--json']) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary['model_name'] == 'cnn3' and summary['validated_with_model_config_pb2'] is True
    cfg = _parse(repo / 'cnn3' / 'config.pbtxt')
    assert cfg.backend == 'onnxruntime' and (repo / 'cnn3' / '1' / 'model.onnx').is_file()
    assert sorted(os.listdir(tmp_path)) == ['repo']  # the export happened in a temporary folder


def test_triton_tensorrt_backend_without_tensorrt_writes_nothing(exported, tmp_path, capsys, monkeypatch):
    """``--backend tensorrt`` from an ONNX file or a MODEL needs an engine: without TensorRT/GPU one line that says
    which is missing and how to install it, before any export."""
    from timm_recal.cli import main
    from timm_recal_deploy import tensorrt_build
    monkeypatch.setattr(tensorrt_build, 'import_tensorrt', lambda: (None, "ImportError: No module named 'tensorrt'"))
    monkeypatch.setattr(tensorrt_build, 'cuda_device', lambda index=0: None)
    for source in (exported, 'cnn3'):
        assert main(['triton', source, '-o', str(tmp_path / 'repo'), '--backend', 'tensorrt']) == 2
        err = capsys.readouterr().err
        assert 'TensorRT is not installed' in err and 'timm-recal[tensorrt]' in err and 'no CUDA GPU' in err
        assert 'Traceback' not in err and 'exporting' not in err
        assert os.listdir(tmp_path) == []

def test_triton_refuses_options_that_do_not_apply(exported, tmp_path, capsys):
    """An option of a step that serving SOURCE with --backend does not take (a model's options for a file, an
    engine's for a file that is not built, batching for a backend that does not batch) was silently ignored,
    exit 0: now one line naming each, before anything is read, exported or written."""
    from timm_recal.cli import main
    repo = tmp_path / 'repo'
    pt2 = tmp_path / 'c.pt2'
    pt2.write_bytes(b'not read: the check comes first')
    cases = [
        ([exported, '--precision', 'int8', '--batch', '1,4,8', '--workspace', '100', '--tf32', '--timing-cache',
          '/nonexist/x', '--checkpoint', '/nonexist.pth', '--img-size', '64', '--num-classes', '5', '--device',
          'cuda'], '--checkpoint, --num-classes, --img-size, --device, --batch, --precision, --workspace, '
                   '--timing-cache, --tf32 do not apply: ' + exported + ' is served as it is'),
        ([str(pt2), '--backend', 'pytorch', '--max-batch-size', '8', '--preferred-batch-sizes', '2,4',
          '--queue-delay-us', '500'], '--max-batch-size, --preferred-batch-sizes, --queue-delay-us do not apply: '
                                      f'{pt2} is served as it is, and the pytorch backend does not batch'),
        (['cnn3', '--backend', 'pytorch', '--exporter', 'legacy'],
         '--exporter does not apply: cnn3 is compiled into the served package'),
        ([exported, '--verbose'], '--verbose does not apply'),
        ([exported, '--client-example', '--max-batch-size', '8'], '--max-batch-size does not apply with --client-example'),
    ]
    for argv, message in cases:
        assert main(['triton', *argv, '-o', str(repo)]) == 2, argv
        out, err = capsys.readouterr()
        assert message in err and len(err.strip().splitlines()) == 1 and 'exporting' not in err, err
        assert not out and not repo.exists()
    # what does apply still works: --max-batch-size 0 is what the non-batching row writes anyway
    assert main(['triton', exported, '-o', str(repo), '--max-batch-size', '0']) == 0
    assert _parse(repo / 'se_cnn3' / 'config.pbtxt').max_batch_size == 0


def test_triton_checks_batching_before_the_export(tmp_path, capsys, monkeypatch):
    """A preferred batch size outside 1..max_batch_size was found after the MODEL's export."""
    from timm_recal.cli import main
    from timm_recal_deploy import triton
    monkeypatch.setattr(triton, 'export_onnx', lambda *a, **k: pytest.fail('exported before the options were checked'))
    for extra, message in ((['--preferred-batch-sizes', '128'], 'preferred batch sizes [128] must lie in 1..'
                                                                 'max_batch_size (64)'),
                           (['--max-batch-size', '0', '--preferred-batch-sizes', '4,8'], 'need batching')):
        assert main(['triton', 'cnn3', '-o', str(tmp_path / 'repo'), *extra]) == 2
        assert message in capsys.readouterr().err
    assert not os.listdir(tmp_path)


def test_triton_names_a_damaged_file(exported, tmp_path, capsys):
    """Damaged metadata was reported as 'the ONNX model: damaged metadata', naming no file."""
    from timm_recal.cli import main
    model = onnx.load(exported)
    for p in model.metadata_props:
        if p.key == 'input_size':
            p.value = p.value[:4]
    damaged = str(tmp_path / 'damaged.onnx')
    onnx.save(model, damaged)
    assert main(['triton', damaged, '-o', str(tmp_path / 'repo')]) == 2
    err = capsys.readouterr().err
    assert f'{damaged}: damaged metadata' in err and 'input_size' in err and not (tmp_path / 'repo').exists()


#: ``timm-recal ARGV`` under a file-size limit (EFBIG, as a full disk): one line per run on stderr
_LIMITED = r'''
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from timm_recal.cli import main
sys.exit(main(sys.argv[2:]))
'''


@pytest.mark.parametrize('source', ['file', 'cnn3'])
def test_triton_write_error_names_the_output_not_the_source_or_a_temporary_file(exported, tmp_path, source):
    """Copying the source into the repository past a size limit said 'cannot write SOURCE' (the file only read;
    ``shutil`` names it first), and a MODEL's export said 'cannot write /tmp/timm-recal-triton-XXXX/model.onnx'."""
    import subprocess
    import sys
    repo = tmp_path / 'out' / 'repo'
    src = exported if source == 'file' else source
    proc = subprocess.run([sys.executable, '-c', _LIMITED, str(100_000), 'triton', src, '-o', str(repo),
                           '--exporter', 'legacy'][:None if source != 'file' else -2],
                          capture_output=True, text=True, timeout=600)
    errors = [line for line in proc.stderr.splitlines() if line.startswith('timm-recal')]
    assert proc.returncode == 2 and len(errors) == 1 and 'Traceback' not in proc.stderr, proc.stderr
    assert errors[0].startswith(f'timm-recal triton: error: cannot write {repo}') and 'File too large' in errors[0]
    assert exported not in errors[0] and 'timm-recal-triton-' not in errors[0] and '.tmp' not in errors[0]
    assert not os.path.exists(tmp_path / 'out')  # nothing half-written, no parent left behind


def test_model_name_is_the_same_in_the_repository_and_the_client_example(exported, tmp_path, capsys):
    """``--name 'a/b c'`` was written as the folder 'a_b_c' while ``--client-example --name 'a/b c'`` requested
    'a/b c', a model the repository did not hold. A given name is now kept or refused in one line (before any
    export); a derived name is the same in both."""
    from timm_recal.cli import main
    repo = tmp_path / 'repo'
    for argv in (['-o', str(repo)], ['--client-example'], ['-o', str(repo), '--backend', 'openvino']):
        assert main(['triton', exported, '--name', 'a/b c', *argv]) == 2
        out, err = capsys.readouterr()
        assert "--name 'a/b c' is not a Triton model name" in err and len(err.strip().splitlines()) == 1, err
        assert not out and not repo.exists()
    with pytest.raises(DeployError, match="--name '.hidden' is not a Triton model name"):
        write_triton_repository(exported, str(repo), name='.hidden')
    assert main(['triton', exported, '-o', str(repo), '--name', 'se-cnn3_v1.2']) == 0
    assert os.listdir(repo) == ['se-cnn3_v1.2']
    assert _parse(repo / 'se-cnn3_v1.2' / 'config.pbtxt').name == 'se-cnn3_v1.2'
    assert main(['triton', exported, '--client-example', '--name', 'se-cnn3_v1.2']) == 0
    assert "client.infer('se-cnn3_v1.2'" in capsys.readouterr().out
    # no architecture in the metadata: both take the file's stem (the example asked for 'model')
    from timm_recal_deploy import triton
    bare = dict(artifact_io(exported)['metadata'], architecture=None)
    assert triton.triton_model_name(None, bare, '/x/my model.onnx') == 'my_model'
