"""``timm-recal pipeline``: every stage on a tiny model and its base with the bundled images, the report
(tables, a valid PNG), the output-folder rule, and the embedded default."""
import json
import os
import struct

import pytest

pytest.importorskip('onnxruntime')

from timm_recal_deploy import pipeline as pl  # noqa: E402
from timm_recal_deploy.errors import DeployError, OutputExistsError  # noqa: E402
from deploy_helpers import local_paths_in  # noqa: E402

TARGET, BASE = 'se_cnn3', 'cnn3'  # 3 conv layers at 32x32 (CIFAR-10 classes: the bundled samples are labelled)
FAST_BENCH = dict(batches=(1, 2), runtimes=('eager', 'ort'), warmup=0, repeats=1, min_time_s=0.0)


def _png_size(path):
    with open(path, 'rb') as f:
        head = f.read(24)
    assert head[:8] == b'\x89PNG\r\n\x1a\n', f'{path} is not a PNG'
    return struct.unpack('>II', head[16:24])


def test_pipeline_tiny_model_and_base(tmp_path):
    """One run (exports are the slow part), checked stage by stage below."""
    out = tmp_path / 'out'
    messages = []
    record = pl.pipeline(TARGET, str(out), compare=BASE, precisions=('fp32', 'int8'), log=messages.append,
                         **FAST_BENCH)
    run = record, out, messages
    _check_files_and_progress(run)
    _check_parity_and_validation(run)
    _check_bench(run)
    _check_report(run)


def _check_files_and_progress(run):
    record, out, messages = run
    names = set(os.listdir(out))
    for role_prefix, arch in (('', TARGET), ('compare_', BASE)):
        assert {f'{role_prefix}{arch}.onnx', f'{role_prefix}{arch}_int8.onnx', f'{role_prefix}export.json',
                f'{role_prefix}parity_fp32.json', f'{role_prefix}parity_int8.json', f'{role_prefix}quantize_int8.json',
                f'{role_prefix}validate_pytorch.json', f'{role_prefix}validate_fp32.json',
                f'{role_prefix}validate_int8.json'} <= names
    assert {'bench.json', 'report.md', 'report.json', 'throughput.png'} <= names
    stages = [(s['stage'], s['role'], s['precision']) for s in record['stages']]
    # stage by stage (export -> quantize -> parity -> validate -> bench), each for the target, then the base
    assert stages[:6] == [('export', 'target', 'fp32'), ('export', 'compare', 'fp32'),
                          ('quantize', 'target', 'int8'), ('quantize', 'compare', 'int8'),
                          ('parity', 'target', 'fp32'), ('parity', 'target', 'int8')]
    assert stages[-1][0] == 'bench' and len(stages) == 2 * (1 + 1 + 2 + 3) + 1
    # progress: one numbered line per stage, then the report
    numbered = [m for m in messages if m.startswith('[')]
    assert numbered[0].startswith(f'[1/{len(stages) + 1}] export target fp32')
    assert numbered[-1].startswith(f'[{len(stages) + 1}/{len(stages) + 1}] report')


def _check_parity_and_validation(run):
    record, out, _ = run
    by = {(p['role'], p['precision']): p['result'] for p in record['parity']}
    assert by[('target', 'fp32')]['passed'] and by[('compare', 'fp32')]['passed']
    assert by[('target', 'int8')]['calibration']['calib_split'] is True  # disjoint halves of the bundled images
    assert record['passed'] == all(s['status'] in ('ok', 'passed') for s in record['stages'])
    from timm_recal_deploy.metadata import read_metadata
    meta = read_metadata(str(out / f'{TARGET}_int8.onnx'))
    assert meta['precision'] == 'int8' and meta['quantization']['calib_images'] > 0
    on_disk = json.loads((out / 'parity_int8.json').read_text())
    assert on_disk['max_abs_err'] == pytest.approx(by[('target', 'int8')]['max_abs_err'])
    top1 = {(v['role'], v['precision']): v['result']['top1'] for v in record['validate']}
    assert top1[('target', 'pytorch')] == pytest.approx(top1[('target', 'fp32')])  # same module, same images


def _check_bench(run):
    record, out, _ = run
    bench = json.loads((out / 'bench.json').read_text())
    keys = {(r['role'], r['runtime'], r['precision'], r['batch']) for r in bench['results']}
    assert keys == {(role, rt, p, b) for role in ('target', 'compare') for b in (1, 2)
                    for rt, p in (('eager', 'fp32'), ('ort', 'fp32'), ('ort', 'int8'))}
    ips = {(r['role'], r['runtime'], r['precision'], r['batch']): r['images_per_s'] for r in bench['results']}
    for q in bench['ratios']:
        if q['kind'] == 'target_vs_compare':
            rt, p = q['numerator'].split('/')[1:]
            assert q['value'] == pytest.approx(ips[('target', rt, p, q['batch'])] / ips[('compare', rt, p, q['batch'])])
    assert {q['kind'] for q in bench['ratios']} == {'ort_vs_best_eager', 'int8_vs_fp32', 'target_vs_compare'}


def _check_report(run):
    record, out, _ = run
    md = (out / 'report.md').read_text()
    assert md.startswith(f'# Deploy report: {TARGET} vs {BASE}')
    for heading in ('## Models and files', '## Parity', '## Validation', '## Benchmark', '### Throughput',
                    '### Latency per batch (ms)', '### Ratios', '## Stages'):
        assert heading in md
    assert '![throughput vs batch size](throughput.png)' in md
    assert f'| {TARGET} | int8 |' in md and f'| {BASE} | int8 |' in md  # parity rows of both models
    assert f'`{TARGET}_int8.onnx`' in md and f'`compare_{BASE}_int8.onnx`' in md
    assert 'random weights' in md  # neither tiny model has trained weights, and the report says so
    width, height = _png_size(out / 'throughput.png')
    assert width > 400 and height > 300
    saved = json.loads((out / 'report.json').read_text())
    assert saved['kind'] == 'timm-recal-pipeline' and saved['report']['png'].endswith('throughput.png')
    assert saved['bench']['results'] == json.loads(json.dumps(record['bench']['results']))


def test_pipeline_refuses_non_empty_folder(tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'keep.txt').write_text('x')
    with pytest.raises(OutputExistsError, match='--force'):
        pl.pipeline(TARGET, str(out))
    assert os.listdir(out) == ['keep.txt']
    with pytest.raises(DeployError, match='is a file'):
        pl.pipeline(TARGET, str(out / 'keep.txt'))
    with pytest.raises(DeployError, match='fp32'):
        pl.pipeline(TARGET, str(tmp_path / 'new'), precisions=('int8',))
    assert not (tmp_path / 'new').exists()  # bad arguments are refused before the folder is made


def test_cli_pipeline_refusal(tmp_path, capsys):
    from timm_recal.cli import main
    (tmp_path / 'f').write_text('x')
    assert main(['pipeline', TARGET, '-o', str(tmp_path)]) == 2
    assert '--force' in capsys.readouterr().err


def test_default_model(monkeypatch):
    spec, note = pl.default_model()
    if spec.startswith('local-dir:'):
        assert os.path.isfile(os.path.join(spec.split(':', 1)[1], 'config.json')) and note is None
    else:
        assert spec == pl.FALLBACK_MODEL and 'no trained default model' in note
    monkeypatch.setattr(pl, 'DEFAULT_MODEL_DIR', 'no_such_folder')
    spec, note = pl.default_model()
    assert spec == pl.FALLBACK_MODEL and 'no_such_folder' in note


@pytest.mark.slow
def test_cli_default_pipeline_runs_offline(tmp_path):
    """The README's main job: ``timm-recal pipeline -o DIR`` on the embedded default."""
    from timm_recal.cli import main
    out = tmp_path / 'default'
    rc = main(['pipeline', '-o', str(out)])
    saved = json.loads((out / 'report.json').read_text())
    assert rc == 0 and saved['passed'] is True, saved['failed_stages']  # the main job passes, not just runs
    assert not saved['failed_stages'] and all(p['result']['passed'] for p in saved['parity'])
    assert saved['settings']['quick'] is True and (out / 'throughput.png').is_file()
    assert not local_paths_in(str(out)), local_paths_in(str(out))  # every JSON and ONNX file is fit to publish


def test_stages_option_aliases_and_force_replaces_the_folder(tmp_path, capsys):
    """``--stages`` chooses the stages (export always runs); ``--no-validate``/``--no-bench`` are aliases;
    ``--force`` replaces the whole folder, so nothing of an earlier run (stale compare files) survives."""
    from timm_recal.cli import main
    out = tmp_path / 'p'
    record = pl.pipeline(TARGET, str(out), stages='parity,report', precisions=('fp32',), exporter='legacy')
    assert [s['stage'] for s in record['stages']] == ['export', 'parity'] and record['passed']
    assert sorted(os.listdir(out)) == sorted([f'{TARGET}.onnx', 'export.json', 'parity_fp32.json', 'report.md',
                                              'report.json'])
    assert record['settings']['stages'] == ['export', 'parity', 'report']
    (out / 'compare_stale.json').write_text('{}')
    with pytest.raises(OutputExistsError, match='--force'):
        pl.pipeline(TARGET, str(out), stages='parity', precisions=('fp32',), exporter='legacy')
    argv = ['pipeline', TARGET, '-o', str(out), '--force', '--no-validate', '--no-bench', '--precision', 'fp32',
            '--exporter', 'legacy', '--json']
    assert main(argv) == 0
    saved = json.loads(capsys.readouterr().out)
    assert [s['stage'] for s in saved['stages']] == ['export', 'parity']
    assert not (out / 'compare_stale.json').exists() and (out / 'report.md').is_file()
    assert not any(name.startswith('.') for name in os.listdir(tmp_path))  # no temporary folder left beside it
    assert main(['pipeline', TARGET, '-o', str(tmp_path / 'bad'), '--stages', 'export,engrave']) == 2
    assert 'engrave' in capsys.readouterr().err and not (tmp_path / 'bad').exists()


def test_serving_stages_engine_skipped_without_tensorrt_and_triton_written(tmp_path, monkeypatch, capsys):
    """``--stages ...,engine,triton`` (not in the default set): without TensorRT/GPU the engine stage is recorded
    as skipped with the reason and the run still passes; the triton stage writes a repository whose config
    parses into Triton's ``ModelConfig``; report.md and report.json carry both."""
    pytest.importorskip('tritonclient.grpc.model_config_pb2', reason='needs tritonclient[grpc] (the [test] extra)')
    from timm_recal.cli import main
    from timm_recal_deploy import tensorrt_build
    from timm_recal_deploy.options import DEFAULT_PIPELINE_STAGES
    assert 'engine' not in DEFAULT_PIPELINE_STAGES and 'triton' not in DEFAULT_PIPELINE_STAGES
    monkeypatch.setattr(tensorrt_build, 'import_tensorrt', lambda: (None, "ImportError: No module named 'tensorrt'"))
    monkeypatch.setattr(tensorrt_build, 'cuda_device', lambda index=0: None)
    out = tmp_path / 'p'
    argv = ['pipeline', TARGET, '-o', str(out), '--stages', 'export,engine,triton,report', '--precision', 'fp32',
            '--exporter', 'legacy', '--backend', 'openvino', '--max-batch-size', '8', '--json']
    assert main(argv) == 0
    rec = json.loads(capsys.readouterr().out)
    stages = {s['stage']: s for s in rec['stages']}
    assert stages['engine']['status'] == 'skipped' and 'TensorRT is not installed' in stages['engine']['reason']
    assert rec['engine'] == [{'runtime': 'trt', 'precision': 'fp32', 'status': 'skipped',
                              'reason': stages['engine']['reason']}]
    assert stages['triton']['status'] == 'ok' and rec['passed']
    tri = rec['triton']
    assert tri['backend'] == 'openvino' and tri['validated_with_model_config_pb2'] is True
    from timm_recal.outputs import public_path  # --json prints what report.json records (issue 21)
    assert tri['repository'] == public_path(out / 'triton') and (out / 'triton' / TARGET / 'config.pbtxt').is_file()
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2
    cfg = text_format.Parse((out / 'triton' / TARGET / 'config.pbtxt').read_text(), model_config_pb2.ModelConfig())
    assert cfg.max_batch_size == 8 and cfg.backend == 'openvino'
    report = (out / 'report.md').read_text()
    assert '## TensorRT engines' in report and 'skipped: runtime trt unavailable' in report
    assert '## Triton model repository' in report and "Triton's `ModelConfig`" in report
    saved = json.loads((out / 'report.json').read_text())
    assert saved['triton']['model_name'] == TARGET and saved['engine'][0]['status'] == 'skipped'
    # --backend tensorrt without an engine: the triton stage is skipped too, with the engine stage's reason
    assert main(argv[:-5] + ['--backend', 'tensorrt', '--force']) == 0
    rec = json.loads((out / 'report.json').read_text())
    assert rec['triton']['status'] == 'skipped' and 'TensorRT is not installed' in rec['triton']['reason']
    assert not (out / 'triton').exists()


@pytest.mark.parametrize('extra,message', [
    (['--stages', 'triton', '--preferred-batch-sizes', '128'],
     'preferred batch sizes [128] must lie in 1..max_batch_size (64)'),
    (['--stages', 'triton', '--max-batch-size', '0', '--preferred-batch-sizes', '4'], 'need batching'),
    (['--stages', 'triton', '--backend', 'pytorch', '--preferred-batch-sizes', '4'],
     'do not apply to --backend pytorch'),
    (['--stages', 'triton', '--backend', 'tensorrt'], 'add engine to --stages'),
    (['--compare', 'nonexist_model'], "unknown model 'nonexist_model'"),
    (['--stages', 'export'], "unknown model 'nonexist_target'"),
])
def test_options_the_stages_would_refuse_are_checked_before_the_export(extra, message, tmp_path, capsys,
                                                                       monkeypatch):
    """A triton option the stage refuses (or a backend it must skip without the engine stage) and a misspelt
    --compare were found only after the target's export: the run failed (or exited 1 with a folder written)
    after the slow work. Now one line, before it, and no folder."""
    from timm_recal.cli import main
    monkeypatch.setattr(pl, 'export_source', lambda *a, **k: pytest.fail('exported before the options were checked'))
    monkeypatch.setattr(pl, 'open_source', lambda *a, **k: pytest.fail('loaded before the options were checked'))
    target = 'nonexist_target' if 'nonexist_target' in message else TARGET
    assert main(['pipeline', target, '-o', str(tmp_path / 'p'), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / 'p').exists()


def _bench_rows(repeats_by_key, batch=1):
    import statistics
    return [{'role': 'target', 'model': 'm', 'runtime': rt, 'precision': p, 'batch': batch,
             'images_per_s': statistics.median(reps), 'images_per_s_repeats': reps}
            for (rt, p), reps in repeats_by_key.items()]


def test_recommendation_uses_the_ratio_tables_paired_ratios():
    """The recommendation divided two medians while the ratio tables hold the median of the per-repeat ratios:
    here INT8's median is below ORT FP32's, yet it was faster in every repeat but one (the machine changed speed
    between repeats), and the table says 1.10x; the recommendation picked ORT FP32 ('0.90x' for INT8)."""
    from timm_recal_deploy.recommend import recommend, recommendation_markdown
    from timm_recal_deploy.timing import compute_ratios
    results = _bench_rows({('ort', 'fp32'): [100.0, 200.0, 300.0], ('ort', 'int8'): [120.0, 180.0, 330.0],
                           ('eager', 'fp32'): [50.0, 90.0, 150.0]})
    parity = [{'role': 'target', 'runtime': 'ort', 'precision': p, 'result': {'passed': True}} for p in ('fp32', 'int8')]
    table = next(q for q in compute_ratios(results) if q['kind'] == 'int8_vs_fp32')
    assert table['value'] == pytest.approx(1.1) and table['ratio_of_medians'] == pytest.approx(0.9)
    rec, = recommend({'parity': parity, 'bench': {'results': results, 'ratios': compute_ratios(results)}})
    assert (rec['runtime'], rec['precision']) == ('ort', 'int8')
    assert rec['speedup_vs_ort_fp32'] == round(table['value'], 3) and rec['estimator'] == table['estimator']
    assert [c['precision'] for c in rec['considered']][:2] == ['int8', 'fp32']
    assert 'the median of the per-repeat ratios' in recommendation_markdown([rec])
    # a record from before bench kept per-repeat numbers: the ratio of the medians, and the text says so
    old = [{k: v for k, v in r.items() if k != 'images_per_s_repeats'} for r in results]
    rec, = recommend({'parity': parity, 'bench': {'results': old}})
    assert (rec['runtime'], rec['precision']) == ('ort', 'fp32') and rec['estimator'] == 'ratio of medians'
    assert rec['speedup_vs_ort_fp32'] == 1.0
    assert 'the ratio of the medians: this record holds no per-repeat numbers' in recommendation_markdown([rec])
