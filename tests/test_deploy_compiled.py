"""The compiled PyTorch runtimes: ``inductor`` (torch.compile) and ``aoti`` (AOTInductor packages, compiled in a
child process and cached). One se_cnn3 package (32x32, fp32, its gate rewritten by ``fuse_gates``) and one
inductor compile of it serve every test of the default run; the registry-wide compile is under ``-m slow``; CUDA tests skip without a GPU."""
import copy
import json
import os
import zipfile

import numpy as np
import pytest
import torch

import timm_recal  # noqa: F401  (registers the models)
from deploy_helpers import (assert_runner_contract, ci_img_size, ci_models, cifar_samples, leaks_in,
                            randomize_weights_, run_cli, sample_batch)
from timm_recal_deploy.aoti_package import PACKAGE_KEY, cached_package, package_metadata
from timm_recal_deploy.bench import bench
from timm_recal_deploy.compile_fusion import fuse_gates
from timm_recal_deploy.compiled import (CACHE_ENV, CRASH_HOOK_ENV, RULE_BATCH, compiled_dtype, conv_macs_per_image,
                                        module_types, prepare_for_compile, weight_prepack)
from timm_recal_deploy.errors import CompileFailed, DeployError, NoNativePrecision
from timm_recal_deploy.inductor_runtime import compile_mode
from timm_recal_deploy.parity import parity
from timm_recal_deploy.runtimes import RUNTIMES, open_runtime
from timm_recal_deploy.validate import validate

NAME = 'se_cnn3'  # a gated net: the compiled runtimes compile its gates rewritten by fuse_gates
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device (none on this machine)')


@pytest.fixture(scope='session')
def compile_cache(tmp_path_factory):
    """One compile cache for the session: every test below reuses the package the first one compiled."""
    folder = tmp_path_factory.mktemp('compile_cache')
    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if old is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = old


@pytest.fixture(scope='session')
def cnn3_package(compile_cache, tmp_path_factory):
    """``(model, checkpoint, package path)``: a randomized cnn3, its weights file, and ``export --format aoti`` of
    it (the one AOTInductor compile of the default run)."""
    import timm
    from timm_recal.cli import main
    folder = tmp_path_factory.mktemp('aoti')
    model = randomize_weights_(timm.create_model(NAME), sample_batch(NAME, 32)).eval()
    ckpt = folder / 'weights.pth'
    torch.save(model.state_dict(), ckpt)
    path = folder / 'cnn3.pt2'
    assert main(['export', NAME, '--checkpoint', str(ckpt), '--format', 'aoti', '-o', str(path)]) == 0
    return model, ckpt, str(path)


def _with_metadata(src: str, dst: str, **changes) -> str:
    """A copy of the package ``src`` whose timm_recal metadata has ``changes`` (another torch, device...)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, 'w') as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.endswith('wrapper_metadata.json'):
                raw = json.loads(data)
                raw[PACKAGE_KEY] = json.dumps({**json.loads(raw[PACKAGE_KEY]), **changes})
                data = json.dumps(raw).encode()
            zout.writestr(item, data)
    return dst


def test_package_carries_provenance(cnn3_package):
    model, _, path = cnn3_package
    meta = package_metadata(path)
    assert meta['architecture'] == NAME and meta['weights'] == 'checkpoint' and meta['input_size'] == [3, 32, 32]
    assert meta['class_labels'] and meta['mean'] and meta['std']
    assert meta['torch'] == torch.__version__ and meta['device'] == 'cpu' and meta['dtype'] == 'float32'
    assert meta['memory_format'] == 'contiguous' and meta['batch_range'] == [1, 1024] and meta['freezing']
    assert meta['static_batches'] == [1]
    # 3.4M MACs per convolution and image: too few to prepack at batch 1 (and 2), enough at 16, where the
    # dynamic model is judged
    assert meta['weight_prepack'] == {'model': True, 'batch_1': False}
    from timm_recal_deploy.sources import weights_digest
    assert meta['weights_sha256'] == weights_digest(model)
    assert not os.path.isabs(meta['checkpoint'] or '')  # no local paths in a published file


def test_aoti_runner_matches_eager_at_any_batch(cnn3_package):
    model, _, path = cnn3_package
    runner = open_runtime('aoti', path)
    assert_runner_contract(runner, 'aoti', batches=(1, 3))
    x = sample_batch(NAME, 32, n=5)
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(runner(x.numpy()), ref, atol=1e-4, rtol=1e-3)
    assert runner.describe()['shape'] == 'dynamic (batch 1..1024), static batch 1'


def test_batch_one_runs_the_static_model_of_the_package(cnn3_package):
    """The package holds the dynamic model and a static batch-1 model; batch 1 runs the static one (calls
    counted), exact to eager, and the dynamic model alone still takes batch 1 (as Triton loads it)."""
    model, _, path = cnn3_package
    with zipfile.ZipFile(path) as z:
        folders = {n.split('/data/aotinductor/')[1].split('/')[0] for n in z.namelist() if '/data/aotinductor/' in n}
    assert folders == {'model', 'batch_1'}
    runner = open_runtime('aoti', path)
    calls = []
    static = runner.static_models[1]
    runner.static_models[1] = lambda x: calls.append(len(x)) or static(x)
    x = sample_batch(NAME, 32, n=2)
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(runner(x[:1].numpy()), ref[:1], atol=1e-4, rtol=1e-3)
    runner.prepare(1)()
    runner(x.numpy())
    assert calls == [1, 1]
    with torch.no_grad():
        np.testing.assert_allclose(runner.model(x[:1]).numpy(), ref[:1], atol=1e-4, rtol=1e-3)


def test_a_module_hits_the_cache(cnn3_package, compile_cache):
    model, ckpt, path = cnn3_package
    from timm_recal_deploy.sources import open_source
    from timm_recal_deploy.options import ModelOptions
    src = open_source(NAME, ModelOptions(checkpoint=str(ckpt)))
    (cached,) = compile_cache.glob('aoti/*.pt2')
    os.utime(cached, (1_000_000, 1_000_000))  # long unused
    runner = open_runtime('aoti', src.model, info=src.info, input_size=src.info['input_size'])
    assert runner.describe()['compile_cached'] is True and runner.compile_seconds is None
    assert len(list(compile_cache.glob('aoti/*.pt2'))) == 1
    assert cached.stat().st_mtime > 1_000_000  # the hit made it recent: trimming removes it last


def test_the_cache_key_follows_the_models_code(tmp_path, monkeypatch):
    """Same classes and weights, another ``forward``: another package (a stale one was served after a rewrite)."""
    from timm_recal_deploy import aoti_package
    from timm_recal_deploy.compiled import code_digest
    src = tmp_path / 'tiny_net_for_key.py'
    src.write_text('import torch\n\n\nclass Tiny(torch.nn.Module):\n    def forward(self, x):\n        return x * 2\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    import tiny_net_for_key
    model = tiny_net_for_key.Tiny()
    meta = {'architecture': 'tiny', 'torch': torch.__version__, 'versions': {'timm': '1'}}
    digest, key = code_digest(model), aoti_package._cache_key(meta, model)
    assert code_digest(model) == digest and aoti_package._cache_key(meta, model) == key  # stable
    src.write_text(src.read_text().replace('x * 2', 'x * 3'))
    assert code_digest(model) != digest and aoti_package._cache_key(meta, model) != key
    assert aoti_package._cache_key({**meta, 'versions': {'timm': '2'}}, model) != aoti_package._cache_key(meta, model)


def test_a_compile_trims_the_cache(tmp_path, monkeypatch):
    """After a compile enters the cache, the least recently used packages beyond the limit are removed and named
    in the log (the child's compile is stubbed: this checks the cache's bookkeeping, not AOTInductor)."""
    from timm_recal_deploy import aoti_package
    from timm_recal_deploy.compiled import CACHE_MAX_ENV
    from timm_recal_deploy.options import ModelOptions
    from timm_recal_deploy.sources import open_source
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setenv(CACHE_MAX_ENV, '0.000002')  # 2,000 bytes
    (tmp_path / 'aoti').mkdir()
    stale = tmp_path / 'aoti' / 'stale.pt2'
    stale.write_bytes(b'x' * 1500)

    def fake_compile(kind, job, what, timeout):
        with open(job['out'], 'wb') as f:
            f.write(b'y' * 1000)
        return {'seconds': 0.5}
    monkeypatch.setattr(aoti_package, 'run_child', fake_compile)
    monkeypatch.setattr(aoti_package, 'package_metadata', lambda path: {'path': path})
    src = open_source(NAME, ModelOptions())
    logged = []
    path, meta, seconds = aoti_package.cached_package(src.model, src.info, log=logged.append)
    assert seconds == 0.5 and os.path.getsize(path) == 1000 and not stale.exists()
    assert 'removed the 1 least recently used (stale.pt2)' in logged[-1]


def test_the_cache_drops_the_least_recently_used_packages(tmp_path, monkeypatch):
    from timm_recal_deploy.compiled import CACHE_MAX_ENV, DEFAULT_CACHE_MAX_GB, cache_limit_bytes, trim_cache
    sizes = {'old.pt2': 300, 'mid.pt2': 300, 'new.pt2': 300, 'just_made.pt2': 300, 'notes.txt': 5000}
    for age, (name, size) in enumerate(sizes.items()):
        (tmp_path / name).write_bytes(b'x' * size)
        os.utime(tmp_path / name, (1_000_000 + age, 1_000_000 + age))
    os.utime(tmp_path / 'just_made.pt2', (10, 10))  # oldest mtime, but the one just made is always kept
    removed = trim_cache(str(tmp_path), keep=str(tmp_path / 'just_made.pt2'), max_bytes=650)
    assert [os.path.basename(p) for p in removed] == ['old.pt2', 'mid.pt2']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['just_made.pt2', 'new.pt2', 'notes.txt']
    assert trim_cache(str(tmp_path), keep='', max_bytes=0) == []  # 0: no limit
    monkeypatch.delenv(CACHE_MAX_ENV, raising=False)
    assert cache_limit_bytes() == int(DEFAULT_CACHE_MAX_GB * 1e9)
    monkeypatch.setenv(CACHE_MAX_ENV, '0.5')
    assert cache_limit_bytes() == 500_000_000
    monkeypatch.setenv(CACHE_MAX_ENV, '0')
    assert cache_limit_bytes() is None
    for bad in ('lots', '-1', 'inf', 'nan'):
        monkeypatch.setenv(CACHE_MAX_ENV, bad)
        with pytest.raises(DeployError, match=f'{CACHE_MAX_ENV} must be a number of GB'):
            cache_limit_bytes()


def test_packages_name_no_local_folder(cnn3_package, compile_cache, tmp_path, capsys):
    """The exported package, its cache entry and a Triton repository of it, searched byte for byte inside every
    member (compiled library, sources, metadata) for the working, home, temp and Python folders (the compile
    commands, the compiler's debug info and the headers' __FILE__ name them all in AOTInductor's own package)."""
    _, _, path = cnn3_package
    repo = tmp_path / 'repo'
    assert run_cli(capsys, 'triton', path, '--backend', 'pytorch', '-o', repo)[0] == 0
    packages = [path, *compile_cache.glob('aoti/*.pt2'), *repo.rglob('*.pt2')]
    assert len(packages) == 3
    for package in packages:
        assert not leaks_in(package), leaks_in(package)


def test_other_torch_device_or_file_is_refused_in_one_line(cnn3_package, tmp_path, capsys):
    _, _, path = cnn3_package
    old = _with_metadata(path, str(tmp_path / 'old.pt2'), torch='2.5.0')
    with pytest.raises(DeployError, match=r'compiled with torch 2\.5\.0; this is torch'):
        open_runtime('aoti', old)
    gpu = _with_metadata(path, str(tmp_path / 'gpu.pt2'), device='cuda (NVIDIA H200, sm_90)')
    if not torch.cuda.is_available():
        with pytest.raises(DeployError, match='is a CUDA package .* no CUDA device'):
            open_runtime('aoti', gpu)
    with pytest.raises(DeployError, match='is a fp32 package, not bf16'):
        open_runtime('aoti', path, precision='bf16')
    (tmp_path / 'junk.pt2').write_bytes(b'not a zip')
    with pytest.raises(DeployError, match='not an AOTInductor package'):
        open_runtime('aoti', str(tmp_path / 'junk.pt2'))
    rc, _, err = run_cli(capsys, 'validate', old, '--data', cifar_samples(), '--limit', '4')
    assert rc != 0 and 'compiled with torch 2.5.0' in err and len(err.strip().splitlines()) == 1
    rc, out, _ = run_cli(capsys, 'info', old, '--json')  # info describes it, and says why it does not load
    assert rc == 0 and json.loads(out)['loads_here'].startswith('no: ') and 'torch 2.5.0' in out


def test_a_cpu_package_needs_the_vector_instructions_it_was_compiled_for(cnn3_package, tmp_path, capsys,
                                                                         monkeypatch):
    """A CPU package records inductor's ISA (``cpu_isa``); on a CPU without one of its instructions the library
    would die by SIGILL, so it is refused in one line before anything is loaded (the check reads cpuinfo: here
    the CPU is made to lack the recorded ISA's last word)."""
    import timm_recal_deploy.aoti_package as aoti_package
    _, _, path = cnn3_package
    isa = package_metadata(path)['cpu_isa']
    assert isa == aoti_package.compiled_cpu_isa() and aoti_package.missing_cpu_isa(isa) == []
    assert aoti_package.missing_cpu_isa('sve256 neon') == []  # another architecture's words: not checked
    word = isa.split()[-1]
    monkeypatch.setitem(aoti_package._CPU_ISA_CHECKS, word, lambda: False)
    with pytest.raises(DeployError, match=rf"compiled for the CPU instructions '{isa}'; this CPU lacks {word}, "):
        open_runtime('aoti', path)
    rc, _, err = run_cli(capsys, 'validate', path, '--data', cifar_samples(), '--limit', '4')
    assert rc != 0 and 'illegal instruction' in err and len(err.strip().splitlines()) == 1
    rc, out, _ = run_cli(capsys, 'info', path, '--json')
    assert rc == 0 and json.loads(out)['loads_here'].startswith('no: ') and f'lacks {word}' in out


def test_validate_a_package_by_its_metadata(cnn3_package, capsys):
    _, _, path = cnn3_package
    rc, out, _ = run_cli(capsys, 'validate', path, '--data', cifar_samples(), '--limit', '8', '--json')
    r = json.loads(out)
    assert rc == 0 and r['runtime']['runtime'] == 'aoti' and r['n_images'] == 8 and r['architecture'] == NAME


def test_unsupported_precision_is_one_line_and_writes_nothing(tmp_path, capsys, compile_cache):
    out = tmp_path / 'm.pt2'
    rc, _, err = run_cli(capsys, 'export', NAME, '--format', 'aoti', '--precision', 'fp16', '-o', out)
    assert rc != 0 and 'fp16 compiles for CUDA only' in err and not out.exists()
    rc, _, err = run_cli(capsys, 'export', NAME, '--precision', 'bf16', '-o', tmp_path / 'm.onnx')
    assert rc != 0 and 'an ONNX export is FP32' in err and not os.listdir(tmp_path)
    with pytest.raises(NoNativePrecision):
        compiled_dtype('fp16', 'cpu')


def test_static_batches_default_per_device(cnn3_package):
    """Batch 1 on CPU (what the package above holds); none on CUDA, where small batches replay a CUDA graph."""
    from timm_recal_deploy.aoti_package import default_static_batches
    assert package_metadata(cnn3_package[2])['static_batches'] == list(default_static_batches('cpu')) == [1]
    assert default_static_batches('cuda') == default_static_batches('cuda:1') == ()


@pytest.mark.parametrize('value,message', [('0', 'wants batch sizes >= 1'), ('1,x', 'comma-separated'),
                                           ('2048', 'must lie in 1..--max-batch (1024)')])
def test_bad_static_batches_are_one_line_and_write_nothing(tmp_path, capsys, compile_cache, value, message):
    out = tmp_path / 'm.pt2'
    rc, _, err = run_cli(capsys, 'export', NAME, '--format', 'aoti', '--static-batches', value, '-o', out)
    last = err.strip().splitlines()[-1]  # argparse's own errors come after its usage lines
    assert rc != 0 and message in last and (rc == 2 or len(err.strip().splitlines()) == 1) and not out.exists()


def test_bf16_refused_without_native_bf16(monkeypatch):
    monkeypatch.setattr('timm_recal_deploy.compiled.native_bf16', lambda: False)
    with pytest.raises(NoNativePrecision, match='no native BF16'):
        compiled_dtype('bf16', 'cpu')


@pytest.mark.parametrize('hook, timeout, message', [('SIGKILL', 300, 'died with SIGKILL'),
                                                    ('SIGSTOP', 4, 'exceeded --compile-timeout 4 s')])
def test_a_crashing_or_hanging_compile_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, hook, timeout, message):
    """The child kills (or stops) itself through the test-only hook: one error naming the model, the torch
    version and the signal; the cache holds no package and no temporary folder."""
    import timm
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setenv(CRASH_HOOK_ENV, hook)
    model = timm.create_model(NAME).eval()
    with pytest.raises(CompileFailed) as e:
        cached_package(model, {'architecture': NAME, 'input_size': (3, 32, 32)}, timeout=timeout)
    text = str(e.value)
    assert message in text and f'torch {torch.__version__}' in text and NAME in text and '\n' not in text
    assert os.listdir(tmp_path / 'aoti') == []


def test_bench_reports_a_failed_compile_and_goes_on(tmp_path, monkeypatch):
    import timm
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setenv(CRASH_HOOK_ENV, 'SIGSEGV')
    r = bench(NAME, model=timm.create_model(NAME), runtimes=['eager', 'aoti'], batches=[2], warmup=0, repeats=1,
              min_time_s=0.0)
    assert [x['runtime'] for x in r.results] == ['eager']
    assert r.failed and r.failed[0]['key'] == 'target/aoti/fp32' and 'SIGSEGV' in r.failed[0]['error']
    assert any('FAILED' in n for n in r.notes)


def test_bench_times_a_package_beside_the_model_it_was_compiled_from(cnn3_package, capsys):
    """``bench m.pt2 --compare MODEL``: the package runs under its own runtime (the default runtimes then are that
    one) at its precision; the MODEL side opens the same cache entry (no second compile), so both are timed."""
    _, ckpt, path = cnn3_package
    r = bench(path, compare=NAME, compare_checkpoint=str(ckpt), batches=[2], warmup=0, repeats=1, min_time_s=0.0)
    assert {(x['role'], x['runtime'], x['precision']) for x in r.results} == {
        ('target', 'aoti', 'fp32'), ('compare', 'aoti', 'fp32')}
    assert r.models['target']['kind'] == 'package' and r.models['target']['name'] == NAME
    assert any(x['kind'] == 'target_vs_compare' for x in r.ratios)
    r = bench(path, runtimes=['eager', 'aoti'], batches=[2], warmup=0, repeats=1, min_time_s=0.0)
    assert [x['runtime'] for x in r.results] == ['aoti'] and any('only aoti runs it' in n for n in r.notes)
    with pytest.raises(DeployError, match='runs under aoti; add aoti to --runtimes'):
        bench(path, runtimes=['ort'], batches=[2])
    with pytest.raises(DeployError, match='compiled package with its own weights'):
        bench(path, checkpoint=str(ckpt), batches=[2])
    with pytest.raises(DeployError, match='exported for 32x32 inputs, not --img-size 64'):
        bench(path, img_size=64, batches=[2])
    with pytest.raises(DeployError, match=r'compiled for fp32, not --precision bf16: a package runs at the precision'):
        bench(path, precisions=['bf16'], batches=[2])  # was: timed at fp32, the flag ignored
    r = bench(path, precisions=['fp32', 'bf16'], batches=[2], warmup=0, repeats=1, min_time_s=0.0)
    assert [(x['runtime'], x['precision']) for x in r.results] == [('aoti', 'fp32')]
    capsys.readouterr()  # what the calls above printed (torch's first-compile warnings)
    rc, _, err = run_cli(capsys, 'bench', path, '--runtimes', 'eager', '--batch', '2')
    assert rc != 0 and len(err.strip().splitlines()) == 1 and 'add aoti to --runtimes' in err
    rc, _, err = run_cli(capsys, 'bench', path, '--precision', 'bf16', '--batch', '2')
    assert rc != 0 and len(err.strip().splitlines()) == 1 and 'compiled for fp32, not --precision bf16' in err


def test_a_stage_refuses_a_package_of_another_device(cnn3_package):
    """A package runs where it was compiled: ``--device`` naming another device kind is refused in one line by every
    stage that opens the package (``sources.open_source``), not ignored."""
    from timm_recal_deploy.options import ModelOptions
    from timm_recal_deploy.sources import open_source
    _, _, path = cnn3_package
    with pytest.raises(DeployError, match=r'was compiled for cpu, not --device cuda'):
        open_source(path, ModelOptions(device='cuda'))
    assert open_source(path, ModelOptions(device='cpu')).kind == 'package'


def test_parity_and_validate_run_the_package(cnn3_package):
    model, ckpt, _ = cnn3_package
    p = parity(NAME, checkpoint=str(ckpt), runtimes=['aoti'], limit=8)
    assert p.passed and p.runtime['runtime'] == 'aoti' and p.runtime['compile_cached'] and p.onnx is None
    v = validate(NAME, cifar_samples(), checkpoint=str(ckpt), runtimes=['aoti'], limit=8)
    assert v.runtime['runtime'] == 'aoti' and v.n_images == 8


def test_inductor_compiles_outside_the_timing_and_matches_eager(cnn3_package):
    model, _, _ = cnn3_package
    runner = open_runtime('inductor', model, input_size=(3, 32, 32))
    call = runner.prepare(2)  # compiles here, before any timing window
    call()
    desc = runner.describe()
    assert desc['modes'] == {'batch 2': 'default'} and desc['compile_seconds']['batch 2'] > 0
    assert desc['fullgraph'] and desc['freezing'] and desc['weight_prepack'] == {'batch 2': False}
    x = sample_batch(NAME, 32, n=2)
    with torch.no_grad():
        np.testing.assert_allclose(runner(x.numpy()), model(x).numpy(), atol=1e-4, rtol=1e-3)


def test_weight_prepack_only_where_the_convolutions_earn_it():
    small, large = 0.19e6, 77e6  # shufflenetv2_x0_5_cifar, resnet50: MACs per convolution and image
    assert not weight_prepack('fp32', 'cpu', small, 1) and not weight_prepack('fp32', 'cpu', small, 16)
    assert weight_prepack('fp32', 'cpu', large, 1)
    assert not weight_prepack('fp32', 'cpu', 2.6e6, 1) and weight_prepack('fp32', 'cpu', 2.6e6, 16)
    assert weight_prepack('fp32', 'cpu', 2.6e6, None) == weight_prepack('fp32', 'cpu', 2.6e6, RULE_BATCH)
    assert weight_prepack('bf16', 'cpu', small, 1) and weight_prepack('fp16', 'cuda', small, 1)
    assert weight_prepack('fp32', 'cuda', small, 1) and weight_prepack('fp32', 'cpu', None, 1)


def test_conv_macs_per_image_counts_groups_and_kernels():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 1, groups=2))
    # 8 x 4 x 4 outputs of 3 x 3 x 3 MACs, then 8 x 4 x 4 outputs of 4 MACs
    assert conv_macs_per_image(model, (3, 4, 4)) == (128 * 27 + 128 * 4) / 2
    assert conv_macs_per_image(torch.nn.Linear(4, 2), (4,)) is None
    assert not model[0]._forward_hooks  # the hooks are removed


def test_compile_mode_per_batch_and_device():
    assert compile_mode('cuda', 1) == 'reduce-overhead' and compile_mode('cuda', 256) == 'default'
    assert compile_mode('cpu', 1) == 'default' and compile_mode('cuda', None) == 'default'


def test_prepare_for_compile_never_touches_the_callers_module():
    import timm
    model = timm.create_model(NAME)
    prepared = prepare_for_compile(model)
    assert prepared is not model and not prepared.training
    assert all(a is not b for a, b in zip(prepared.parameters(), model.parameters()))


def test_prepare_for_compile_fuses_the_gates_exactly():
    """The compiled runtimes compile the gates in the form inductor fuses (``compile_fusion.fuse_gates``), and the
    cache key sees the rewrite (other module types)."""
    import timm
    model = randomize_weights_(timm.create_model(NAME), sample_batch(NAME, 32)).eval()
    prepared = prepare_for_compile(model)
    assert module_types(prepared) != module_types(model)
    assert fuse_gates(copy.deepcopy(model)) > 0 and fuse_gates(prepared) == 0  # every gate already rewritten
    x = sample_batch(NAME, 32, n=3)
    with torch.no_grad():
        torch.testing.assert_close(prepared(x), model(x), atol=1e-5, rtol=1e-5)


def test_rows_of_the_table():
    assert RUNTIMES['inductor'].kind == RUNTIMES['aoti'].kind == 'model'
    assert not RUNTIMES['aoti'].reference and RUNTIMES['eager'].reference


@CUDA
def test_cuda_fp16_package_replays_a_cuda_graph(tmp_path, compile_cache):
    import timm
    model = randomize_weights_(timm.create_model(NAME), sample_batch(NAME, 32)).eval()
    runner = open_runtime('aoti', model, precision='fp16', device='cuda', input_size=(3, 32, 32))
    assert runner.describe()['memory_format'] == 'channels_last'
    runner.prepare(1)()
    assert runner.describe()['cuda_graph_batches'] == [1]
    x = sample_batch(NAME, 32, n=4)
    with torch.no_grad():
        ref = model.double()(x.double()).float().numpy()
    np.testing.assert_allclose(runner(x.numpy()), ref, atol=5e-2, rtol=1e-2)


@CUDA
def test_cuda_inductor_small_batch_uses_cuda_graphs():
    import timm
    model = timm.create_model(NAME).eval()
    runner = open_runtime('inductor', model, precision='fp16', device='cuda', input_size=(3, 32, 32))
    runner.prepare(1)()
    assert runner.describe()['modes'] == {'batch 1': 'reduce-overhead'}


@pytest.mark.slow
@pytest.mark.parametrize('name', ci_models())
def test_every_registered_family_compiles_with_aoti(name, compile_cache):
    import timm
    size = ci_img_size(name)
    model = randomize_weights_(timm.create_model(name), sample_batch(name, size)).eval()
    runner = open_runtime('aoti', model, input_size=(3, size, size))
    x = sample_batch(name, size, n=3)
    with torch.no_grad():
        ref = model.double()(x.double()).float().numpy()
    err = np.abs(runner(x.numpy()) - ref).max()
    with torch.no_grad():
        fp32_err = np.abs(model.float()(x).numpy() - ref).max()
    assert err <= 2 * fp32_err + 1e-5, (err, fp32_err)


def test_triton_pytorch_backend_writes_a_torch_aoti_model(cnn3_package, tmp_path, capsys):
    pytest.importorskip('tritonclient.grpc')
    _, _, path = cnn3_package
    repo = tmp_path / 'repo'
    rc, out, err = run_cli(capsys, 'triton', path, '--backend', 'pytorch', '-o', repo, '--json')
    assert rc == 0, err
    r = json.loads(out)
    assert r['validated_with_model_config_pb2'] and r['max_batch_size'] == 0
    text = (repo / NAME / 'config.pbtxt').read_text()
    assert 'platform: "torch_aoti"' in text and 'max_batch_size: 0' in text and 'dims: [ -1, 3, 32, 32 ]' in text
    assert 'kind: KIND_CPU' in text and (repo / NAME / '1' / 'model.pt2').is_file()
    assert f'torch {torch.__version__}' in (repo / 'README.md').read_text()
    # the dynamic model alone (Triton loads no other): it says so, and runs every batch as the package does
    served = str(repo / NAME / '1' / 'model.pt2')
    with zipfile.ZipFile(served) as z:
        assert {n.split('/data/aotinductor/')[1].split('/')[0] for n in z.namelist() if '/data/aotinductor/' in n} \
            == {'model'}
    meta, full = package_metadata(served), package_metadata(path)
    assert meta['static_batches'] == [] and meta['weight_prepack'] == {'model': full['weight_prepack']['model']}
    assert {k: v for k, v in meta.items() if k not in ('static_batches', 'weight_prepack')} \
        == {k: v for k, v in full.items() if k not in ('static_batches', 'weight_prepack')}
    x = sample_batch(NAME, 32, n=3).numpy()
    runner, reference = open_runtime('aoti', served), open_runtime('aoti', path)
    assert runner.static_models == {}
    for batch in (1, 3):
        np.testing.assert_allclose(runner(x[:batch]), reference(x[:batch]), atol=1e-5, rtol=1e-5)
    onnx_repo = tmp_path / 'other'
    rc, _, err = run_cli(capsys, 'triton', path, '--backend', 'onnxruntime', '-o', onnx_repo)
    assert rc != 0 and 'served by --backend pytorch' in err and not onnx_repo.exists()


def test_pipeline_checks_recommends_and_survives_a_failed_compile(cnn3_package, tmp_path, monkeypatch):
    """The compiled package passes parity and can be recommended; with a compile that dies (a fresh cache and
    the crash hook) the pipeline records the failure and still benches and reports the other runtimes."""
    from timm_recal_deploy.pipeline import pipeline
    _, ckpt, _ = cnn3_package
    kw = dict(checkpoint=str(ckpt), stages=['export', 'parity', 'bench', 'report'], runtimes=['ort', 'aoti'],
              precisions=['fp32'], batches=[2], quick=True, warmup=0, repeats=1, min_time_s=0.0)
    r = pipeline(NAME, str(tmp_path / 'ok'), **kw)
    assert r.passed and {(p['runtime'], p['result']['passed']) for p in r.parity} == {('ort', True), ('aoti', True)}
    considered = {c['runtime']: c for c in r.recommendation[0]['considered']}
    assert considered['aoti']['eligible'] and considered['aoti']['why'] == 'parity passed'
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / 'empty_cache'))
    monkeypatch.setenv(CRASH_HOOK_ENV, 'SIGKILL')
    r = pipeline(NAME, str(tmp_path / 'crash'), **kw)
    assert not r.passed and any('aoti' in s for s in r.failed_stages)
    assert r.bench['failed'][0]['key'] == 'target/aoti/fp32' and 'SIGKILL' in r.bench['failed'][0]['error']
    assert {x['runtime'] for x in r.bench['results']} == {'ort'} and (tmp_path / 'crash' / 'report.md').is_file()


def test_pipeline_triton_stage_serves_the_package(cnn3_package, compile_cache, tmp_path, monkeypatch):
    """``pipeline --stages export,triton --backend pytorch``: the repository serves the target's AOTInductor
    package (platform torch_aoti), taken from the cache (this session's one compile); a compile that dies is
    the triton stage's error, and the pipeline still writes its record and report."""
    pytest.importorskip('tritonclient.grpc.model_config_pb2', reason='needs tritonclient[grpc] (the [test] extra)')
    from timm_recal_deploy.pipeline import pipeline
    _, ckpt, path = cnn3_package
    kw = dict(checkpoint=str(ckpt), stages=['export', 'triton', 'report'], precisions=['fp32'], exporter='legacy',
              backend='pytorch')
    r = pipeline(NAME, str(tmp_path / 'ok'), **kw)
    assert r.passed and r.triton['status'] == 'written' and r.triton['runtime'] == 'aoti'
    served = tmp_path / 'ok' / 'triton' / NAME / '1' / 'model.pt2'
    # the export's package (the same cache entry, not a second compile), its dynamic model alone
    with zipfile.ZipFile(path) as z, zipfile.ZipFile(served) as zs:
        source = {n: z.read(n) for n in z.namelist()}
        copied = {n: zs.read(n) for n in zs.namelist()}
    assert set(copied) == {n for n in source if '/data/aotinductor/batch_1/' not in n} and len(copied) < len(source)
    assert all(copied[n] == source[n] for n in copied if not n.endswith('wrapper_metadata.json'))
    assert len(list(compile_cache.glob('aoti/*.pt2'))) == 1
    config = (tmp_path / 'ok' / 'triton' / NAME / 'config.pbtxt').read_text()
    assert 'platform: "torch_aoti"' in config and 'max_batch_size: 0' in config
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / 'empty_cache'))
    monkeypatch.setenv(CRASH_HOOK_ENV, 'SIGKILL')
    r = pipeline(NAME, str(tmp_path / 'crash'), **kw)
    stages = {s['stage']: s for s in r.stages}
    assert not r.passed and stages['triton']['status'] == 'error' and 'SIGKILL' in stages['triton']['error']
    assert r.triton is None and not (tmp_path / 'crash' / 'triton').exists()
    assert (tmp_path / 'crash' / 'report.md').is_file() and stages['export']['status'] == 'ok'


def test_parity_of_a_package_rebuilds_its_reference_and_inspect_refuses_it(cnn3_package, tmp_path, capsys):
    """``parity m.pt2`` compares the package, under its own runtime and precision, with the PyTorch model its
    metadata records (the checkpoint found beside it, its hash checked), as ``parity m.onnx`` does; it ended in
    ``'NoneType' object has no attribute ...`` tracebacks. What would be ignored is refused in one line, and
    ``inspect m.pt2`` (compiled code has no gates to hook) is refused in one line, writing nothing."""
    _, _, path = cnn3_package
    p = parity(path, limit=8)
    assert p.passed and p.runtime['runtime'] == 'aoti' and p.reference['runtime'] == 'eager'
    assert p.onnx == os.path.abspath(path) and p.model['weights'] == 'checkpoint' and p.n_images == 8
    rc, out, _ = run_cli(capsys, 'parity', path, '--data', cifar_samples(), '--limit', '8', '--runtimes', 'aoti',
                         '--json')
    assert rc == 0 and json.loads(out)['passed']
    for args, message in ((['--runtimes', 'ort'], 'it runs under aoti, not --runtimes ort'),
                          (['--precision', 'bf16'], 'was compiled for fp32, not --precision bf16'),
                          (['--onnx', tmp_path / 'm.onnx'], '--onnx is for a MODEL')):
        rc, _, err = run_cli(capsys, 'parity', path, '--limit', '4', *args)
        assert rc != 0 and message in err and len(err.strip().splitlines()) == 1, err
    alone = tmp_path / 'alone.pt2'  # its checkpoint neither where recorded nor beside it: asks for --checkpoint
    alone.write_bytes(open(path, 'rb').read())
    rc, _, err = run_cli(capsys, 'parity', alone, '--limit', '4')
    assert rc != 0 and 'pass --checkpoint' in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(capsys, 'inspect', path, '--data', cifar_samples(), '-o', tmp_path / 'out')
    assert rc != 0 and 'is a compiled package: its gates cannot be probed' in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / 'out').exists()


def _with_libraries(src: str, dst: str, change) -> str:
    """A copy of the package ``src`` whose compiled libraries are ``change(bytes)`` (None: left out)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, 'w') as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.endswith('.so'):
                data = change(data)
            if data is not None:
                zout.writestr(item, data)
    return dst


@pytest.mark.parametrize('damage, message', [
    (lambda data: None, 'holds no compiled library for its dynamic-batch model'),
    (lambda data: b'\x7fELF' + b'junk' * 1000, 'has a damaged ELF header'),
    (lambda data: b'MZ' + data[2:], 'is not a compiled library'),
    (lambda data: data[:len(data) // 2], 'is cut short'),
    (lambda data: data[:18] + (183 if data[18] != 183 else 62).to_bytes(2, 'little') + data[20:], 'was built for'),
], ids=['missing', 'junk', 'not_elf', 'truncated', 'other_machine'])
def test_a_package_whose_libraries_cannot_load_is_refused_before_loading(cnn3_package, tmp_path, monkeypatch,
                                                                         capsys, damage, message):
    """``info`` said "loads here: yes" for a package with missing or junk libraries (validate then failed "does
    not load" and left torch's /tmp/aotinductor_* folders behind): the libraries are checked from the zip, so info
    says no (and why) and every stage refuses the package in one line without loading it."""
    _, _, path = cnn3_package
    bad = _with_libraries(path, str(tmp_path / 'bad.pt2'), damage)
    rc, out, _ = run_cli(capsys, 'info', bad, '--json')
    loads = json.loads(out)['loads_here']
    assert rc == 0 and loads.startswith('no: ') and message in loads, loads
    tmp = tmp_path / 'tmp'
    tmp.mkdir()
    monkeypatch.setenv('TMPDIR', str(tmp))  # where torch's loader would extract the package
    rc, _, err = run_cli(capsys, 'validate', bad, '--data', cifar_samples(), '--limit', '4')
    assert rc != 0 and message in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(DeployError, match=message):
        open_runtime('aoti', bad)
    assert not list(tmp.glob('aotinductor_*'))
    rc, out, _ = run_cli(capsys, 'info', path, '--json')
    assert rc == 0 and json.loads(out)['loads_here'] == 'yes'
