"""TensorRT engines: what runs everywhere (the missing-TensorRT/GPU error path, the 10-vs-11 precision rules, the
batch profile, the sidecar checks on hand-made sidecars, plan + sidecar written whole or not at all) and, where
TensorRT and a CUDA GPU exist, the real build, load, parity with ONNX Runtime and bench.

The only fake here is ``_RecordingTrt``, a stand-in module that records which network-creation and builder flags
the 10.x/11.x branches set; it tests that branching logic alone, never a build.
"""
import builtins
import json
import os
import re
import subprocess
import sys
import types

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip('onnx')

import timm_recal  # noqa: E402,F401
from timm_recal.outputs import OutputExistsError  # noqa: E402
from timm_recal_deploy import tensorrt_build as tb  # noqa: E402
from timm_recal_deploy.errors import DeployError  # noqa: E402

try:
    import tensorrt  # noqa: F401
    _TRT_WHY = None
except (ImportError, OSError) as e:
    _TRT_WHY = f'TensorRT not importable ({type(e).__name__}); install timm-recal[tensorrt] on a machine with a GPU'
_GPU = tb.cuda_device()
needs_trt_gpu = pytest.mark.skipif(_TRT_WHY is not None or _GPU is None,
                                   reason=_TRT_WHY or 'no CUDA GPU visible (torch.cuda.is_available() is False)')


@pytest.fixture(scope='module')
def cnn3_onnx(tmp_path_factory):
    from timm_recal_deploy.export import export_onnx
    out = tmp_path_factory.mktemp('trt') / 'cnn3.onnx'
    return export_onnx('cnn3', str(out), exporter='legacy')['output']


# --- missing TensorRT / GPU ------------------------------------------------------------------------------------
@pytest.fixture
def no_tensorrt_no_gpu(monkeypatch):
    """``import tensorrt`` fails (as without the package) and torch sees no GPU."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == 'tensorrt' or name.startswith('tensorrt.'):
            raise ImportError("No module named 'tensorrt'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, 'tensorrt', raising=False)
    monkeypatch.setattr(builtins, '__import__', fake_import)
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)


def test_missing_tensorrt_and_gpu_are_named_with_the_install_hint(no_tensorrt_no_gpu):
    with pytest.raises(DeployError) as e:
        tb.require_tensorrt()
    msg = str(e.value)
    assert 'TensorRT is not installed' in msg and "timm-recal[tensorrt]" in msg and 'no CUDA GPU' in msg
    assert '\n' not in msg  # one line for the command line


def test_missing_gpu_alone_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, 'tensorrt', types.SimpleNamespace(__version__='10.13.0'))
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)
    with pytest.raises(DeployError) as e:
        tb.require_tensorrt()
    assert 'no CUDA GPU' in str(e.value) and 'not installed' not in str(e.value)


def test_engine_and_runtime_write_nothing_without_tensorrt(no_tensorrt_no_gpu, cnn3_onnx, tmp_path):
    from timm_recal_deploy.tensorrt_runtime import open_tensorrt
    out = tmp_path / 'out'
    with pytest.raises(DeployError, match='TensorRT is not installed'):
        tb.build_engine(cnn3_onnx, str(out / 'm.plan'), timing_cache=str(out / 'cache.bin'))
    with pytest.raises(DeployError, match='TensorRT is not installed'):
        open_tensorrt(cnn3_onnx)
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == []


# --- the 10 vs 11 rules ----------------------------------------------------------------------------------------
@pytest.mark.parametrize('major', [10, 11])
@pytest.mark.parametrize('onnx_precision', ['fp32', 'fp16', 'int8'])
def test_precision_from_the_file_builds_strongly_typed_without_flags(major, onnx_precision):
    s = tb.build_settings(major, onnx_precision)
    assert s == {'precision': onnx_precision, 'strongly_typed': True, 'set_flags': [], 'clear_flags': ['TF32']}
    assert tb.build_settings(major, onnx_precision, onnx_precision, tf32=True)['clear_flags'] == []


def test_fp16_from_fp32_needs_the_10x_builder_flag_and_is_refused_on_11():
    s = tb.build_settings(10, 'fp32', 'fp16')
    assert s == {'precision': 'fp16', 'strongly_typed': False, 'set_flags': ['FP16'], 'clear_flags': ['TF32']}
    with pytest.raises(DeployError, match='TensorRT 11 has no FP16 builder flag.*--precision fp16'):
        tb.build_settings(11, 'fp32', 'fp16')


@pytest.mark.parametrize('major', [10, 11])
def test_int8_only_from_the_qdq_file(major):
    with pytest.raises(DeployError, match='QDQ ONNX that `timm-recal quantize` writes'):
        tb.build_settings(major, 'fp32', 'int8')
    with pytest.raises(DeployError, match='this ONNX file is int8'):
        tb.build_settings(major, 'int8', 'fp32')
    with pytest.raises(DeployError, match='precision must be one of'):
        tb.build_settings(major, 'fp32', 'bf16')


class _RecordingTrt:
    """FAKE tensorrt module for the branching/flags logic only: enums with the documented members of one major
    version (11.x has no BuilderFlag.FP16/INT8) and a builder that records the calls."""

    def __init__(self, major):
        names = ['TF32'] + (['FP16', 'INT8'] if major == 10 else [])
        self.BuilderFlag = types.SimpleNamespace(**{n: f'BuilderFlag.{n}' for n in names})
        self.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)  # enum value, as documented
        self.calls = []

    def builder(self):
        trt = self

        class Config:
            def set_flag(self, flag):
                trt.calls.append(('set_flag', flag))

            def clear_flag(self, flag):
                trt.calls.append(('clear_flag', flag))

        class Builder:
            def create_network(self, flags=0):
                trt.calls.append(('create_network', flags))
                return 'network'

            def create_builder_config(self):
                return Config()

        return Builder()


@pytest.mark.parametrize('major,onnx_precision,precision,expected', [
    (10, 'fp32', None, [('create_network', 1 << 1), ('clear_flag', 'BuilderFlag.TF32')]),
    (10, 'int8', None, [('create_network', 1 << 1), ('clear_flag', 'BuilderFlag.TF32')]),
    (10, 'fp32', 'fp16', [('create_network', 0), ('set_flag', 'BuilderFlag.FP16'), ('clear_flag', 'BuilderFlag.TF32')]),
    (11, 'fp32', None, [('create_network', 0), ('clear_flag', 'BuilderFlag.TF32')]),
    (11, 'fp16', None, [('create_network', 0), ('clear_flag', 'BuilderFlag.TF32')]),
    (11, 'int8', None, [('create_network', 0), ('clear_flag', 'BuilderFlag.TF32')]),
])
def test_branching_flags_with_recording_fake_tensorrt_module(major, onnx_precision, precision, expected):
    """FAKE module: which flags each branch passes (10.x: STRONGLY_TYPED by flag, FP16 builder flag; 11.x: no
    creation flag, never a precision flag, which its BuilderFlag does not have)."""
    trt = _RecordingTrt(major)
    settings = tb.build_settings(major, onnx_precision, precision)
    network, _ = tb.create_network_and_config(trt, trt.builder(), major, settings)
    assert network == 'network' and trt.calls == expected


def test_tensorrt_major_versions():
    assert tb.tensorrt_major(types.SimpleNamespace(__version__='10.13.3.9')) == 10
    assert tb.tensorrt_major(types.SimpleNamespace(__version__='11.5.0')) == 11
    with pytest.raises(DeployError, match='not supported'):
        tb.tensorrt_major(types.SimpleNamespace(__version__='8.6.1'))
    with pytest.raises(DeployError, match='cannot read'):
        tb.tensorrt_major(types.SimpleNamespace(__version__='dev'))


def test_batch_profile():
    assert tb.parse_batch_profile(None, None) == tb.DEFAULT_BATCH_PROFILE
    assert tb.parse_batch_profile(None, 4) == (4, 4, 4)
    assert tb.parse_batch_profile('1,8,32', None) == (1, 8, 32)
    assert tb.parse_batch_profile(8, None) == (8, 8, 8)
    assert tb.parse_batch_profile((2, 4, 8), None) == (2, 4, 8)
    for bad in ('8,4,16', '0', 'a,b', (1, 2)):
        with pytest.raises(DeployError, match='--batch'):
            tb.parse_batch_profile(bad, None)
    with pytest.raises(DeployError, match='fixed batch of 4'):
        tb.parse_batch_profile('1,8,16', 4)


# --- sidecar -----------------------------------------------------------------------------------------------------
GPU = {'index': 0, 'name': 'NVIDIA L4', 'compute_capability': '8.9'}


def _sidecar(**over):
    side = {'format': tb.SIDECAR_FORMAT, 'tensorrt_version': '10.13.0', 'gpu': dict(GPU), 'precision': 'fp32',
            'source_onnx': {'path': '/x/m.onnx', 'sha256': 'a' * 64}, 'plan_sha256': 'b' * 64,
            'inputs': [{'name': 'input', 'shape': [-1, 3, 32, 32], 'dtype': 'float32'}],
            'outputs': [{'name': 'logits', 'shape': [-1, 10], 'dtype': 'float32'}],
            'profile': {'input': 'input', 'min': [1, 3, 32, 32], 'opt': [16, 3, 32, 32], 'max': [64, 3, 32, 32]}}
    side.update(over)
    return side


def test_sidecar_match_passes_and_every_mismatch_is_named():
    tb.check_sidecar(_sidecar(), trt_version='10.13.0', gpu=GPU, onnx_sha256='a' * 64, plan_sha256='b' * 64)
    cases = [
        (dict(trt_version='10.14.1'), 'built with TensorRT 10.13.0, this is TensorRT 10.14.1'),
        (dict(gpu={**GPU, 'compute_capability': '9.0', 'name': 'NVIDIA H100'}), 'compute capability 8.9'),
        (dict(gpu={**GPU, 'name': 'NVIDIA L40S'}), 'built on a NVIDIA L4, this GPU is a NVIDIA L40S'),
        (dict(onnx_sha256='c' * 64), 'built from another ONNX file'),
        (dict(plan_sha256='d' * 64), 'not the one its sidecar describes'),
    ]
    for change, message in cases:
        kwargs = dict(trt_version='10.13.0', gpu=GPU, onnx_sha256='a' * 64, plan_sha256='b' * 64)
        kwargs.update(change)
        with pytest.raises(DeployError, match='refusing this TensorRT engine') as e:
            tb.check_sidecar(_sidecar(), **kwargs)
        assert message in str(e.value) and 'rebuild it with `timm-recal engine`' in str(e.value)
    with pytest.raises(DeployError) as e:  # several at once: all listed
        tb.check_sidecar(_sidecar(), trt_version='11.0.0', gpu={**GPU, 'name': 'X'}, onnx_sha256='c' * 64)
    assert str(e.value).count(';') >= 3


def test_read_sidecar_errors(tmp_path):
    plan = tmp_path / 'm.plan'
    with pytest.raises(DeployError, match='engine file not found'):
        tb.read_sidecar(str(plan))
    plan.write_bytes(b'plan')
    with pytest.raises(DeployError, match='has no sidecar'):
        tb.read_sidecar(str(plan))
    (tmp_path / 'm.plan.json').write_text('{"format": "other"}')
    with pytest.raises(DeployError, match='not a timm-recal engine sidecar'):
        tb.read_sidecar(str(plan))
    (tmp_path / 'm.plan.json').write_text(json.dumps(_sidecar()))
    assert tb.read_sidecar(str(plan))['tensorrt_version'] == '10.13.0'


def test_plan_and_sidecar_are_written_whole_or_not_at_all(tmp_path):
    path = str(tmp_path / 'e' / 'm.plan')
    tb._publish(b'PLAN', path, _sidecar(), force=False)
    assert open(path, 'rb').read() == b'PLAN' and tb.read_sidecar(path)['precision'] == 'fp32'
    # a second run without force: refused, the first pair untouched, no stray files
    with pytest.raises(OutputExistsError):
        tb._publish(b'NEW', path, _sidecar(precision='fp16'), force=False)
    assert open(path, 'rb').read() == b'PLAN' and tb.read_sidecar(path)['precision'] == 'fp32'
    assert sorted(os.listdir(tmp_path / 'e')) == ['m.plan', 'm.plan.json']
    # the plan appears meanwhile (sidecar free): the new sidecar must not stay beside a plan it does not describe
    other = str(tmp_path / 'e' / 'n.plan')
    open(other, 'wb').write(b'SOMEONE ELSE')
    with pytest.raises(OutputExistsError):
        tb._publish(b'NEW', other, _sidecar(precision='fp16'), force=False)
    assert not os.path.exists(tb.sidecar_path(other)) and open(other, 'rb').read() == b'SOMEONE ELSE'
    tb._publish(b'NEW', path, _sidecar(precision='fp16'), force=True)
    assert open(path, 'rb').read() == b'NEW' and tb.read_sidecar(path)['precision'] == 'fp16'
    assert sorted(os.listdir(tmp_path / 'e')) == ['m.plan', 'm.plan.json', 'n.plan']


# --- on a GPU with TensorRT --------------------------------------------------------------------------------------
@needs_trt_gpu
def test_build_load_parity_bench_on_gpu(cnn3_onnx, tmp_path):
    import onnxruntime as ort
    from timm_recal_deploy.tensorrt_runtime import bench_tensorrt, open_tensorrt
    cache = str(tmp_path / 'timing.cache')
    built = tb.build_engine(cnn3_onnx, str(tmp_path / 'cnn3.plan'), batch='2,4,8', timing_cache=cache,
                            workspace_mb=256)
    side = tb.read_sidecar(built['output'])
    assert side['tensorrt_version'] == tensorrt.__version__ and side['gpu'] == _GPU
    assert side['source_onnx']['sha256'] == tb.file_sha256(cnn3_onnx) and side['profile']['max'][0] == 8
    assert side['precision'] == 'fp32' and os.path.getsize(cache) > 0
    runner = open_tensorrt(built['output'], onnx=cnn3_onnx)
    x = np.random.default_rng(0).standard_normal((11, 3, 32, 32)).astype(np.float32)  # > max: chunks of 8 + 3
    sess = ort.InferenceSession(cnn3_onnx, providers=['CPUExecutionProvider'])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    out = runner(x)
    assert out.shape == ref.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(runner(x[:1]), ref[:1], atol=1e-4, rtol=1e-3)  # under the profile min: padded
    assert runner.describe()['runtime'] == 'trt' and runner.prepare(4)().shape == (4, 10)
    with pytest.raises(DeployError, match='outside the engine profile'):
        runner.prepare(1)
    rows = bench_tensorrt(runner, batches=(2, 8), warmup=2, iterations=10, min_time_s=0.0)
    assert [r['batch'] for r in rows] == [2, 8]
    assert all(r['gpu_compute_ms']['p50'] > 0 and r['latency_ms']['p99'] >= r['latency_ms']['p50'] for r in rows)
    # a second build reuses the timing cache file; a different ONNX is refused at load
    tb.build_engine(cnn3_onnx, str(tmp_path / 'again.plan'), timing_cache=cache)
    with pytest.raises(DeployError, match='another ONNX file'):
        tb.load_engine(built['output'], onnx_path=built['sidecar'])
    bad = dict(side, tensorrt_version='0.0.0')
    with open(built['sidecar'], 'w') as f:
        json.dump(bad, f)
    with pytest.raises(DeployError, match='built with TensorRT 0.0.0'):
        open_tensorrt(built['output'])


# --- the `engine` verb and `--runtimes trt` through `timm-recal` (timm_recal.cli.main) ----------------------------
def test_engine_check_only_runs_without_tensorrt(cnn3_onnx, tmp_path, capsys):
    from timm_recal.cli import main
    assert main(['engine', cnn3_onnx, '--check-only', '--trt-major', '11']) == 0
    out = capsys.readouterr().out
    assert 'TensorRT 11 static op check' in out and 'PASSED' in out and 'cannot know' in out
    assert main(['engine', cnn3_onnx, '--check-only', '--json']) == 0
    assert json.loads(capsys.readouterr().out)['passed'] is True
    assert os.listdir(tmp_path) == []


def test_engine_verb_without_tensorrt_is_one_clear_error(no_tensorrt_no_gpu, cnn3_onnx, tmp_path, capsys):
    """No traceback, exit non-zero, both missing pieces and the install command named, nothing written."""
    from timm_recal.cli import main
    assert main(['engine', cnn3_onnx]) == 2
    assert 'output path is required' in capsys.readouterr().err
    assert main(['engine', cnn3_onnx, '-o', str(tmp_path / 'm.plan'), '--batch', '1,8,32']) == 2
    err = capsys.readouterr().err
    assert re.search(r"TensorRT is not installed.*timm-recal\[tensorrt\].*no CUDA GPU", err), err
    assert 'Traceback' not in err and len(err.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('verb', ['parity', 'validate', 'bench'])
def test_runtimes_trt_without_tensorrt_is_one_clear_error(no_tensorrt_no_gpu, cnn3_onnx, tmp_path, capsys, verb):
    from timm_recal.cli import main
    argv = [verb, cnn3_onnx, '--runtimes', 'trt', '-o', str(tmp_path / 'out.json')]
    if verb == 'validate':
        argv += ['--data', str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert 'runtime trt unavailable' in err and "pip install 'timm-recal[tensorrt]'" in err and 'no CUDA GPU' in err
    assert os.listdir(tmp_path) == []


def test_engine_verb_in_a_fresh_process(cnn3_onnx, tmp_path):
    """The installed command itself, on this machine: without TensorRT or a GPU it says so and writes nothing."""
    tb_trt, _ = tb.import_tensorrt()
    if tb_trt is not None and tb.cuda_device() is not None:
        pytest.skip('TensorRT and a GPU are present: the build would run')
    proc = subprocess.run([sys.executable, '-m', 'timm_recal.cli', 'engine', cnn3_onnx, '-o', str(tmp_path / 'm.plan')],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                          start_new_session=True)  # never share the xdist worker's stdin channel or its signals
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    assert 'runtime trt unavailable' in proc.stderr and 'timm-recal[tensorrt]' in proc.stderr
    assert os.listdir(tmp_path) == []


def test_bench_percentiles_are_trtexec_style():
    from timm_recal_deploy.tensorrt_runtime import _percentiles
    p = _percentiles([4.0, 1.0, 3.0, 2.0, 100.0])
    assert p == {'mean': 22.0, 'min': 1.0, 'p50': 3.0, 'p90': pytest.approx(61.6), 'p99': pytest.approx(96.16),
                 'max': 100.0}
    assert _percentiles([]) == {}


def test_unusable_outputs_are_refused_before_any_work(no_tensorrt_no_gpu, cnn3_onnx, tmp_path):
    """Output checks come first (no TensorRT needed to see them): an existing plan or sidecar, a folder as
    timing cache."""
    (tmp_path / 'm.plan').write_bytes(b'old')
    with pytest.raises(DeployError, match='exists; pass --force'):
        tb.build_engine(cnn3_onnx, str(tmp_path / 'm.plan'))
    (tmp_path / 'n.plan.json').write_text('{}')
    with pytest.raises(DeployError, match='n.plan.json exists'):
        tb.build_engine(cnn3_onnx, str(tmp_path / 'n.plan'))
    with pytest.raises(DeployError, match='is a folder'):
        tb.build_engine(cnn3_onnx, str(tmp_path / 'o.plan'), timing_cache=str(tmp_path))
    with pytest.raises(DeployError, match='--workspace'):
        tb.build_engine(cnn3_onnx, str(tmp_path / 'o.plan'), workspace_mb=0)
    assert sorted(os.listdir(tmp_path)) == ['m.plan', 'n.plan.json']


@needs_trt_gpu
def test_bench_runtimes_trt_reports_trtexec_numbers(cnn3_onnx, capsys):
    """``timm-recal bench FILE.onnx --runtimes trt --device cuda``: the interleaved table plus trtexec's numbers."""
    from timm_recal.cli import main
    argv = ['bench', cnn3_onnx, '--runtimes', 'trt', '--device', 'cuda', '--batch', '1,8', '--warmup', '1',
            '--repeats', '1', '--min-time', '0.1']
    assert main(argv + ['--json']) == 0
    rec = json.loads(capsys.readouterr().out)
    (numbers,) = rec['tensorrt']
    assert [r['batch'] for r in numbers['results']] == [1, 8]
    for r in numbers['results']:
        assert r['throughput_images_per_s'] > 0 and r['iterations'] >= 200
        assert 0 < r['gpu_compute_ms']['p50'] <= r['gpu_with_transfers_ms']['p50']
        assert r['latency_ms']['p50'] <= r['latency_ms']['p99']
    assert main(argv) == 0
    assert 'GPU compute p50/p90/p99' in capsys.readouterr().out
