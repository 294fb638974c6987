"""Bad input to the deploy verbs gives a clear one-line error, a non-zero exit and no output (issue 11's deploy
items): opset range, label folders that are not the model's labels, an ONNX file paired with other weights,
options checked before any work, a corrupt image read by a DataLoader worker."""
import json
import os
import shutil

import pytest
import torch

pytest.importorskip('onnxruntime')

import timm  # noqa: E402
import timm_recal  # noqa: E402,F401
from timm_recal.cli import main  # noqa: E402

from deploy_helpers import cifar_samples, randomize_weights_, run_cli, sample_batch  # noqa: E402

NAME = 'cnn3'




@pytest.fixture(scope='module')
def two_checkpoints(tmp_path_factory):
    """Two differently randomized cnn3 checkpoints and the ONNX file exported from the first."""
    d = tmp_path_factory.mktemp('hard')
    paths = []
    for seed in (0, 1):
        model = randomize_weights_(timm.create_model(NAME), sample_batch(NAME, 32), seed=seed)
        paths.append(d / f'w{seed}.pth')
        torch.save(model.state_dict(), paths[-1])
    onnx_path = d / 'a.onnx'
    assert main(['export', NAME, '--checkpoint', str(paths[0]), '-o', str(onnx_path), '--exporter', 'legacy']) == 0
    return paths, onnx_path


def test_opset_out_of_range_is_refused_up_front(tmp_path, capsys):
    rc, _, err = run_cli(capsys, 'export', NAME, '--opset', '99', '-o', tmp_path / 'a.onnx')
    assert rc == 2 and '--opset 99 is outside 18..' in err and not os.listdir(tmp_path)
    rc, _, err = run_cli(capsys, 'export', tmp_path / 'x.onnx', '-o', tmp_path / 'b.onnx')
    assert rc == 2 and 'is an ONNX file already' in err


def test_recorded_opset_is_the_files(two_checkpoints):
    from timm_recal_deploy.metadata import load_onnx, read_metadata
    _, onnx_path = two_checkpoints
    proto = load_onnx(str(onnx_path))
    assert read_metadata(proto)['opset'] == {o.domain: o.version for o in proto.opset_import}['']


def _renamed_classes(root, names):
    """A copy of the bundled CIFAR samples whose class folders are called ``names``."""
    src = cifar_samples()
    for cls, name in zip(sorted(os.listdir(src)), names):
        shutil.copytree(os.path.join(src, cls), os.path.join(root, name))
    return root


def test_folders_that_are_not_the_models_labels_need_folder_order(two_checkpoints, tmp_path, capsys):
    _, onnx_path = two_checkpoints
    data = _renamed_classes(tmp_path / 'd', [f'class_{i}' for i in range(1, 11)])
    rc, _, err = run_cli(capsys, 'validate', onnx_path, '--data', data)
    assert rc == 2 and 'class_1' in err and 'airplane' in err and '--folder-order' in err
    rc, out, err = run_cli(capsys, 'validate', onnx_path, '--data', data, '--folder-order', '--json')
    assert rc == 0 and '"label_mode": "folder"' in out
    same = _renamed_classes(tmp_path / 'ok', ['airplane', 'automobile'])  # a subset of the labels: by name
    rc, out, _ = run_cli(capsys, 'validate', onnx_path, '--data', same, '--json')
    assert rc == 0 and '"label_mode": "labels"' in out


def test_onnx_file_of_other_weights_is_refused(two_checkpoints, capsys):
    (w0, w1), onnx_path = two_checkpoints
    rc, _, err = run_cli(capsys, 'parity', NAME, '--checkpoint', w1, '--onnx', onnx_path)
    assert rc == 2 and 'other weights' in err and 'weight hashes differ' in err
    rc, out, err = run_cli(capsys, 'parity', NAME, '--checkpoint', w0, '--onnx', onnx_path)
    assert rc == 0 and 'PASSED' in out, err
    rc, _, err = run_cli(capsys, 'bench', NAME, '--checkpoint', w1, '--onnx', onnx_path, '--runtimes', 'ort',
                      '--batch', '1', '--repeats', '1', '--warmup', '0', '--min-time', '0')
    assert rc == 2 and 'other weights' in err


def test_options_refused_before_work(two_checkpoints, tmp_path, capsys):
    _, onnx_path = two_checkpoints
    rc, _, err = run_cli(capsys, 'quantize', onnx_path, '-o', tmp_path / 'q.onnx', '--calib-data', cifar_samples(),
                      '--fp32-layers', '100000')
    assert rc == 2 and '--fp32-layers 100000' in err and not (tmp_path / 'q.onnx').exists()
    rc, _, err = run_cli(capsys, 'validate', onnx_path, '--data', cifar_samples(), '--device', 'cuda')
    assert rc == 2 and '--runtimes' in err
    (tmp_path / 'file').write_text('x')
    rc, _, err = run_cli(capsys, 'parity', onnx_path, '--keep-dir', tmp_path / 'file')
    assert rc == 2 and 'is a file' in err
    rc, _, err = run_cli(capsys, 'pipeline', NAME, '-o', tmp_path / 'p', '--runtimes', 'bogus')
    assert rc == 2 and 'unknown runtime' in err and not (tmp_path / 'p').exists()


def test_corrupt_image_with_dataloader_workers(two_checkpoints, tmp_path, capsys):
    _, onnx_path = two_checkpoints
    data = _renamed_classes(tmp_path / 'd', ['airplane'])
    (data / 'airplane' / 'broken.jpg').write_bytes(b'not a jpeg at all')
    # a real process, as users run it: DataLoader workers forked from a test worker leave torch's SIGCHLD
    # handler behind in that long-lived process
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, '-m', 'timm_recal.cli', 'validate', str(onnx_path), '--data', str(data),
                           '-j', '1'], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240)
    rc, err = proc.returncode, proc.stderr
    assert 'Traceback' not in err, err
    assert rc == 2 and 'cannot read image' in err and 'broken.jpg' in err and len(err.strip().splitlines()) == 1


def test_sigterm_during_export_keeps_the_old_file_and_leaves_no_temporaries(tmp_path):
    """A real process killed with SIGTERM while the exporter runs: the previous file (``--force``) is intact,
    and neither a temporary file beside it nor the exporter's temporary folder is left behind."""
    import signal
    import subprocess
    import sys
    import time
    out, tmp = tmp_path / 'm.onnx', tmp_path / 'tmp'
    out.write_bytes(b'old model')
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, '-m', 'timm_recal.cli', 'export', 'resnet18', '--img-size', '64',
                             '-o', str(out), '--force'], env={**os.environ, 'TMPDIR': str(tmp)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr.readline().startswith('exporting'), 'the exporter never started'  # its progress line
    assert proc.poll() is None, proc.communicate()
    time.sleep(0.5)  # inside torch.onnx.export
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.strip().endswith('interrupted'), err
    if out.read_bytes() != b'old model':  # the signal landed after the new file was complete: that file, whole
        import onnx
        onnx.checker.check_model(onnx.load(str(out)))
    assert sorted(os.listdir(tmp_path)) == ['m.onnx', 'tmp'] and os.listdir(tmp) == []


# --- issue 21 --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('argv', [
    ['bench', NAME, '--min-time', 'nan'], ['bench', NAME, '--min-time', 'inf'], ['bench', NAME, '--min-time=-inf'],
    ['parity', NAME, '--atol', 'nan'], ['parity', NAME, '--rtol', 'inf'], ['parity', NAME, '--min-top1', 'nan'],
    ['pipeline', NAME, '-o', 'OUT', '--min-time', 'inf'],
])
def test_non_finite_numbers_are_refused_at_parse_time(argv, tmp_path, capsys):
    """nan passes every comparison and inf makes a timing window endless: both are refused as the options are
    parsed (bench --min-time nan ran forever)."""
    argv = [str(tmp_path / 'p') if a == 'OUT' else a for a in argv]
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2 and 'must be a finite number' in err and not os.listdir(tmp_path)


def test_non_finite_min_time_refused_by_the_python_api_too():
    from timm_recal_deploy.bench import bench
    from timm_recal_deploy.errors import DeployError
    with pytest.raises(DeployError, match='--min-time must be finite'):
        bench(NAME, runtimes=['eager'], min_time_s=float('nan'))


@pytest.mark.parametrize('stages', ['', ',,', ' , '])
def test_empty_pipeline_stages_are_refused(stages, tmp_path, capsys):
    """``--stages ""`` ran the whole default pipeline (2 minutes, exit 0)."""
    rc, _, err = run_cli(capsys, 'pipeline', NAME, '-o', tmp_path / 'p', '--stages', stages)
    assert rc == 2 and '--stages: takes comma-separated stages from export,' in err
    assert not (tmp_path / 'p').exists()


@pytest.mark.parametrize('content', ['[]', '{}', '{"kind": "timm-recal-pipeline"}', '3', '"text"'])
@pytest.mark.parametrize('kind', ['table', 'details'])
def test_report_of_a_json_that_is_no_bench_record_is_one_line(kind, content, tmp_path, capsys):
    path = tmp_path / 'r.json'
    path.write_text(content)
    rc, _, err = run_cli(capsys, 'report', kind, path)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and 'is not a timm-recal bench record' in err, err


@pytest.fixture(scope='module')
def damaged_onnx(two_checkpoints, tmp_path_factory):
    """The exported file with its input_size, mean and std metadata values cut short (as a truncated copy or a
    hand edit leaves them): each still a string, no longer JSON."""
    import onnx
    _, onnx_path = two_checkpoints
    model = onnx.load(str(onnx_path))
    for p in model.metadata_props:
        if p.key in ('input_size', 'mean', 'std'):
            p.value = p.value[:5]
    path = tmp_path_factory.mktemp('damaged') / 'damaged.onnx'
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize('verb', ['validate', 'parity', 'bench', 'quantize', 'info'])
def test_damaged_metadata_is_one_line_naming_the_key(verb, damaged_onnx, two_checkpoints, tmp_path, capsys):
    """validate raised ``TypeError: unsupported operand type(s) for /: 'str' and 'int'``; every verb that reads
    the preprocessing names the bad key instead, and info shows the file with the damage listed."""
    (w0, _), _ = two_checkpoints
    argv = {'validate': ['--data', cifar_samples()], 'parity': ['--checkpoint', w0],
            'bench': ['--runtimes', 'ort', '--batch', '1', '--repeats', '1', '--warmup', '0', '--min-time', '0'],
            'quantize': ['-o', tmp_path / 'q.onnx', '--calib-data', cifar_samples()], 'info': []}[verb]
    rc, out, err = run_cli(capsys, verb, damaged_onnx, *argv)
    if verb == 'info':
        assert rc == 0 and "damaged metadata: 'input_size' is not [C, H, W] of positive integers (got '[3, 3')" in out
        return
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "damaged.onnx: damaged metadata: 'input_size' is not [C, H, W] of positive integers" in err
    assert not (tmp_path / 'q.onnx').exists()


def _calib_folder(tmp_path, kind):
    folder = tmp_path / kind
    if kind == 'empty':
        folder.mkdir()
    elif kind == 'not_images':
        (folder / 'cat').mkdir(parents=True)
        (folder / 'cat' / 'notes.txt').write_text('no image here')
    return folder


@pytest.mark.parametrize('kind,message', [('missing', 'data folder not found'), ('empty', 'no images found'),
                                          ('not_images', 'no images found')])
@pytest.mark.parametrize('verb', ['bench', 'bench openvino', 'pipeline', 'quantize'])
def test_bad_calibration_folder_is_refused_before_the_export(verb, kind, message, two_checkpoints, tmp_path,
                                                             capsys, monkeypatch):
    """``--calib-data`` that is missing, empty or holds no images: refused before the first slow step (bench and
    pipeline: the export; quantize: calibration), which the test turns into a failure."""
    import timm_recal_deploy.bench as bench_mod
    import timm_recal_deploy.pipeline as pipeline_mod
    import timm_recal_deploy.quantize as quantize_mod

    def slow_step(*args, **kwargs):
        raise AssertionError('the slow step started before the calibration folder was checked')
    for mod, name in ((bench_mod, 'export_source'), (pipeline_mod, 'export_source'),
                      (quantize_mod, '_quantize_graph')):
        monkeypatch.setattr(mod, name, slow_step)
    calib = _calib_folder(tmp_path, kind)
    _, onnx_path = two_checkpoints
    if verb == 'bench openvino':
        pytest.importorskip('openvino')
    argv = {'bench': ['bench', NAME, '--runtimes', 'ort', '--precision', 'fp32,int8'],
            'bench openvino': ['bench', NAME, '--runtimes', 'openvino', '--precision', 'bf16,int8'],
            'pipeline': ['pipeline', NAME, '-o', tmp_path / 'p', '--stages', 'export,quantize', '--exporter',
                         'legacy'],
            'quantize': ['quantize', onnx_path, '-o', tmp_path / 'q.onnx']}[verb]
    rc, _, err = run_cli(capsys, *argv, '--calib-data', calib)
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / 'p').exists() and not (tmp_path / 'q.onnx').exists()


@pytest.mark.parametrize('target', ['model', 'onnx'])
def test_batch_too_large_for_memory_is_refused_up_front(target, two_checkpoints, capsys, monkeypatch):
    """``bench --batch 100000`` ended in ONNX Runtime's allocation traceback or took most of the machine: a batch
    whose input and activations exceed the free memory is refused before the export, with what it needs."""
    import timm_recal_deploy.bench as bench_mod

    def slow_step(*args, **kwargs):
        raise AssertionError('exported before the batch size was checked')
    monkeypatch.setattr(bench_mod, 'export_source', slow_step)
    _, onnx_path = two_checkpoints
    rc, _, err = run_cli(capsys, 'bench', NAME if target == 'model' else onnx_path, '--runtimes', 'ort',
                         '--batch', '1,10000000')
    assert rc == 2 and err.strip().splitlines()[-1].startswith('timm-recal bench: error: '), err  # after progress
    assert '--batch 10000000 needs about' in err and 'per image' in err and 'the largest batch that could fit' in err


def test_memory_estimate_of_the_model_and_its_onnx_file_agree(two_checkpoints, monkeypatch):
    """The hook estimate of the module and the shape-inference estimate of its export measure the same layers;
    the check refuses exactly the batches above the free memory."""
    import timm_recal_deploy.memory as memory
    from timm_recal_deploy.errors import DeployError
    (w0, _), onnx_path = two_checkpoints
    model = timm.create_model(NAME)
    model.load_state_dict(torch.load(w0))
    eager = memory.model_footprint(model.eval(), (3, 32, 32))
    graph = memory.onnx_footprint(str(onnx_path), (3, 32, 32))
    assert eager.input_bytes == graph.input_bytes == 3 * 32 * 32 * 4
    assert 0.5 < eager.layer_bytes / graph.layer_bytes < 2, (eager, graph)
    monkeypatch.setattr(memory, 'available_bytes', lambda device: (20 * eager.per_image, 'test'))
    memory.check_batches_fit(eager, [1, 16, 20], 'cpu', 'cnn3')
    with pytest.raises(DeployError, match='--batch 21 needs about .* the largest batch that could fit is about 20'):
        memory.check_batches_fit(eager, [16, 21], 'cpu', 'cnn3')


def _without_dac_override() -> None:
    """``preexec_fn``: drop the capabilities that let root ignore file permissions (CAP_DAC_OVERRIDE,
    CAP_DAC_READ_SEARCH) from the child's bounding set, so a read-only folder is read-only to it as it is to
    every other user; the child keeps uid 0 and so can still reach the interpreter under /root."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), 'prctl(PR_CAPBSET_DROP) failed')


@pytest.mark.parametrize('verb', ['export', 'train', pytest.param('pipeline', marks=pytest.mark.slow)])
def test_read_only_output_folder_is_refused_up_front(verb, tmp_path):
    """A folder this user cannot write to: one line naming it, exit 2, before any work; an old file in it (export
    --force) is untouched. Root ignores permissions, so as root the command runs without that privilege."""
    import stat
    import subprocess
    import sys
    ro = tmp_path / 'ro'
    ro.mkdir()
    (ro / 'm.onnx').write_bytes(b'old model')
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    argv = {'export': ['export', NAME, '--exporter', 'legacy', '-o', str(ro / 'm.onnx'), '--force'],
            'train': ['train', '--model', 'cnn3', '--data-dir', cifar_samples(), '-o', str(ro / 'run')],
            'pipeline': ['pipeline', NAME, '-o', str(ro / 'p'), '--stages', 'export']}[verb]
    try:
        proc = subprocess.run([sys.executable, '-m', 'timm_recal_cli', *argv], capture_output=True, text=True,
                              timeout=300, preexec_fn=_without_dac_override if os.geteuid() == 0 else None)
    finally:
        ro.chmod(0o755)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]  # names the path the user gave, inside the read-only folder
    assert f'cannot write {ro}{os.sep}' in last and last.endswith('permission denied'), proc.stderr
    assert sorted(os.listdir(ro)) == ['m.onnx'] and (ro / 'm.onnx').read_bytes() == b'old model'


@pytest.mark.parametrize('argv', [['export', NAME, '-o', 'FILE/m.onnx'], ['validate', 'ONNX', '-o', 'FILE/m.json'],
                                  ['quantize', 'ONNX', '-o', 'FILE/q.onnx'], ['bench', 'ONNX', '-o', 'FILE/b.json'],
                                  ['pipeline', NAME, '-o', 'FILE/p']])
def test_output_under_a_regular_file_is_refused_up_front(argv, two_checkpoints, tmp_path, capsys):
    """The other folder no one can write into, as root too: a path under a regular file."""
    _, onnx_path = two_checkpoints
    (tmp_path / 'afile').write_text('x')
    argv = [a.replace('FILE', str(tmp_path / 'afile')).replace('ONNX', str(onnx_path)) for a in argv]
    extra = {'validate': ['--data', cifar_samples()], 'quantize': ['--calib-data', cifar_samples()]}.get(argv[0], [])
    rc, _, err = run_cli(capsys, *argv, *extra)
    assert rc == 2 and 'is a file, so' in err and os.listdir(tmp_path) == ['afile'], err


def _bench_record():
    """A whole bench record as `timm-recal bench -o` writes it (two batches, one runtime)."""
    results = [{'role': 'target', 'model': 'm', 'runtime': 'ort', 'precision': 'fp32', 'batch': b,
                'images_per_s': 100.0 * b, 'images_per_s_repeats': [100.0 * b] * 3,
                'latency_ms': {'p50': 1.0, 'p90': 1.5, 'p99': 2.0, 'mean': 1.1, 'min': 0.9}, 'iterations': 10}
               for b in (1, 4)]
    return {'kind': 'timm-recal-bench', 'models': {'target': {'spec': 'm.onnx', 'name': 'm', 'input_size': [3, 8, 8]}},
            'settings': {'batches': [1, 4], 'warmup': 3, 'repeats': 3, 'min_time_s': 0.1, 'device': 'cpu'},
            'machine': {}, 'threads': {}, 'results': results, 'ratios': [], 'notes': []}


@pytest.mark.parametrize('damage,field', [
    (lambda r: {'kind': 'timm-recal-bench'}, 'models is missing'),
    (lambda r: r.pop('models') and None, 'models is missing'),
    (lambda r: r['results'][0].update(images_per_s='fast'), 'results[0].images_per_s is "fast", expected a finite'),
    (lambda r: r['settings'].pop('warmup'), 'settings.warmup is missing'),
    (lambda r: r['results'][1]['latency_ms'].pop('p99'), 'results[1].latency_ms.p99 is missing'),
    (lambda r: r['results'][0].update(role='compare'), "results[0].role is 'compare', which models does not hold"),
    (lambda r: r['ratios'].append({'kind': 'x', 'batch': 1, 'numerator': 'a', 'denominator': 'b/c/d', 'value': 1}),
     'ratios[0].numerator is "a"'),
])
@pytest.mark.parametrize('kind', ['table', 'details'])
def test_report_refuses_a_record_missing_what_it_reads(kind, damage, field, tmp_path, capsys):
    """A record with its kind alone printed 'warm-up None calls ... device None' (exit 0); one without models an
    empty table while details showed rows; images_per_s "fast" was printed as "fast". Each field the report reads
    is checked: one line naming the file and the field."""
    path = tmp_path / 'r.json'
    path.write_text(json.dumps(_bench_record()))
    rc, out, err = run_cli(capsys, 'report', kind, path)
    assert rc == 0 and out.strip(), err  # the whole record is reported
    record = _bench_record()
    damaged = damage(record)
    path.write_text(json.dumps(damaged if isinstance(damaged, dict) else record))
    rc, out, err = run_cli(capsys, 'report', kind, path)
    assert rc == 2 and not out and len(err.strip().splitlines()) == 1, err
    assert f'{path} is not a whole timm-recal bench record: {field}' in err, err


def test_report_table_of_a_runtime_the_record_never_timed_is_one_line(tmp_path, capsys):
    """``report table --runtimes openvino`` of a record that timed ort printed a table of '-' (exit 0), as if
    OpenVINO had run and failed; now one line naming the file and the runtimes it holds."""
    path = tmp_path / 'r.json'
    path.write_text(json.dumps(_bench_record()))
    rc, out, err = run_cli(capsys, 'report', 'table', path, '--runtimes', 'openvino')
    assert rc == 2 and not out and len(err.strip().splitlines()) == 1, err
    assert f'{path} holds no openvino results (it timed ort); choose --runtimes ort' in err
    rc, out, err = run_cli(capsys, 'report', 'table', path)
    assert rc == 0 and '| m | 8x8 | 1 | - | 100.0 |' in out, err  # the runtime it timed: as before


def test_pipeline_report_summary_is_of_the_onnx_runtime_the_bench_ran():
    """A pipeline run with ``--runtimes eager,openvino`` had a bench summary of ORT columns, all '-'; the summary
    is now of the ONNX runtime the bench timed (ORT whenever it ran)."""
    from timm_recal_deploy.report import pipeline_report_markdown
    bench = _bench_record()
    bench['results'] = [dict(r, runtime='openvino') for r in bench['results']] + [
        dict(r, runtime='eager', images_per_s=r['images_per_s'] / 2) for r in bench['results']]
    record = {'model': 'm', 'model_name': 'm', 'passed': True, 'bench': bench}
    md = pipeline_report_markdown(record, None)
    summary = md[md.index('### Summary'):md.index('### Throughput')]
    assert '| OpenVINO CPU FP32 img/s |' in summary and '| m | 8x8 | 4 | 200.0 (NCHW) | 400.0 |' in summary
    assert 'ORT' not in summary
    bench['results'] += [dict(r, runtime='ort', images_per_s=1.0) for r in _bench_record()['results']]
    summary = pipeline_report_markdown(record, None)
    assert '| ORT FP32 img/s |' in summary and '| m | 8x8 | 4 | 200.0 (NCHW) | 1.00 |' in summary
