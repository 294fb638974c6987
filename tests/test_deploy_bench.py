"""``timm-recal bench``: interleaving, statistics and ratios from recorded times (fake clocks, no timing
assertions), the -o/--force rule, execution-provider gating, and one small end-to-end run on CPU."""
import json
import os
import struct

import pytest

pytest.importorskip('onnxruntime')

from timm_recal_deploy.bench import (bench, compute_ratios, onnx_precision, parse_batches,  # noqa: E402
                                     summarize_times, time_interleaved)
from timm_recal_deploy.errors import DeployError, OutputExistsError  # noqa: E402
from timm_recal_deploy.malloc_policy import DEFAULT_POLICY, KEPT_POLICY  # noqa: E402
from timm_recal_deploy.timing import _cpuinfo  # noqa: E402

TINY = 'cnn3'  # 3 conv layers, 32x32: exports in seconds


class FakeClock:
    """A clock that only moves when a fake call 'runs' for its fixed duration."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def call_taking(self, seconds: float, log=None, key=None):
        def fn():
            if log is not None:
                log.append(key)
            self.now += seconds
        return fn


def test_time_interleaved_alternates_order():
    log = []
    clock = FakeClock()
    calls = [(k, clock.call_taking(0.01, log, k)) for k in ('a', 'b', 'c')]
    windows = time_interleaved(calls, warmup=1, repeats=4, min_time_s=0.0, min_iters=1, clock=clock)
    assert log[:3] == ['a', 'b', 'c']  # warm-up, once each
    assert log[3:] == ['a', 'b', 'c', 'c', 'b', 'a', 'a', 'b', 'c', 'c', 'b', 'a']
    assert {k: len(w) for k, w in windows.items()} == {'a': 4, 'b': 4, 'c': 4}


def test_window_runs_until_min_time_and_min_iters():
    clock = FakeClock()
    windows = time_interleaved([('x', clock.call_taking(0.3))], warmup=0, repeats=2, min_time_s=1.0,
                               min_iters=1, clock=clock)
    assert [len(w) for w in windows['x']] == [4, 4]  # 4 * 0.3 s is the first total >= 1 s
    windows = time_interleaved([('x', clock.call_taking(0.3))], warmup=0, repeats=1, min_time_s=0.0,
                               min_iters=7, clock=clock)
    assert len(windows['x'][0]) == 7


def test_summarize_from_fake_times():
    windows = [[0.010, 0.010], [0.020, 0.020, 0.020, 0.020], [0.010, 0.030]]
    s = summarize_times(windows, batch=4)
    assert s['images_per_s_repeats'] == pytest.approx([400.0, 200.0, 200.0])
    assert s['images_per_s'] == pytest.approx(200.0)  # median over repeats
    assert s['iterations'] == 8
    # latencies sorted: 10,10,10,20,20,20,20,30 ms; linear-interpolated percentiles
    assert s['latency_ms']['p50'] == pytest.approx(20.0)
    assert s['latency_ms']['p90'] == pytest.approx(23.0)
    assert s['latency_ms']['p99'] == pytest.approx(29.3)
    assert s['latency_ms']['min'] == pytest.approx(10.0)
    with pytest.raises(ValueError):
        summarize_times([[]], 1)


def _res(role, runtime, precision, batch, ips, model='m'):
    return dict(role=role, model=model, runtime=runtime, precision=precision, batch=batch, images_per_s=ips)


def test_ratios_from_recorded_throughput():
    results = [
        _res('target', 'eager', 'fp32', 1, 10.0), _res('target', 'eager_cl', 'fp32', 1, 12.0),
        _res('target', 'eager_cl', 'amp_bf16', 1, 50.0),  # not FP32: never the eager baseline
        _res('target', 'ort', 'fp32', 1, 18.0), _res('target', 'ort', 'int8', 1, 63.0),
        _res('target', 'ort', 'fp16', 1, 9.0),
        _res('compare', 'eager', 'fp32', 1, 20.0, 'base'), _res('compare', 'ort', 'fp32', 1, 30.0, 'base'),
    ]
    ratios = compute_ratios(results)
    got = {(q['kind'], q['role'] if 'role' in q else q['runtime'], q['numerator'], q['denominator']): q['value']
           for q in ratios}
    assert got[('ort_vs_best_eager', 'target', 'target/ort/fp32', 'target/eager_cl/fp32')] == pytest.approx(1.5)
    assert got[('int8_vs_fp32', 'target', 'target/ort/int8', 'target/ort/fp32')] == pytest.approx(3.5)
    assert got[('fp16_vs_fp32', 'target', 'target/ort/fp16', 'target/ort/fp32')] == pytest.approx(0.5)
    assert got[('ort_vs_best_eager', 'compare', 'compare/ort/fp32', 'compare/eager/fp32')] == pytest.approx(1.5)
    assert got[('target_vs_compare', 'eager', 'target/eager/fp32', 'compare/eager/fp32')] == pytest.approx(0.5)
    assert got[('target_vs_compare', 'ort', 'target/ort/fp32', 'compare/ort/fp32')] == pytest.approx(0.6)
    assert len(ratios) == 6  # nothing paired across runtimes or with a missing side


def test_ratio_is_the_median_of_per_repeat_ratios():
    from timm_recal_deploy.timing import paired_ratio
    # the machine stepped from fast to slow between repeats 1 and 2 for both sides: each repeat's two windows
    # agree (ratio 1), while the medians fall on different steps (300 / 150 = 2)
    num = dict(_res('target', 'aoti', 'fp32', 1, 300.0), images_per_s_repeats=[300.0, 300.0, 150.0])
    den = dict(_res('compare', 'aoti', 'fp32', 1, 150.0), images_per_s_repeats=[300.0, 150.0, 150.0])
    assert paired_ratio(num, den) == (pytest.approx(1.0), 'median of per-repeat ratios')
    (q,) = compute_ratios([num, den])
    assert q['value'] == pytest.approx(1.0) and q['ratio_of_medians'] == pytest.approx(2.0)
    assert q['estimator'] == 'median of per-repeat ratios'
    # records without per-repeat numbers (or with unequal repeats) keep the ratio of the medians
    assert paired_ratio(_res('t', 'ort', 'fp32', 1, 30.0), _res('c', 'ort', 'fp32', 1, 20.0)) == (
        pytest.approx(1.5), 'ratio of medians')
    assert paired_ratio(dict(num, images_per_s_repeats=[300.0]), den)[1] == 'ratio of medians'


def test_ratio_pairs_two_single_precision_files():
    ratios = compute_ratios([_res('target', 'ort', 'int8', 16, 80.0), _res('compare', 'ort', 'fp32', 16, 20.0)])
    assert [(q['kind'], q['numerator'], q['denominator'], q['value']) for q in ratios] == [
        ('target_vs_compare', 'target/ort/int8', 'compare/ort/fp32', pytest.approx(4.0))]


def test_parse_batches():
    assert parse_batches('1,16') == (1, 16)
    assert parse_batches(' 4, 1 ,4') == (4, 1)
    assert parse_batches([2, 8]) == (2, 8)
    for bad in ('', '0', '1,x', '-2'):
        with pytest.raises(DeployError, match='--batch'):
            parse_batches(bad)


def test_output_refused_before_any_work(tmp_path):
    out = tmp_path / 'bench.json'
    out.write_text('keep me')
    with pytest.raises(OutputExistsError, match='--force'):
        bench('no_such_model_anywhere', output=str(out))
    assert out.read_text() == 'keep me'


def test_gpu_providers_are_gated():
    with pytest.raises(DeployError, match='needs --device cuda'):
        bench(TINY, runtimes=['ort_cuda'], batches=[1])
    with pytest.raises(DeployError, match='unknown runtime'):
        bench(TINY, runtimes=['tensorflow'], batches=[1])


def test_cuda_and_tensorrt_providers_run_when_present():
    import onnxruntime as ort
    import torch
    if not torch.cuda.is_available():
        pytest.skip('no CUDA device: the CUDA/TensorRT execution-provider runners cannot run here')
    present = [rt for rt, ep in (('ort_cuda', 'CUDAExecutionProvider'), ('ort_trt', 'TensorrtExecutionProvider'))
               if ep in ort.get_available_providers()]
    if not present:
        pytest.skip('this onnxruntime build has no CUDA/TensorRT execution provider (onnxruntime-gpu needed)')
    rec = bench(TINY, batches=[1, 2], runtimes=['eager'] + present, device='cuda', warmup=1, repeats=1,
                min_time_s=0.0, min_iters=1)
    assert {r['runtime'] for r in rec['results']} == {'eager', *present}


@pytest.fixture(scope='module')
def tiny_onnx(tmp_path_factory):
    """cnn3 exported once (FP32) and quantized (INT8, a few bundled images) for the end-to-end tests."""
    from timm_recal_deploy.export import export_onnx
    from timm_recal_deploy.quantize import quantize_int8
    d = tmp_path_factory.mktemp('bench_onnx')
    fp32 = export_onnx(TINY, str(d / 'cnn3.onnx'))['output']
    int8 = quantize_int8(fp32, str(d / 'cnn3_int8.onnx'), None, calib_images=8, progress=False)['output']
    return fp32, int8


def test_onnx_precision_from_metadata(tiny_onnx):
    fp32, int8 = tiny_onnx
    assert onnx_precision(fp32) == 'fp32'
    assert onnx_precision(int8) == 'int8'


def _check_ratios_match_results(rec):
    import statistics
    res = {f"{r['role']}/{r['runtime']}/{r['precision']}@{r['batch']}": r for r in rec['results']}
    assert rec['ratios']
    for q in rec['ratios']:
        num, den = res[f"{q['numerator']}@{q['batch']}"], res[f"{q['denominator']}@{q['batch']}"]
        per_repeat = [a / b for a, b in zip(num['images_per_s_repeats'], den['images_per_s_repeats'])]
        assert q['value'] == pytest.approx(statistics.median(per_repeat), rel=1e-12)
        assert q['ratio_of_medians'] == pytest.approx(num['images_per_s'] / den['images_per_s'], rel=1e-12)


def test_bench_model_with_onnx_files_end_to_end(tiny_onnx, tmp_path):
    fp32, int8 = tiny_onnx
    out = str(tmp_path) + '/runs/'
    rec = bench(TINY, onnx=[fp32, int8], batches='1,2', runtimes=['eager', 'eager_cl', 'ort'], warmup=1,
                repeats=2, min_time_s=0.0, min_iters=2, threads=1, output=out)
    path = tmp_path / 'runs' / 'bench.json'
    assert rec['output'] == str(path)
    on_disk = json.loads(path.read_text())
    assert on_disk['results'] == json.loads(json.dumps(rec['results']))
    keys = {(r['runtime'], r['precision'], r['batch']) for r in rec['results']}
    assert keys == {(rt, p, b) for b in (1, 2) for rt, p in
                    (('eager', 'fp32'), ('eager_cl', 'fp32'), ('ort', 'fp32'), ('ort', 'int8'))}
    for r in rec['results']:
        assert r['iterations'] == 4 and len(r['images_per_s_repeats']) == 2
        lat = r['latency_ms']
        assert 0 < lat['min'] <= lat['p50'] <= lat['p90'] <= lat['p99']
    kinds = {(q['kind'], q['batch']) for q in rec['ratios']}
    assert kinds == {(k, b) for k in ('ort_vs_best_eager', 'int8_vs_fp32') for b in (1, 2)}
    _check_ratios_match_results(rec)
    assert rec['threads']['torch_intra_op'] == 1 and rec['threads']['ort_intra_op'] == 1
    assert rec['threads']['malloc'] == DEFAULT_POLICY
    assert rec['machine']['cpu_model'] and rec['machine']['versions']['onnxruntime']
    assert rec['models']['target']['onnx'] == {'fp32': fp32, 'int8': int8}
    with pytest.raises(OutputExistsError):
        bench(TINY, onnx=[fp32], output=str(path))
    bench(TINY, onnx=[fp32], runtimes=['ort'], batches=[1], warmup=0, repeats=1, min_time_s=0.0, output=str(path),
          force=True)


def test_bench_onnx_vs_onnx_compare(tiny_onnx):
    fp32, int8 = tiny_onnx
    rec = bench(int8, compare=fp32, batches=[2], warmup=0, repeats=3, min_time_s=0.0, min_iters=1)
    assert any('the PyTorch runtimes skipped' in n for n in rec['notes'])
    assert {(r['role'], r['runtime'], r['precision']) for r in rec['results']} == {
        ('target', 'ort', 'int8'), ('compare', 'ort', 'fp32')}
    assert [q['kind'] for q in rec['ratios']] == ['target_vs_compare']
    _check_ratios_match_results(rec)


def test_bench_times_the_two_sides_of_a_ratio_back_to_back():
    logged = []
    rec = bench(TINY, compare='resnet10t', runtimes=['eager', 'eager_cl'], batches=[1], warmup=0, repeats=3,
                min_time_s=0.0, min_iters=1, img_size=32, log=logged.append)
    (order,) = [m for m in logged if m.startswith('bench: batch 1: timing ')]
    assert order == ('bench: batch 1: timing target/eager/fp32, compare/eager/fp32, '
                     'target/eager_cl/fp32, compare/eager_cl/fp32')
    # records stay grouped by side, as the tables show them
    assert [(r['role'], r['runtime']) for r in rec['results']] == [
        ('target', 'eager'), ('target', 'eager_cl'), ('compare', 'eager'), ('compare', 'eager_cl')]
    assert {q['runtime'] for q in rec['ratios'] if q['kind'] == 'target_vs_compare'} == {'eager', 'eager_cl'}
    assert 'back to back' in rec['settings']['order']
    _check_ratios_match_results(rec)


def test_bench_rejects_bad_inputs(tiny_onnx, tmp_path):
    fp32, _ = tiny_onnx
    with pytest.raises(DeployError, match='not found'):
        bench(str(tmp_path / 'missing.onnx'))
    with pytest.raises(DeployError, match='exported for 32x32'):
        bench(fp32, img_size=64)
    with pytest.raises(DeployError, match='ONNX file already'):
        bench(fp32, onnx=[fp32])
    with pytest.raises(DeployError, match='two fp32'):
        bench(TINY, onnx=[fp32, fp32], runtimes=['ort'])
    with pytest.raises(DeployError, match='need --compare'):
        bench(TINY, compare_onnx=[fp32])


def test_cli_bench_writes_json_and_refuses_overwrite(tiny_onnx, tmp_path, capsys):
    from timm_recal.cli import main
    fp32, int8 = tiny_onnx
    out = tmp_path / 'b.json'
    args = ['bench', int8, '--compare', fp32, '--batch', '1', '--warmup', '0', '--repeats', '1', '--min-time', '0',
            '-o', str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert '| Model | Runtime | Precision | b1 |' in printed and 'target_vs_compare' in printed
    assert json.loads(out.read_text())['kind'] == 'timm-recal-bench'
    assert main(args) == 2
    assert '--force' in capsys.readouterr().err
    assert main(args + ['--force']) == 0


def test_report_table_and_plot_from_bench_record(tmp_path):
    from timm_recal_deploy.report import bench_table_markdown, throughput_plot, bench_results_markdown
    results = []
    for role, scale in (('target', 1.0), ('compare', 1.25)):
        for b in (1, 16):
            for rt, p, ips in (('eager', 'fp32', 10), ('eager_cl', 'fp32', 12), ('ort', 'fp32', 18),
                               ('ort', 'int8', 54)):
                results.append(dict(_res(role, rt, p, b, ips * scale * b ** 0.5),
                                    latency_ms={'p50': 1.0, 'p90': 2.0, 'p99': 3.0}, iterations=5))
    rec = {'kind': 'timm-recal-bench', 'results': results, 'ratios': compute_ratios(results),
           'models': {'target': {'name': 'ab_resnet50', 'input_size': [3, 224, 224]},
                      'compare': {'name': 'resnet50', 'input_size': [3, 224, 224]}},
           'settings': {'batches': [1, 16]}, 'machine': {'cpu_model': 'Test CPU', 'cpu_flags': ['avx512_vnni']}}
    table = bench_table_markdown([rec])
    lines = [ln for ln in table.splitlines() if ln.startswith('| ab_resnet50') or ln.startswith('| resnet50')]
    assert len(lines) == 4
    assert '| ab_resnet50 | 224x224 | 1 | 12.00 (CL) | 18.00 | 54.00 | 1.50x | 3.00x |' in table
    assert 'Test CPU (avx512_vnni)' in table
    details = bench_results_markdown(rec)
    assert '### Latency per batch (ms)' in details and 'int8_vs_fp32' in details
    png = throughput_plot(rec, str(tmp_path / 't.png'))
    with open(png, 'rb') as f:
        head = f.read(24)
    assert head[:8] == b'\x89PNG\r\n\x1a\n'
    width, height = struct.unpack('>II', head[16:24])
    assert width > 400 and height > 300
    with pytest.raises(ValueError, match='bench records'):
        bench_table_markdown([{'kind': 'other'}])


def test_report_table_command(tmp_path, capsys):
    from timm_recal_deploy.report import main
    timed = dict(latency_ms={'p50': 1.0, 'p90': 1.0, 'p99': 1.0}, iterations=10)  # a whole record: report checks
    rec = {'kind': 'timm-recal-bench', 'models': {'target': {'name': 'x', 'input_size': [3, 32, 32]}},
           'settings': {'batches': [1], 'warmup': 1, 'repeats': 1, 'min_time_s': 0.1, 'device': 'cpu'},
           'results': [dict(_res('target', 'eager', 'fp32', 1, 5.0), **timed),
                       dict(_res('target', 'ort', 'fp32', 1, 10.0), **timed)]}
    rec['ratios'] = compute_ratios(rec['results'])
    path = tmp_path / 'x.json'
    path.write_text(json.dumps(rec))
    assert main(['table', str(path)]) == 0
    assert '| x | 32x32 | 1 | 5.00 (NCHW) | 10.00 | - | 2.00x | - |' in capsys.readouterr().out
    assert main(['table', str(tmp_path / 'nope.json')]) == 2


@pytest.mark.skipif(not os.path.isfile('/proc/stat'), reason='/proc/stat (Linux) only')
def test_busy_cpus_sees_other_work_now():
    """The start-of-run check samples CPU use now, not the 1-minute load average that remembers the
    previous benchmark: a process spinning during the window shows up as about one busy CPU."""
    import subprocess
    import sys
    import time
    from timm_recal_deploy.bench import busy_cpus
    spin = subprocess.Popen([sys.executable, '-c', 'while True: pass'])
    try:
        time.sleep(0.3)
        busy = busy_cpus(0.5)
    finally:
        spin.kill()
        spin.wait()
    assert busy is not None and busy >= 0.7, busy


def test_amx_usable_needs_the_flag():
    from timm_recal_deploy.timing import amx_usable
    assert amx_usable(['avx512_bf16', 'avx512_vnni']) is False


@pytest.mark.skipif(not (_cpuinfo()['cpu_isa'] or {}).get('amx'), reason='needs a CPU with AMX (amx_tile in /proc/cpuinfo)')
def test_deny_amx_is_recorded_by_bench_and_refuses_only_amx(tmp_path):
    """``benchmarks/scripts/deny_amx.py`` (issue 12's no-AMX stand-in) refuses the AMX permission request and
    nothing else, and ``machine_info`` records the refusal, so a benchmark run under it cannot pass for an AMX run."""
    import subprocess
    import sys
    script = os.path.join(os.path.dirname(__file__), '..', 'benchmarks', 'scripts', 'deny_amx.py')
    probe = ('import ctypes, json\n'
             'from timm_recal_deploy.timing import machine_info\n'
             'libc = ctypes.CDLL(None, use_errno=True)\n'
             'mask = ctypes.c_uint64(0)\n'
             # ARCH_GET_XCOMP_PERM (0x1022): another arch_prctl request, which the filter must let through
             'get_ok = libc.syscall(158, 0x1022, ctypes.byref(mask)) == 0\n'
             # ARCH_GET_XCOMP_SUPP (0x1021): does this kernel support the AMX tile data (bit 18) at all
             'supp = ctypes.c_uint64(0)\n'
             'kernel = libc.syscall(158, 0x1021, ctypes.byref(supp)) == 0 and bool(supp.value >> 18 & 1)\n'
             'print(json.dumps({"isa": machine_info()["cpu_isa"], "get_ok": get_ok, "kernel": kernel}))\n')
    denied = subprocess.run([sys.executable, script, sys.executable, '-c', probe], capture_output=True, text=True,
                            timeout=120)
    assert denied.returncode == 0, denied.stderr
    got = json.loads(denied.stdout.strip().splitlines()[-1])
    assert got['isa']['amx'] is True and got['isa']['amx_usable'] is False
    assert got['get_ok'] is True
    plain = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0, plain.stderr
    # without the filter the answer is the kernel's: usable exactly where the kernel supports the tile data
    got = json.loads(plain.stdout.strip().splitlines()[-1])
    assert got['isa']['amx_usable'] is got['kernel']


def test_keep_freed_memory_from_the_command_line_is_recorded(capsys, tmp_path):
    from deploy_helpers import run_cli
    out = tmp_path / 'bench.json'
    rc, _, err = run_cli(capsys, 'bench', TINY, '--runtimes', 'eager', '--batch', '1', '--warmup', '0',
                         '--repeats', '1', '--min-time', '0', '--keep-freed-memory', '-o', out)
    assert rc == 0, err
    assert json.loads(out.read_text())['threads']['malloc'] == KEPT_POLICY


def test_bench_output_is_json_and_never_an_input(tiny_onnx, tmp_path, capsys):
    """``bench m.onnx -o m.onnx --force`` replaced the model it had just timed with JSON: -o must end in .json (as
    parity's and validate's) and name no input, refused before any timing, the input untouched."""
    from timm_recal.cli import main
    import shutil
    model = tmp_path / 'm.onnx'
    shutil.copyfile(tiny_onnx[0], model)
    before = model.read_bytes()
    rc = main(['bench', str(model), '--runtimes', 'ort', '--batch', '1', '--repeats', '1', '--warmup', '0',
               '--min-time', '0', '-o', str(model), '--force'])
    err = capsys.readouterr().err
    assert rc != 0 and "should end with '.json'" in err and len(err.strip().splitlines()) == 1
    assert model.read_bytes() == before
    named_json = tmp_path / 'weights.json'  # an input that does end in .json (a checkpoint here) is refused too
    named_json.write_bytes(b'{}')
    with pytest.raises(DeployError, match='is an input of this run'):
        bench(TINY, checkpoint=str(named_json), runtimes=['eager'], batches=[1], output=str(named_json), force=True)
    assert named_json.read_bytes() == b'{}'


def test_bench_of_an_onnx_file_refuses_what_cannot_apply(tiny_onnx, capsys):
    """An ONNX file runs at its own precision with its own weights, never under autocast: --precision it cannot
    run, --amp and --checkpoint/--use-ema were accepted and ignored (or misrecorded); now one line, before any
    timing, the way validate refuses them. What is valid stays valid."""
    from timm_recal.cli import main
    fp32, int8 = tiny_onnx
    fast = dict(batches=[1], warmup=0, repeats=1, min_time_s=0.0)
    with pytest.raises(DeployError, match=r'is a fp32 ONNX file, not --precision int8'):
        bench(fp32, precisions=['int8'], runtimes=['ort'], **fast)  # was: timed fp32, recorded precisions ['fp32']
    with pytest.raises(DeployError, match=r'is a int8 ONNX file, not --precision fp32'):
        bench(int8, precisions=['fp32'], runtimes=['ort'], **fast)
    with pytest.raises(DeployError, match=r'--amp applies to a MODEL'):
        bench(fp32, amp=True, runtimes=['ort'], **fast)  # was: settings.amp true, nothing under autocast
    with pytest.raises(DeployError, match=r'--amp applies to a MODEL'):
        bench(int8, compare=fp32, amp=True, **fast)
    with pytest.raises(DeployError, match=r'--checkpoint/--use-ema apply to a MODEL'):
        bench(fp32, checkpoint='missing.pth', runtimes=['ort'], **fast)  # was: accepted, even a missing file
    with pytest.raises(DeployError, match=r'--checkpoint/--use-ema apply to a MODEL'):
        bench(fp32, use_ema=True, runtimes=['ort'], **fast)
    with pytest.raises(DeployError, match=r'--compare-checkpoint apply to a MODEL'):
        bench(TINY, compare=fp32, compare_checkpoint='missing.pth', runtimes=['ort'], **fast)
    rc = main(['bench', fp32, '--precision', 'int8', '--batch', '1'])
    err = capsys.readouterr().err
    assert rc != 0 and len(err.strip().splitlines()) == 1 and 'not --precision int8' in err
    # valid: the file's own precision among others (a note says what it skips), the MODEL side's --amp
    rec = bench(fp32, precisions=['fp32', 'int8'], runtimes=['ort'], **fast)
    assert [(r['runtime'], r['precision']) for r in rec.results] == [('ort', 'fp32')]
    assert rec.settings['precisions'] == ['fp32'] and any('int8 not timed for it' in n for n in rec.notes)
    rec = bench(TINY, compare=fp32, amp=True, runtimes=['eager', 'ort'], **fast)
    assert rec.settings['amp'] is True and any(r['precision'].startswith('amp_') for r in rec.results)
    rec = bench(TINY, amp=True, runtimes=['ort'], **fast)  # nothing ran under autocast: recorded so, and said
    assert rec.settings['amp'] is False and any('--amp not applied' in n for n in rec.notes)


def test_bench_of_an_fp32_onnx_file_at_bf16_times_only_bf16(tiny_onnx, monkeypatch):
    """bf16 is a runtime precision of the FP32 file (OpenVINO's hint): --precision bf16 stays valid, and times bf16
    alone (it timed fp32 too, which was not asked). A fake runtime row stands in for OpenVINO."""
    from timm_recal_deploy import runtimes as rt
    from timm_recal_deploy.ort_runtime import open_ort
    fp32, _ = tiny_onnx

    class Fake(rt.Runner):
        name = 'fake_bf16'

        def __init__(self, path, precision):
            self.inner, self.precision = open_ort(path, precision='fp32', threads=1), precision
            self.input_size = self.inner.input_size

        def __call__(self, images):
            return self.inner(images)

    def open_fake(path, *, precision='fp32', threads=None, **kw):
        return Fake(path, precision)
    monkeypatch.setitem(rt.RUNTIMES, 'fake_bf16', rt.RuntimeSpec(
        'fake_bf16', 'fake', 'onnx', 'ort_runtime:open_ort', 'onnxruntime', 'deploy', precisions=('fp32', 'bf16')))
    real = rt._opener
    monkeypatch.setattr(rt, '_opener', lambda spec: open_fake if spec.word == 'fake_bf16' else real(spec))
    rec = bench(fp32, precisions=['bf16'], runtimes=['fake_bf16'], batches=[1], warmup=0, repeats=1, min_time_s=0.0)
    assert [(r['runtime'], r['precision']) for r in rec.results] == [('fake_bf16', 'bf16')]
