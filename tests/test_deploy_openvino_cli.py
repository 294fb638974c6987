"""OpenVINO as a first-class runtime of the deploy commands (issue 12): ``bench``/``parity``/``validate``/``pipeline``
with ``--runtimes openvino`` at FP32/BF16/INT8 on a tiny gated net, BF16 per runtime (OpenVINO's hint, eager CPU
autocast, none in ONNX Runtime), the INT8 pick between our QDQ file and an NNCF IR, and the pipeline's
recommendation checked against its own bench numbers."""
import json
import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')
pytest.importorskip('openvino')
pytest.importorskip('nncf')

import timm  # noqa: E402
import timm_recal  # noqa: E402,F401
from timm_recal_deploy.errors import DeployError, NoNativePrecision  # noqa: E402
from timm_recal_deploy.images import bundled_samples_dir  # noqa: E402
from timm_recal_deploy.runtimes import native_bf16, open_runtime  # noqa: E402

from deploy_helpers import randomize_weights_, run_cli, sample_batch, saved_and_exported  # noqa: E402

NAME = 'se_cnn3'  # 3 convs at 32x32 with one SE gate: the fastest gated net
CIFAR = bundled_samples_dir({'input_size': (3, 32, 32)})
NATIVE = bool(native_bf16())
FAST = ['--batch', '1', '--warmup', '0', '--repeats', '1', '--min-time', '0']



@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A randomized ``se_cnn3`` saved as a state dict, and its FP32 export (the PyTorch side is rebuilt from it)."""
    d = tmp_path_factory.mktemp('ovcli')
    return (*saved_and_exported(NAME, d, 'fp32.onnx'), d)


def test_bench_cli_openvino_every_precision(tiny, tmp_path, capsys):
    _, ckpt, _, _ = tiny
    out_json = tmp_path / 'bench.json'
    rc, out, err = run_cli(capsys, 'bench', NAME, '--checkpoint', ckpt, '--runtimes', 'eager,ort,openvino',
                        '--precision', 'fp32,bf16,int8', '--calib-images', 16, *FAST, '-o', out_json)
    assert rc == 0, err
    rec = json.loads(out_json.read_text())
    got = {(r['runtime'], r['precision']) for r in rec['results']}
    assert {('eager', 'fp32'), ('ort', 'fp32'), ('ort', 'int8'), ('openvino', 'fp32'), ('openvino', 'int8')} <= got
    assert ('ort', 'bf16') not in got and any('ort/bf16 skipped' in n for n in rec['notes'])
    if NATIVE:
        assert {('eager', 'bf16'), ('openvino', 'bf16')} <= got
    else:
        assert sum('bf16 not timed' in n for n in rec['notes']) == 2
    shapes = {r['key'].split('/', 1)[1]: r['compiled_shape'] for r in rec['runners']}
    assert shapes['openvino/fp32'] == 'fixed' and shapes['ort/fp32'] == 'dynamic' and shapes['eager/fp32'] == 'dynamic'
    assert rec['settings']['int8'] == {'calib_data': 'bundled samples', 'calib_images': 16, 'calib_method': 'minmax',
                                       'fp32_layers': 0, 'gates_float': False, 'gate_fusion': None,
                                       'symmetric': False}  # the recipe of the INT8 files it timed
    pick = rec['int8_pick']['target']
    assert set(pick['candidates']) == {'qdq', 'nncf'} and pick['timed'] in ('qdq', 'nncf')
    assert 'calibration images' in pick['agreement_images']  # 16 of the 50 samples: measured on the other 34
    ov_int8 = next(r for r in rec['results'] if (r['runtime'], r['precision']) == ('openvino', 'int8'))
    assert ov_int8['variant'] == pick['timed']
    if pick['passed']:
        passed = {k: v for k, v in pick['candidates'].items() if v['passed']}
        assert pick['timed'] == max(passed, key=lambda k: passed[k]['images_per_s'])
    else:
        assert pick['timed'] == 'qdq' and any('did not pass' in n for n in rec['notes'])
    isa = rec['machine']['cpu_isa']
    assert rec['machine']['cpu_model'] and set(isa) >= {'amx', 'amx_bf16', 'amx_int8', 'avx512_bf16', 'vnni'}
    assert rec['machine']['versions']['openvino']


def test_parity_and_validate_cli_openvino(tiny, tmp_path, capsys):
    _, _, onnx_path, _ = tiny
    rc, out, err = run_cli(capsys, 'parity', onnx_path, '--runtimes', 'openvino', '--json')
    assert rc == 0, out + err
    res = json.loads(out)
    assert res['passed'] and res['runtime']['runtime'] == 'openvino' and res['runtime']['inference_precision'] == 'f32'
    if NATIVE:
        rc, out, err = run_cli(capsys, 'parity', onnx_path, '--runtimes', 'openvino', '--precision', 'bf16', '--json')
        res = json.loads(out)
        assert res['precision'] == 'bf16' and res['runtime']['inference_precision'] == 'bf16'
        assert 0 < res['max_rel_err'] < res['tolerances']['rtol']  # really reduced, within the BF16 gate
    rc, out, err = run_cli(capsys, 'parity', onnx_path, '--runtimes', 'ort', '--precision', 'bf16')
    assert rc != 0 and 'ONNX Runtime has no BF16' in err
    rc, out, err = run_cli(capsys, 'validate', onnx_path, '--data', CIFAR, '--runtimes', 'openvino', '--json')
    assert rc == 0, err
    ov = json.loads(out)
    rc, out, err = run_cli(capsys, 'validate', onnx_path, '--data', CIFAR, '--json')
    ort = json.loads(out)
    assert ov['runtime']['runtime'] == 'openvino' and ov['n_images'] == ort['n_images'] > 0
    assert ov['top1'] == ort['top1']


def test_eager_bf16_is_cpu_autocast(tiny, monkeypatch):
    model = tiny[0]
    x = sample_batch(NAME, 32, n=8).numpy()
    ref = open_runtime('eager', model, precision='fp32', input_size=(3, 32, 32))(x)
    if NATIVE:
        runner = open_runtime('eager', model, precision='bf16', input_size=(3, 32, 32))
        out = runner(x)
        assert runner.describe()['autocast'] == 'torch.autocast(cpu, bfloat16)' and runner.precision == 'bf16'
        assert 0 < np.abs(out - ref).max() <= 0.1 * np.abs(ref).max()
    import timm_recal_deploy.eager_runtime as er
    monkeypatch.setattr(er, 'native_bf16', lambda: False)
    with pytest.raises(NoNativePrecision, match='no native BF16'):
        open_runtime('eager', model, precision='bf16', input_size=(3, 32, 32))
    with pytest.raises(DeployError, match='ONNX Runtime has no BF16'):
        open_runtime('ort', str(tiny[2]), precision='bf16')


def test_bench_notes_bf16_without_native_support(tiny, monkeypatch):
    """A CPU without native BF16: a note per runtime, never a timing of the emulation."""
    import timm_recal_deploy.eager_runtime as er
    import timm_recal_deploy.openvino_runtime as ovr
    from timm_recal_deploy.bench import bench
    monkeypatch.setattr(er, 'native_bf16', lambda: False)
    monkeypatch.setattr(ovr, '_cpu_flags', lambda: {'avx512f'})
    rec = bench(str(tiny[2]), runtimes=['openvino'], precisions=['fp32', 'bf16'], batches=(1,), warmup=0,
                repeats=1, min_time_s=0.0).to_dict()
    assert {(r['runtime'], r['precision']) for r in rec['results']} == {('openvino', 'fp32')}
    assert any('openvino/bf16 not timed' in n and 'no native BF16' in n for n in rec['notes'])


def test_pipeline_cli_openvino_recommendation(tiny, tmp_path, capsys):
    _, ckpt, _, _ = tiny
    out_dir = tmp_path / 'run'
    rc, out, err = run_cli(capsys, 'pipeline', NAME, '--checkpoint', ckpt, '-o', out_dir, '--runtimes',
                        'eager,ort,openvino', '--precision', 'fp32,bf16,int8', '--batch', '1,2', '--quick',
                        '--exporter', 'legacy', '--no-validate', '--json')
    record = json.loads(out)
    parity = {(p['runtime'], p['precision']): p['result']['passed'] for p in record['parity']}
    assert {('ort', 'fp32'), ('ort', 'int8'), ('openvino', 'fp32'), ('openvino', 'int8')} <= set(parity)
    assert ('openvino', 'bf16') in parity if NATIVE else ('openvino', 'bf16') not in parity
    assert ('ort', 'bf16') not in parity
    assert (out_dir / 'parity_openvino_fp32.json').is_file() and (out_dir / 'parity_fp32.json').is_file()
    bench = record['bench']
    pick = bench['int8_pick']['target']
    recs = record['recommendation']
    assert [r['batch'] for r in recs] == [1, 2]
    from timm_recal_deploy.timing import paired_ratio
    for r in recs:  # the fastest eligible bench result by the ratio tables' paired ratio to ORT FP32, same run
        results = {(x['runtime'], x['precision']): x for x in bench['results']
                   if x['role'] == 'target' and x['batch'] == r['batch']}
        rows = {k: paired_ratio(x, results[('ort', 'fp32')])[0] for k, x in results.items()}

        def eligible(rt, p):
            if rt == 'eager':
                return p == 'fp32'  # the PyTorch reference; autocast is not parity-checked
            if (rt, p) == ('openvino', 'int8'):  # the timed file must pass the agreement pick too
                return parity[(rt, p)] and bool(pick['passed']) and parity[('openvino', 'fp32')]
            return parity.get((rt, p), False)
        best = max((k for k in rows if eligible(*k)), key=rows.get)
        assert (r['runtime'], r['precision']) == best, (r, rows, parity)
        assert r['images_per_s'] == results[best]['images_per_s']
        assert r['speedup_vs_ort_fp32'] == round(rows[best], 3)
        assert r['variant'] == (pick['timed'] if best == ('openvino', 'int8') else None)
    md = (out_dir / 'report.md').read_text()
    assert md.rstrip().split('\n## ')[-1].startswith('Recommendation')
    assert f"timed the **{pick['timed']}** file" in md
    saved = json.loads((out_dir / 'report.json').read_text())
    assert saved['recommendation'] == recs and saved['bench']['int8_pick']['target']['timed'] == pick['timed']
    assert rc == (0 if record['passed'] else 1)


def _gated_export(tmp_path):
    from timm_recal_deploy.export import export_onnx
    model = randomize_weights_(timm.create_model('seresnet50', layers=[1, 1, 1, 1]), sample_batch('seresnet50', 64))
    return export_onnx('seresnet50', str(tmp_path / 'se.onnx'), model=model, exporter='legacy', img_size=64)['output']


def test_quantize_cli_gate_flags_and_symmetric(tiny, tmp_path, capsys):
    import onnx
    from onnx import numpy_helper
    from timm_recal_deploy.gate_fusion import find_gates
    fp32 = str(tiny[2])
    gates = find_gates(onnx.load(fp32))
    assert gates
    out = tmp_path / 'gf.onnx'
    rc, _, err = run_cli(capsys, 'quantize', fp32, '-o', out, '--calib-data', CIFAR, '--calib-images', 16,
                      '--gates-float', '--json')
    assert rc == 0, err
    q = onnx.load(str(out))
    muls = {g['mul'].name: g['gate'] for g in gates}
    gate_muls = [n for n in q.graph.node if n.name in muls]
    assert len(gate_muls) == len(muls) and all(muls[n.name] in n.input for n in gate_muls)  # no DQ in front
    from timm_recal_deploy.metadata import read_metadata
    how = read_metadata(str(out))['quantization']
    assert how['gates_float'] and set(muls) <= set(how['float_node_names'])

    sym = tmp_path / 'sym.onnx'
    rc, _, err = run_cli(capsys, 'quantize', fp32, '-o', sym, '--calib-data', CIFAR, '--calib-images', 16,
                         '--symmetric')
    assert rc == 0, err
    q = onnx.load(str(sym))
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    zps = [inits[n.input[2]] for n in q.graph.node if n.op_type == 'QuantizeLinear' and len(n.input) > 2]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    assert read_metadata(str(sym))['quantization']['activation_type'] == 'int8'


def test_quantize_gate_fusion_keeps_the_function(tmp_path):
    """``gate_fusion='early_squeeze'``: every gate rewritten (recorded), and the INT8 file is as close to FP32 as
    the plain INT8 file (the rewrite is exact; only quantization error remains)."""
    from timm_recal_deploy.gate_fusion import find_gates
    from timm_recal_deploy.ort_runtime import create_session
    from timm_recal_deploy.quantize import quantize_int8
    import onnx
    fp32 = _gated_export(tmp_path)
    gates = len(find_gates(onnx.load(fp32)))
    fused = quantize_int8(fp32, str(tmp_path / 'es.onnx'), None, calib_images=16, gate_fusion='early_squeeze')
    plain = quantize_int8(fp32, str(tmp_path / 'plain.onnx'), None, calib_images=16)
    assert fused.quantization['gate_fusion'] == {'rewrite': 'early_squeeze', 'rewrites': {'early_squeeze': gates}}
    x = sample_batch('seresnet50', 64, n=8).numpy()

    def run(path):
        return create_session(path, threads=1).run(None, {'input': x})[0]
    ref = run(fp32)
    err_fused = np.abs(run(fused.output) - ref).max() / np.abs(ref).max()
    err_plain = np.abs(run(plain.output) - ref).max() / np.abs(ref).max()
    assert 0 < err_fused < 0.25 and err_fused <= 2 * err_plain + 0.02, (err_fused, err_plain)
    with pytest.raises(DeployError, match='--gate-fusion takes early_squeeze'):
        quantize_int8(fp32, str(tmp_path / 'x.onnx'), None, calib_images=4, gate_fusion='fold_all')


def test_bench_int8_only_still_picks_against_fp32(tiny):
    """``--precision int8`` alone: FP32 is not timed, but the pick still has an NNCF candidate and its reference."""
    from timm_recal_deploy.bench import bench
    model, _, _, _ = tiny
    rec = bench(NAME, model=model, runtimes=['openvino'], precisions=['int8'], batches=(1,), warmup=0, repeats=1,
                min_time_s=0.0, calib_images=16).to_dict()
    assert {(r['runtime'], r['precision']) for r in rec['results']} == {('openvino', 'int8')}
    pick = rec['int8_pick']['target']
    assert set(pick['candidates']) == {'qdq', 'nncf'} and all('images_per_s' in c for c in pick['candidates'].values())
    assert not any('no FP32 file' in n for n in rec['notes'])
