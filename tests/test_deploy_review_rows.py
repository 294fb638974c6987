"""Review fixes: the report's INT8 pick lines, the vs-best-eager ratio kind and bench's extra-numbers text are
read from the runtime rows (not runtime names), with the output for today's rows pinned; the pipeline validates an
INT8 file only on the images it was not calibrated on, and records how many images each precision saw."""
import dataclasses
import json

import pytest

pytest.importorskip('onnxruntime')

from timm_recal_deploy import runtimes  # noqa: E402
from timm_recal_deploy.bench import BenchResult  # noqa: E402
from timm_recal_deploy.errors import DeployError  # noqa: E402
from timm_recal_deploy.images import scan_images  # noqa: E402
from timm_recal_deploy.runtimes import RUNTIMES, RuntimeSpec  # noqa: E402
from deploy_helpers import cifar_samples, run_cli  # noqa: E402

_PICK = {'timed': 'nncf', 'reason': 'fastest passing', 'agreement_images': '500 held-out images',
         'candidates': {'qdq': {'agreement': 0.995, 'images_per_s': 100.0},
                        'nncf': {'agreement': 0.991, 'images_per_s': 150.0}}}


def _bench_record(**fields):
    return {'kind': 'timm-recal-bench', 'models': {'target': {'name': 'm'}}, **fields}


def test_int8_pick_lines_take_the_label_of_the_artifact_row(monkeypatch):
    """The line named 'OpenVINO' in code; now the label of the row whose ``artifact`` hook made the pick (the one
    the record names, else the table's row with that hook, for records made before it named one)."""
    from timm_recal_deploy.report import _int8_pick_lines
    line = ('INT8 of m: timed the **nncf** file (fastest passing; qdq: 99.50% agreement, 100.0 img/s, nncf: 99.10% '
            'agreement, 150.0 img/s; agreement on 500 held-out images).')
    assert _int8_pick_lines(_bench_record(int8_pick={'target': _PICK})) == [f'- OpenVINO CPU {line}', '']
    monkeypatch.setitem(RUNTIMES, 'openvino', dataclasses.replace(RUNTIMES['openvino'], label='Renamed OV'))
    assert _int8_pick_lines(_bench_record(int8_pick={'target': _PICK}))[0] == f'- Renamed OV {line}'
    monkeypatch.setitem(RUNTIMES, 'pickrt', RuntimeSpec('pickrt', 'Picking runtime', 'onnx', 'ort_runtime:open_ort',
                                                        'onnxruntime', 'deploy', artifact='runtimes:fake_pick'))
    named = dict(_PICK, runtime='pickrt', precision='int8')
    assert _int8_pick_lines(_bench_record(int8_pick={'target': named}))[0] == f'- Picking runtime {line}'


def test_vs_best_eager_kind_is_the_rows_ratio_name(monkeypatch):
    """Every runtime word starting with 'ort' became 'ort_vs_best_eager'; now the row's ``ratio_name`` decides:
    today's names are unchanged, and a new row that merely starts with 'ort' keeps its own."""
    from timm_recal_deploy.timing import compute_ratios, vs_best_eager_kind
    assert {w: vs_best_eager_kind(w) for w in RUNTIMES if not RUNTIMES[w].reference} == {
        'ort': 'ort_vs_best_eager', 'ort_cuda': 'ort_vs_best_eager', 'ort_trt': 'ort_vs_best_eager',
        'openvino': 'openvino_vs_best_eager', 'trt': 'trt_vs_best_eager', 'inductor': 'inductor_vs_best_eager',
        'aoti': 'aoti_vs_best_eager'}
    monkeypatch.setitem(RUNTIMES, 'orthrus', RuntimeSpec('orthrus', 'Orthrus', 'onnx', 'ort_runtime:open_ort',
                                                         'onnxruntime', 'deploy'))
    assert vs_best_eager_kind('orthrus') == 'orthrus_vs_best_eager'
    results = [dict(role='target', model='m', runtime=rt, precision='fp32', batch=1, images_per_s=v)
               for rt, v in (('eager', 10.0), ('eager_cl', 20.0), ('ort', 30.0), ('ort_cuda', 40.0))]
    assert [(q['kind'], q['numerator']) for q in compute_ratios(results)] == [
        ('ort_vs_best_eager', 'target/ort/fp32'), ('ort_vs_best_eager', 'target/ort_cuda/fp32')]


_TRT_NUMBERS = [{'key': 'target/trt/fp32', 'model': 'm', 'results': [{
    'batch': 16, 'throughput_images_per_s': 1234.56, 'throughput_qps': 77.16,
    'latency_ms': {'p50': 1.0, 'p90': 1.25, 'p99': 1.5},
    'gpu_compute_ms': {'p50': 0.5, 'p90': 0.625, 'p99': 0.75},
    'gpu_with_transfers_ms': {'p50': 0.75, 'p90': 0.875, 'p99': 1.0}}]}]
_TRT_TEXT = ('\ntarget/trt/fp32 batch 16: throughput 1234.6 images/s (77.2 qps); latency p50/p90/p99 '
             '1.000/1.250/1.500 ms; GPU compute p50/p90/p99 0.500/0.625/0.750 ms; with H2D+D2H 0.750/0.875/1.000 ms')


def _fake_bench(**extra):
    def bench(target, options=None, **kw):
        return BenchResult(models={'target': {'name': 'm'}}, settings={'batches': [16]}, threads={}, machine={},
                           runners=[], results=[], ratios=[], notes=[], **extra)
    return bench


def test_bench_text_shows_each_rows_extra_numbers(monkeypatch, capsys):
    """``bench``'s text read ``r.tensorrt`` by name; now each row with ``extra_numbers`` renders its own through
    its ``numbers_text`` hook. TensorRT's trtexec lines are pinned unchanged."""
    from timm_recal_deploy import bench as bench_mod
    monkeypatch.setattr(bench_mod, 'bench', _fake_bench(tensorrt=_TRT_NUMBERS))
    rc, out, _ = run_cli(capsys, 'bench', 'cnn3', '--runtimes', 'eager')
    assert rc == 0 and out.endswith(_TRT_TEXT + '\n')
    assert out.count('target/trt/fp32 batch 16') == 1
    monkeypatch.setattr(bench_mod, 'bench', _fake_bench())  # no numbers: nothing after the tables
    rc, out, _ = run_cli(capsys, 'bench', 'cnn3', '--runtimes', 'eager')
    assert rc == 0 and 'throughput' not in out.split('Settings:')[-1]
    # a new row's numbers (kept under the existing field here) show through its own hook, TensorRT's do not
    monkeypatch.setattr(runtimes, 'fake_text', lambda numbers: f"\nfake numbers: {len(numbers)}", raising=False)
    monkeypatch.setitem(RUNTIMES, 'trt', dataclasses.replace(RUNTIMES['trt'], numbers_text='runtimes:fake_text'))
    monkeypatch.setattr(bench_mod, 'bench', _fake_bench(tensorrt=_TRT_NUMBERS))
    rc, out, _ = run_cli(capsys, 'bench', 'cnn3', '--runtimes', 'eager')
    assert rc == 0 and out.endswith('\nfake numbers: 1\n') and 'GPU compute' not in out


def test_pipeline_validates_int8_without_its_calibration_images(tmp_path):
    """The validate stage measured the INT8 file on all of ``--data``, its calibration half included (optimistic
    top-1); now it leaves those images out, for every row of the model (the rows compare the same images), and
    the record says how many images each precision saw."""
    from timm_recal_deploy import pipeline as pl
    n = len(scan_images(cifar_samples())[0])
    out = tmp_path / 'out'
    record = pl.pipeline('cnn3', str(out), precisions=('fp32', 'int8'), stages=('quantize', 'validate', 'report'),
                         calib_images=8)
    by = {v['precision']: v for v in record['validate']}
    assert set(by) == {'pytorch', 'fp32', 'int8'}
    for p in ('pytorch', 'fp32', 'int8'):
        assert by[p]['calibration_images_excluded'] == 8
        assert by[p]['n_images'] == by[p]['result']['n_images'] == n - 8
    assert json.loads((out / 'validate_int8.json').read_text())['n_images'] == n - 8
    md = (out / 'report.md').read_text()
    assert 'cnn3: 8 calibration images left out' in md
    assert f'| cnn3 | int8 | {n - 8} |' in md and f'| cnn3 | fp32 | {n - 8} |' in md


def test_pipeline_refuses_calibration_data_that_overlaps_the_measured_images(tmp_path, capsys):
    """An INT8 file calibrated on ``--data`` itself would be validated on its calibration images: refused before
    the export, in one line, as standalone parity refuses it."""
    from timm_recal_deploy import pipeline as pl
    data = cifar_samples()
    with pytest.raises(DeployError, match='overlaps the measured images'):
        pl.pipeline('cnn3', str(tmp_path / 'a'), precisions=('fp32', 'int8'), data=data, calib_data=data)
    assert not (tmp_path / 'a').exists()
    rc, _, err = run_cli(capsys, 'pipeline', 'cnn3', '-o', tmp_path / 'b', '--precision', 'fp32,int8',
                         '--data', data, '--calib-data', data)
    assert rc != 0 and 'overlaps the measured images' in err and len(err.strip().splitlines()) == 1


def test_bench_notes_an_asked_precision_without_an_onnx_file(tmp_path):
    """``bench MODEL --onnx FP32.onnx --precision fp32,int8`` left INT8 out of every table without a word; now a
    note says which asked precision had no file among ``--onnx``."""
    from timm_recal_deploy.bench import bench
    from timm_recal_deploy.export import export_onnx
    fp32 = export_onnx('cnn3', str(tmp_path / 'cnn3.onnx'), exporter='legacy')['output']
    rec = bench('cnn3', onnx=[fp32], precisions=['fp32', 'int8'], runtimes=['ort'], batches=[1], warmup=0,
                repeats=1, min_time_s=0.0)
    assert {(r['runtime'], r['precision']) for r in rec['results']} == {('ort', 'fp32')}
    assert 'target: --onnx (cnn3.onnx) has no file for int8: not timed under the ONNX runtimes' in rec['notes']


@pytest.mark.parametrize('spec, name', [
    ('resnet50.a1_in1k', 'resnet50_a1_in1k.onnx'), ('hf-hub:org/repo', 'org_repo.onnx'),
    ('local-dir:weights/se_shufflenetv2_x0_5_cifar.cifar10', 'se_shufflenetv2_x0_5_cifar_cifar10.onnx'),
    ('local-dir:/home/alice/models/m/', 'm.onnx'), ('local-dir:../m', 'm.onnx'), (None, 'model.onnx')])
def test_default_export_name_of_a_folder_is_its_own_name(spec, name):
    """``export local-dir:/home/alice/m -o DIR/`` wrote ``_home_alice_m.onnx`` (a local path in a published file
    name; ``../m`` gave ``___m.onnx``); now the folder's own name."""
    from timm_recal_deploy.export import default_onnx_name
    assert default_onnx_name(spec) == name
