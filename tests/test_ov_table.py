"""``benchmarks/scripts/ov_table.py``, the README's OpenVINO table: goals are marked met only where both sides
timed the same INT8 file, and a run with AMX refused says so in the machine line."""
import importlib.util
import json
import os

import pytest

_PATH = os.path.join(os.path.dirname(__file__), '..', 'benchmarks', 'scripts', 'ov_table.py')


@pytest.fixture(scope='module')
def ov_table():
    spec = importlib.util.spec_from_file_location('ov_table', _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(net_pick: str, base_pick: str, amx_usable: bool) -> dict:
    speeds = {('ort', 'fp32'): (96.0, 100.0), ('openvino', 'int8'): (125.0, 100.0)}
    results = [{'runtime': rt, 'precision': prec, 'batch': 1, 'role': role, 'images_per_s': v}
               for (rt, prec), pair in speeds.items() for role, v in zip(('target', 'compare'), pair)]
    return {'kind': 'timm-recal-bench', 'threads': {'torch_intra_op': 2},
            'machine': {'cpu_model': 'Some Xeon', 'cpu_isa': {'amx': True, 'vnni': True, 'amx_usable': amx_usable}},
            'models': {'target': {'name': 'se_net'}, 'compare': {'name': 'net'}},
            'settings': {'batches': [1], 'int8': {}}, 'results': results,
            'int8_pick': {'target': {'timed': net_pick}, 'compare': {'timed': base_pick}}}


def _table(ov_table, tmp_path, record) -> str:
    path = tmp_path / 'bench.json'
    path.write_text(json.dumps(record))
    return ov_table.markdown([str(path)])


def test_a_ratio_of_two_different_int8_files_is_not_counted_as_met(ov_table, tmp_path):
    mixed = _table(ov_table, tmp_path, _record('nncf', 'qdq', amx_usable=True))
    assert '| openvino | int8 (net NNCF / base QDQ) | 125 (100) | 1.25† | >= 0.90 |' in mixed
    assert '| ort | fp32 | 96 (100) | **0.96** | >= 0.95 |' in mixed
    assert 'not counted as met' in mixed and 'AMX denied' not in mixed
    same = _table(ov_table, tmp_path, _record('nncf', 'nncf', amx_usable=True))
    assert '| openvino | int8 (net NNCF / base NNCF) | 125 (100) | **1.25** | >= 0.90 |' in same
    assert '†' not in same


def test_a_run_with_amx_refused_says_so(ov_table, tmp_path):
    assert 'AMX denied to the process' in _table(ov_table, tmp_path, _record('qdq', 'qdq', amx_usable=False))


@pytest.mark.parametrize('marker, folder', [('ov-table', 'benchmarks/openvino'),
                                            ('ov-table-no-amx', 'benchmarks/openvino/xeon_no_amx')])
def test_readme_tables_match_the_committed_json(ov_table, marker, folder):
    """The README's two OpenVINO tables are the script's output for the committed JSON, not hand edits."""
    import glob
    root = os.path.join(os.path.dirname(__file__), '..')
    text = open(os.path.join(root, 'README.md')).read()
    start = text.index(f'<!-- {marker}:start')
    block = text[text.index('\n', start) + 1:text.index(f'<!-- {marker}:end -->')]
    files = sorted(glob.glob(os.path.join(root, folder, '*.json')))
    assert files and block == ov_table.markdown(files)
