"""The runtime table and the Runner shape (ORT and eager runners), the one source resolver, ``info``,
``report`` and the command line's one vocabulary (``--runtimes``, deprecated aliases)."""
import json
import os
import sys

import numpy as np
import pytest

pytest.importorskip('onnxruntime')

import timm  # noqa: E402
import timm_recal  # noqa: E402,F401
from timm_recal.cli import main  # noqa: E402
from timm_recal_deploy.errors import DeployError  # noqa: E402
from timm_recal_deploy.export import export_onnx  # noqa: E402
from timm_recal_deploy.runtimes import RUNTIMES, open_runtime, parse_runtimes  # noqa: E402
from timm_recal_deploy.sources import open_source  # noqa: E402

from deploy_helpers import assert_runner_contract, cifar_samples, randomize_weights_, sample_batch  # noqa: E402

NAME = 'cnn3'


@pytest.fixture(scope='module')
def cnn3(tmp_path_factory):
    model = randomize_weights_(timm.create_model(NAME), sample_batch(NAME, 32))
    path = export_onnx(NAME, str(tmp_path_factory.mktemp('rt') / 'cnn3.onnx'), model=model,
                       exporter='legacy').output
    return model, path


def test_the_table_has_every_word():
    assert set(RUNTIMES) >= {'eager', 'eager_cl', 'ort', 'ort_cuda', 'ort_trt', 'openvino', 'trt'}
    assert parse_runtimes('eager, ort,eager') == ['eager', 'ort']
    with pytest.raises(DeployError, match='unknown runtime'):
        parse_runtimes('ort,tensorflow')


@pytest.mark.parametrize('word', ['ort', 'eager', 'eager_cl'])
def test_runner_contract(cnn3, word):
    model, path = cnn3
    source = model if RUNTIMES[word].kind == 'model' else path
    runner = open_runtime(word, source, threads=1, input_size=(3, 32, 32))
    assert_runner_contract(runner, word)


def test_ort_and_eager_runners_agree(cnn3):
    model, path = cnn3
    x = sample_batch(NAME, 32, n=4).numpy()
    ort_out = open_runtime('ort', path, threads=1)(x)
    for word in ('eager', 'eager_cl'):
        np.testing.assert_allclose(open_runtime(word, model, input_size=(3, 32, 32))(x), ort_out, atol=1e-4,
                                   rtol=1e-3)


def test_missing_runtime_library_names_package_and_extra(cnn3, monkeypatch):
    _, path = cnn3
    monkeypatch.setitem(sys.modules, 'timm_recal_deploy.openvino_runtime', None)
    with pytest.raises(DeployError, match=r"pip install 'timm-recal\[openvino\]'"):
        open_runtime('openvino', path)


def test_ort_runner_refuses_another_precision(cnn3):
    _, path = cnn3
    with pytest.raises(DeployError, match='is fp32, not int8'):
        open_runtime('ort', path, precision='int8')


def test_one_source_resolver(cnn3):
    model, path = cnn3
    src = open_source(path)
    assert src.kind == 'onnx' and src.model is None and src.data_config['input_size'] == (3, 32, 32)
    assert src.info['architecture'] == NAME and len(src.data_config['class_labels']) == 10
    built = open_source(NAME, module=model)
    assert built.kind == 'model' and built.info['weights'] == 'module'
    with pytest.raises(DeployError, match='in-memory'):  # exported from a module: no reference to rebuild
        open_source(path, need_model=True)


def test_pairing_of_model_and_other_onnx_is_refused(cnn3, capsys):
    _, path = cnn3
    rc = main(['bench', 'se_cnn3', '--onnx', path, '--runtimes', 'ort', '--batch', '1', '--repeats', '1',
               '--min-time', '0', '--warmup', '0'])
    err = capsys.readouterr().err
    assert rc == 2 and 'was not made from this model' in err and 'se_cnn3' in err and 'cnn3' in err


def test_info_text_and_json(cnn3, capsys):
    _, path = cnn3
    assert main(['info', path]) == 0
    text = capsys.readouterr().out
    assert 'precision fp32' in text and 'input  input: float' in text and 'Conv 3' in text
    assert 'architecture: cnn3' in text
    assert main(['info', path, '--json']) == 0
    info = json.loads(capsys.readouterr().out)
    assert info['op_counts']['Conv'] == 3 and info['opsets']['ai.onnx'] == 18
    assert info['inputs'][0]['shape'][1:] == [3, 32, 32] and info['file_bytes'] == os.path.getsize(path)
    assert info['metadata']['exporter'] == 'legacy' and info['precision'] == 'fp32'
    assert main(['info', path + '.missing']) == 2


def test_runtimes_option_everywhere_and_deprecated_aliases(cnn3, capsys, tmp_path):
    _, path = cnn3
    rc = main(['validate', path, '--data', cifar_samples(), '--runtimes', 'ort', '--json'])
    assert rc == 0 and json.loads(capsys.readouterr().out)['runtime']['runtime'] == 'ort'
    rc = main(['validate', path, '--data', cifar_samples(), '--providers', 'CPUExecutionProvider', '--json'])
    out, err = capsys.readouterr()
    assert rc == 0 and '--providers is deprecated' in err and json.loads(out)['runtime']['runtime'] == 'ort'
    assert main(['validate', path, '--data', cifar_samples(), '--runtimes', 'bogus']) == 2
    assert 'unknown runtime' in capsys.readouterr().err
    assert main(['validate', path, '--data', cifar_samples(), '--runtimes', 'eager']) == 2  # a model runtime, a file
    assert 'runs a MODEL' in capsys.readouterr().err
    rc = main(['quantize', path, '-o', str(tmp_path / 'q.onnx'), '--data', cifar_samples(), '--calib-images', '8'])
    assert rc == 0 and '--data is deprecated; use --calib-data' in capsys.readouterr().err


def test_report_verb(tmp_path, capsys):
    from timm_recal_deploy.timing import compute_ratios
    results = [dict(role='target', model='x', runtime=rt, precision='fp32', batch=1, images_per_s=v,
                    latency_ms={'p50': 1.0, 'p90': 1.0, 'p99': 1.0}, iterations=3)
               for rt, v in (('eager', 5.0), ('ort', 10.0))]
    rec = {'kind': 'timm-recal-bench', 'models': {'target': {'name': 'x', 'input_size': [3, 32, 32]}},
           'settings': {'batches': [1], 'warmup': 1, 'repeats': 1, 'min_time_s': 0.1, 'device': 'cpu'},  # whole
           'results': results, 'ratios': compute_ratios(results)}
    path = tmp_path / 'b.json'
    path.write_text(json.dumps(rec))
    assert main(['report', 'table', str(path)]) == 0
    assert '| x | 32x32 | 1 | 5.00 (NCHW) | 10.00 | - | 2.00x | - |' in capsys.readouterr().out
    assert main(['report', 'details', str(path), '--runtime', 'ort']) == 0
    out, err = capsys.readouterr()
    assert '### Latency per batch (ms)' in out and '--runtime is deprecated' in err
    assert main(['report', 'table', str(tmp_path / 'nope.json')]) == 2


def test_parse_time_validation(capsys):
    for argv in (['parity', 'x.onnx', '--atol', '-1'], ['bench', 'cnn3', '--repeats', '0'],
                 ['bench', 'cnn3', '--min-time', '-1'], ['validate', 'x.onnx', '--data', '.', '--batch-size', '0']):
        assert main(argv) == 2, argv
        assert 'must be' in capsys.readouterr().err
