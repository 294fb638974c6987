"""Packaging: the built wheel carries its data; the README's model table matches the registry."""
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('wheel')
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(out),
                    str(ROOT)], check=True, capture_output=True)
    wheels = list(out.glob('timm_recal-*.whl'))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert 'timm_recal/__init__.py' in names
    assert 'timm_recal_deploy/__init__.py' in names  # deploy/ ships under its unique import name
    assert 'timm_recal_cli.py' in names  # the console script's module, outside the package (a Ctrl-C while it imports)
    assert not any(n.startswith('deploy/') for n in names)
    assert sum(n.startswith('timm_recal/assets/imagenet_samples/') and n.endswith('.jpg') for n in names) >= 10
    assert sum(n.startswith('timm_recal/assets/cifar10_samples/') and n.endswith('.jpg') for n in names) == 50
    assert 'timm_recal/model_cards/cifar10.md' in names
    assert 'timm_recal_deploy/data/trt_onnx_ops.json' in names  # the TensorRT operator tables (trt_ops)
    assert not any('/tests/' in n or n.startswith('tests/') for n in names)


def test_wheel_installs_into_clean_venv(wheel, tmp_path):
    """Install without dependencies into an empty venv and read the files and metadata from there."""
    env_dir = tmp_path / 'venv'
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / 'bin' / 'python'
    subprocess.run([sys.executable, '-m', 'pip', '--python', str(py), 'install', '-q', '--no-deps', '--no-index',
                    str(wheel)], check=True, capture_output=True)
    # timm_recal/__init__ imports torch (not in this venv): locate files through the installed metadata instead
    script = (
        "import importlib.metadata as md, pathlib\n"
        "dist = md.distribution('timm-recal')\n"
        "files = [str(f) for f in dist.files]\n"
        "print(sum(f.startswith('timm_recal/assets/cifar10_samples/') for f in files))\n"
        "print(sum(f.startswith('timm_recal/model_cards/') and f.endswith('.md') for f in files))\n"
        "print([str(f) for f in dist.files if not pathlib.Path(dist.locate_file(f)).exists()])\n"
        "print(sorted(dist.metadata.get_all('Provides-Extra')))\n"
        "print([e.name for e in dist.entry_points if e.group == 'console_scripts'])\n"
    )
    # -I and a neutral cwd: the checkout's own *.egg-info must not shadow the installed distribution
    out = subprocess.run([str(py), '-I', '-c', script], check=True, capture_output=True, text=True,
                         cwd=tmp_path).stdout.split('\n')
    assert out[0] == '50'
    assert int(out[1]) >= 1, out
    assert out[2] == '[]', f'files listed in RECORD but missing: {out[2]}'
    for extra in ('deploy', 'train', 'hub', 'test'):
        assert extra in out[3]
    assert out[4] == "['timm-recal']"
    assert (env_dir / 'bin' / 'timm-recal').is_file()


def test_readme_model_table_in_sync():
    """The README table must list exactly the registered models with their current parameter counts."""
    from timm_recal.registry import README_END, README_START, model_params, model_paper, recal_models
    text = (ROOT / 'README.md').read_text()
    assert README_START in text and README_END in text
    block = text.split(README_START, 1)[1].split(README_END, 1)[0]
    rows = {}
    for line in block.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip('|').split('|')]
        rows[cells[0].strip('`')] = cells
    models = recal_models()
    assert sorted(rows) == models, 'README model table is stale: run `timm-recal models --stats --markdown`'
    for name in models:
        cells = rows[name]
        assert cells[1] == model_paper(name), name
        assert int(cells[2].replace(',', '')) == model_params(name), name
        assert re.fullmatch(r'\d+\.\d{3}', cells[3]) and float(cells[3]) > 0, name
