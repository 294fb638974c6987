"""A Triton Inference Server model repository for an exported model or a TensorRT engine.

``write_triton_repository`` writes ``REPO/<name>/config.pbtxt``, ``REPO/<name>/1/model.onnx`` (ONNX Runtime or
OpenVINO backend) or ``REPO/<name>/1/model.plan`` (TensorRT backend, with its sidecar JSON), and
``REPO/<name>/labels.txt``, named as the output's ``label_filename`` so that Triton's classification extension
answers ``class_count=k`` requests with ``score:index:label`` strings. The whole repository folder is built
beside its final path and renamed into place (``timm_recal.outputs.atomic_folder``): whole or not at all.

Inputs, outputs, their dims and data types are read from the artifact: the ONNX graph (``onnx``) for an ONNX file,
the engine's sidecar JSON (written by ``tensorrt_build.build_engine`` from the parsed network) for a plan, so the
config cannot drift from the model. ``config.pbtxt`` is written as protobuf text and, where ``tritonclient`` is
installed (the ``[test]`` extra), parsed back into Triton's own ``ModelConfig`` message and compared with the
artifact before anything is written (``validate_triton_config``); CI always does that.

Triton's backends are rows of ``triton_backends.TRITON_BACKENDS`` (our runtime word, the file, the instance kind,
the platform, what the pipeline serves): ``onnxruntime`` = ``ort``, ``tensorrt`` = ``trt``, ``openvino`` =
``openvino`` (it loads ``model.onnx`` through ``default_model_filename``, per the OpenVINO backend's README),
``pytorch`` = ``aoti``. Instance groups are ``KIND_CPU`` for ONNX Runtime and OpenVINO, ``KIND_GPU`` for TensorRT.
References: Triton's ``docs/user_guide/model_configuration.md`` and ``model_repository.md``
(triton-inference-server/server), ``model_config.proto`` (as shipped in ``tritonclient.grpc.model_config_pb2``),
triton-inference-server/openvino_backend ``README.md``.
"""
import json
import os
import re
import shutil
from typing import Any, Dict, List, Optional, Sequence

from timm_recal.outputs import atomic_folder, check_writable_folder, write_text

from .errors import DeployError
from .export import export_onnx
from .metadata import check_metadata, load_onnx, read_metadata
from .onnx_save import copy_onnx
from .tensorrt_build import read_sidecar, sidecar_path
from .triton_backends import (ARTIFACTS, DEFAULT_BACKEND, TRITON_BACKENDS, backend_hook, check_batching,
                              source_kind, triton_backend, triton_steps)

__all__ = [
    'TRITON_BACKENDS', 'BACKEND_RUNTIME', 'artifact_io', 'triton_config_text', 'validate_triton_config',
    'write_triton_repository', 'triton_client_example', 'triton_artifact', 'artifact_kind', 'triton_model_name',
]

#: the first Triton release whose PyTorch backend loads AOTInductor packages
TORCH_AOTI_TRITON = '26.03'
#: Triton backend -> our runtime word
BACKEND_RUNTIME = {k: b.runtime for k, b in TRITON_BACKENDS.items()}

#: numpy dtype name -> Triton data type
_TRITON_TYPES = {
    'float32': 'TYPE_FP32', 'float16': 'TYPE_FP16', 'float64': 'TYPE_FP64', 'bfloat16': 'TYPE_BF16',
    'int8': 'TYPE_INT8', 'int16': 'TYPE_INT16', 'int32': 'TYPE_INT32', 'int64': 'TYPE_INT64',
    'uint8': 'TYPE_UINT8', 'uint16': 'TYPE_UINT16', 'uint32': 'TYPE_UINT32', 'uint64': 'TYPE_UINT64',
    'bool': 'TYPE_BOOL',
}
_MODEL_NAME = re.compile(r'[^A-Za-z0-9_.-]+')
#: a ``--name`` as given: a plain folder name of the repository, and what a client requests
_GIVEN_NAME = re.compile(r'[A-Za-z0-9_-][A-Za-z0-9_.-]*')


def _onnx_dtype_name(elem_type: int) -> str:
    import onnx
    if elem_type == onnx.TensorProto.BFLOAT16:
        return 'bfloat16'
    import numpy as np
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name


def _onnx_io(path: str) -> Dict[str, Any]:
    model = load_onnx(path, load_external_data=False)
    inits = {t.name for t in model.graph.initializer}

    def tensors(values) -> List[Dict[str, Any]]:
        out = []
        for vi in values:
            if vi.name in inits:
                continue
            tt = vi.type.tensor_type
            shape = [d.dim_value if d.HasField('dim_value') else -1 for d in tt.shape.dim]
            out.append({'name': vi.name, 'shape': shape, 'dtype': _onnx_dtype_name(tt.elem_type)})
        return out

    meta = read_metadata(model, check=False)
    check_metadata(meta, path)  # a damaged value is refused naming the file, not 'the ONNX model'
    return {'inputs': tensors(model.graph.input), 'outputs': tensors(model.graph.output), 'metadata': meta}


def _package_io(path: str) -> Dict[str, Any]:
    """An AOTInductor package's one input and output, named by the PyTorch backend's ``<name>__<index>``
    convention, with the dims and dtype its metadata records (batch axis dynamic: ``-1``)."""
    from .aoti_package import package_metadata
    meta = package_metadata(path)
    dtype = meta.get('dtype') or 'float32'
    kind = 'KIND_GPU' if str(meta.get('device', 'cpu')).startswith('cuda') else 'KIND_CPU'
    return {'kind': 'pt2', 'inputs': [{'name': 'INPUT__0', 'shape': [-1, *meta['input_size']], 'dtype': dtype}],
            'outputs': [{'name': 'OUTPUT__0', 'shape': [-1, int(meta['num_classes'])], 'dtype': dtype}],
            'metadata': meta, 'instance_kind': kind}


def artifact_io(path: str) -> Dict[str, Any]:
    """``{'kind': 'onnx'|'plan', 'inputs': [...], 'outputs': [...], 'metadata': {...}}`` of an artifact.

    Each tensor is ``{'name', 'shape' (with -1 for a dynamic axis, batch included), 'dtype' (numpy name)}``;
    a plan is described by its sidecar JSON (``tensorrt_build.read_sidecar``), which records what the parsed
    network declared.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DeployError(f'model file not found: {path}')
    kind = artifact_kind(path)
    if kind == 'onnx':
        return {'kind': 'onnx', **_onnx_io(path)}
    if kind == 'pt2':
        return _package_io(path)
    if kind == 'plan':
        side = read_sidecar(path)
        return {'kind': 'plan', 'inputs': side['inputs'], 'outputs': side['outputs'],
                'metadata': side.get('metadata') or {}, 'sidecar': side}
    raise DeployError(f'{path}: expected an exported .onnx file, a TensorRT .plan engine or an AOTInductor .pt2')


def _batch_dims(tensors: Sequence[Dict[str, Any]], max_batch_size: int, what: str) -> List[List[int]]:
    """Dims Triton expects: without the batch axis when batching is on (the first axis must then be dynamic)."""
    dims = []
    for t in tensors:
        shape = list(t['shape'])
        if max_batch_size > 0:
            if not shape or shape[0] != -1:
                raise DeployError(f"{what} {t['name']} has a fixed first axis {shape}: Triton batching needs a dynamic "
                                  'batch axis; export with a dynamic batch or use --max-batch-size 0')
            shape = shape[1:]
        dims.append(shape)
    return dims


def _pb_str(s: str) -> str:
    return json.dumps(s)  # a protobuf text string literal for these names (ASCII, escaped quotes)


def triton_config_text(name: str, backend: str, io: Dict[str, Any], *, max_batch_size: int = 64,
                       preferred_batch_sizes: Sequence[int] = (), max_queue_delay_us: int = 100,
                       instance_count: int = 1, label_filename: Optional[str] = 'labels.txt') -> str:
    """The ``config.pbtxt`` text for ``io`` (as ``artifact_io`` returns) under one Triton backend."""
    row = triton_backend(backend)
    check_batching(max_batch_size, preferred_batch_sizes, max_queue_delay_us, instance_count)
    kind = io.get('instance_kind') or row.instance_kind
    lines = [f'name: {_pb_str(name)}', f'backend: {_pb_str(backend)}', f'max_batch_size: {max_batch_size}']
    if row.platform:
        lines.insert(1, f'platform: {_pb_str(row.platform)}')
    if row.default_model_filename:
        lines.append(f'default_model_filename: {_pb_str(row.filename)}')
    for section, tensors, what in (('input', io['inputs'], 'input'), ('output', io['outputs'], 'output')):
        dims = _batch_dims(tensors, max_batch_size, what)
        entries = []
        for i, (t, d) in enumerate(zip(tensors, dims)):
            dtype = _TRITON_TYPES.get(t['dtype'])
            if dtype is None:
                raise DeployError(f"{what} {t['name']} has data type {t['dtype']}, which Triton has no type for")
            body = [f"    name: {_pb_str(t['name'])}", f'    data_type: {dtype}',
                    f"    dims: [ {', '.join(str(x) for x in d)} ]"]
            if section == 'output' and i == 0 and label_filename:
                body.append(f'    label_filename: {_pb_str(label_filename)}')
            entries.append('  {\n' + '\n'.join(body) + '\n  }')
        lines.append(f'{section} [\n' + ',\n'.join(entries) + '\n]')
    if max_batch_size > 0:
        sizes = ', '.join(str(b) for b in preferred_batch_sizes)
        db = [f'  preferred_batch_size: [ {sizes} ]'] if preferred_batch_sizes else []
        db.append(f'  max_queue_delay_microseconds: {max_queue_delay_us}')
        lines.append('dynamic_batching {\n' + '\n'.join(db) + '\n}')
    lines.append(f'instance_group [\n  {{\n    count: {instance_count}\n    kind: {kind}\n  }}\n]')
    return '\n'.join(lines) + '\n'


def validate_triton_config(text: str, io: Dict[str, Any], backend: str, max_batch_size: int):
    """Parse ``text`` into Triton's ``ModelConfig`` and check it against the artifact's I/O; returns the message.

    Needs ``tritonclient[grpc]`` (the ``[test]`` extra); a mismatch raises ``DeployError``.
    """
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as e:
        raise DeployError(f'validating a Triton config needs tritonclient[grpc] ({e}); '
                          "pip install 'timm-recal[test]' or 'tritonclient[grpc]'") from None
    cfg = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, cfg)
    except text_format.ParseError as e:
        raise DeployError(f'config.pbtxt does not parse as Triton ModelConfig: {e}') from None
    problems, row = [], triton_backend(backend)
    if cfg.backend != backend:
        problems.append(f'backend {cfg.backend!r} != {backend!r}')
    if cfg.platform != row.platform:
        problems.append(f"platform {cfg.platform!r} != {row.platform!r}")
    if cfg.max_batch_size != max_batch_size:
        problems.append(f'max_batch_size {cfg.max_batch_size} != {max_batch_size}')
    for got, want, what in ((cfg.input, io['inputs'], 'input'), (cfg.output, io['outputs'], 'output')):
        if [t.name for t in got] != [t['name'] for t in want]:
            problems.append(f"{what} names {[t.name for t in got]} != {[t['name'] for t in want]}")
            continue
        for g, w in zip(got, want):
            shape = list(w['shape'][1:] if max_batch_size > 0 else w['shape'])
            if list(g.dims) != shape:
                problems.append(f'{what} {g.name} dims {list(g.dims)} != {shape}')
            if model_config_pb2.DataType.Name(g.data_type) != _TRITON_TYPES.get(w['dtype']):
                problems.append(f"{what} {g.name} type {model_config_pb2.DataType.Name(g.data_type)} != {w['dtype']}")
    want_kind = io.get('instance_kind') or row.instance_kind
    if [model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind) for g in cfg.instance_group] != [want_kind]:
        problems.append(f'instance group kind is not {want_kind}')
    if problems:
        raise DeployError('config.pbtxt does not match the model: ' + '; '.join(problems))
    return cfg


def _labels_of(meta: Dict[str, Any], num_outputs: Optional[int]) -> Optional[List[str]]:
    labels = meta.get('class_labels')
    if not labels:
        return None
    labels = [str(x) for x in labels]
    if any('\n' in x for x in labels):
        raise DeployError('a class label contains a line break; labels.txt holds one label per line')
    if num_outputs and num_outputs > 0 and len(labels) != num_outputs:
        raise DeployError(f'the model has {num_outputs} outputs but {len(labels)} class labels in its metadata')
    return labels


def write_triton_repository(
        source: str,
        repo_dir: str,
        *,
        backend: str = DEFAULT_BACKEND,
        name: Optional[str] = None,
        max_batch_size: int = 64,
        preferred_batch_sizes: Sequence[int] = (),
        max_queue_delay_us: int = 100,
        instance_count: int = 1,
        force: bool = False,
) -> Dict[str, Any]:
    """Write a Triton model repository for ``source`` (an exported ``.onnx`` or a TensorRT ``.plan``) to
    ``repo_dir``; returns a JSON-able summary (paths, the config text, the client example's model name).

    ``backend='tensorrt'`` needs a plan (build it with ``timm-recal engine``); the others need an ONNX file.
    ``name`` defaults to the model's architecture (ONNX metadata or sidecar), else the file name. An existing
    ``repo_dir`` is replaced only with ``force``.
    """
    row = triton_backend(backend)
    if not row.batching:
        max_batch_size, preferred_batch_sizes = 0, ()  # torch_aoti: no Triton batching; explicit dims, batch -1
    io = _served_artifact_io(source, backend, max_batch_size)
    runtime, filename = row.runtime, row.filename
    meta = io['metadata']
    name = triton_model_name(name, meta, source)
    out_shape = io['outputs'][0]['shape'] if io['outputs'] else []
    labels = _labels_of(meta, out_shape[-1] if out_shape else None)
    text = triton_config_text(name, backend, io, max_batch_size=max_batch_size,
                              preferred_batch_sizes=preferred_batch_sizes, max_queue_delay_us=max_queue_delay_us,
                              instance_count=instance_count, label_filename='labels.txt' if labels else None)
    try:
        validate_triton_config(text, io, backend, max_batch_size)
        validated = True
    except DeployError as e:
        if 'needs tritonclient' not in str(e):
            raise
        validated = False
    repo_dir = os.fspath(repo_dir)
    readme = _server_readme(name, meta) if io['kind'] == 'pt2' else None
    _write_model_folder(repo_dir, force, name, text, labels, source, filename, is_plan=io['kind'] == 'plan',
                        readme=readme)
    return {
        'repository': repo_dir, 'model_name': name, 'backend': backend, 'runtime': runtime,
        'config': os.path.join(repo_dir, name, 'config.pbtxt'),
        'model_file': os.path.join(repo_dir, name, '1', filename),
        'labels': os.path.join(repo_dir, name, 'labels.txt') if labels else None,
        'max_batch_size': max_batch_size, 'validated_with_model_config_pb2': validated, 'config_text': text,
        'serve': f'tritonserver --model-repository={repo_dir}',
    }


def triton_model_name(name: Optional[str], meta: Dict[str, Any], source: str) -> str:
    """The model's name in the repository (its folder, and what a client requests). A given ``name`` is kept as
    it is or refused in one line: it was silently rewritten ('a/b c' became 'a_b_c'), while ``--client-example``
    requested the name as typed, a model the repository did not hold. Without one: the architecture (else the
    file's stem) with other characters replaced. The repository and the client example both take it from here."""
    if name is not None:
        if not _GIVEN_NAME.fullmatch(name):
            raise DeployError(f"--name {name!r} is not a Triton model name: use letters, digits, '_', '-' and '.' "
                              "(not first), as it names the model's folder in the repository")
        return name
    derived = meta.get('architecture') or os.path.splitext(os.path.basename(source))[0]
    return _MODEL_NAME.sub('_', derived).strip('._') or 'model'


def _served_artifact_io(source: str, backend: str, max_batch_size: int) -> Dict[str, Any]:
    """``artifact_io`` of ``source`` after checking that ``backend`` serves that kind of file at that batch."""
    row = triton_backend(backend)
    io = artifact_io(source)
    if io['kind'] != row.artifact:
        others = '/'.join(b.name for b in TRITON_BACKENDS.values() if b.artifact == io['kind'])
        raise DeployError(f"the {backend} backend serves {ARTIFACTS[row.artifact]}{': ' + row.hint if row.hint else ''}"
                          f"; {ARTIFACTS[io['kind']]} is served by --backend {others}")
    if io['kind'] == 'plan':
        prof_max = (io['sidecar'].get('profile') or {}).get('max') or []
        if max_batch_size and prof_max and prof_max[0] < max_batch_size:
            raise DeployError(f'max_batch_size {max_batch_size} exceeds the engine profile max batch {prof_max[0]}; '
                              f'use --max-batch-size {prof_max[0]} or rebuild the engine with a larger --batch')
    return io


def _server_readme(name: str, meta: Dict[str, Any]) -> str:
    """The repository's README: an AOTInductor package loads only in the torch it was compiled with."""
    return (f"# Triton model repository: {name}\n\n"
            f"`{name}/1/model.pt2` is an AOTInductor package (`platform: \"torch_aoti\"` of Triton's PyTorch "
            f"backend, Triton {TORCH_AOTI_TRITON} or newer) holding the dynamic-batch model alone (the one the "
            "server loads; the static models of the source package are left out).\n\n"
            f"- The server's PyTorch must be **torch {meta.get('torch')}**: a package loads only in the torch "
            "version it was compiled with (pick the Triton release whose PyTorch backend carries it).\n"
            f"- Device: {meta.get('device')}; precision {meta.get('precision')} ({meta.get('dtype')} inputs and "
            f"outputs), {meta.get('memory_format')}; batches {meta.get('batch_range')} in the first axis of the "
            "dims (`max_batch_size: 0`: Triton does not batch requests for this platform).\n"
            f"- Model: {meta.get('model_spec')} ({meta.get('weights')}); preprocessing: input "
            f"{meta.get('input_size')}, mean {meta.get('mean')}, std {meta.get('std')}.\n")


def _write_model_folder(repo_dir: str, force: bool, name: str, text: str, labels: List[str], source: str,
                        filename: str, *, is_plan: bool, readme: Optional[str] = None) -> None:
    """``repo_dir/name/{config.pbtxt,labels.txt,1/filename}`` (and a plan's sidecar), whole or not at all."""
    check_writable_folder(os.path.dirname(os.path.abspath(repo_dir)), target=repo_dir)
    with atomic_folder(repo_dir, force=force) as tmp:
        model_dir = os.path.join(tmp, name)
        os.makedirs(os.path.join(model_dir, '1'))
        write_text(text, os.path.join(model_dir, 'config.pbtxt'))
        if readme:
            write_text(readme, os.path.join(tmp, 'README.md'))
        if labels:
            write_text('\n'.join(labels) + '\n', os.path.join(model_dir, 'labels.txt'))
        target = os.path.join(model_dir, '1', filename)
        if is_plan:
            shutil.copyfile(source, target)
            shutil.copyfile(sidecar_path(source), sidecar_path(target))
        elif source.lower().endswith('.onnx'):
            copy_onnx(source, target)  # written anew without the exporter's local paths
        else:  # an AOTInductor package (provenance checked): its dynamic model, the one the server loads
            from .aoti_package import dynamic_model_package
            dynamic_model_package(source, target)


def triton_client_example(model_name: str, metadata: Dict[str, Any], url: str = 'localhost:8001') -> str:
    """Python source of a ``tritonclient`` gRPC request returning the top-5 labels of an image.

    The preprocessing is the model's own, taken from the ONNX metadata (resize the shorter side to
    ``H / crop_pct`` with its interpolation, center crop ``H x W``, scale to [0, 1], normalize by mean/std),
    written with PIL and numpy only so that it runs on any client.
    """
    size = list(metadata.get('input_size') or [3, 224, 224])
    mean = [float(x) for x in metadata.get('mean') or (0.485, 0.456, 0.406)]
    std = [float(x) for x in metadata.get('std') or (0.229, 0.224, 0.225)]
    crop_pct = float(metadata.get('crop_pct') or 0.875)
    interp = str(metadata.get('interpolation') or 'bilinear')
    input_name = metadata.get('input_name') or 'input'
    output_name = metadata.get('output_name') or 'logits'
    pil_interp = {'bilinear': 'BILINEAR', 'bicubic': 'BICUBIC', 'nearest': 'NEAREST', 'lanczos': 'LANCZOS',
                  'box': 'BOX', 'hamming': 'HAMMING'}.get(interp, 'BILINEAR')
    return f'''"""Top-5 labels of an image from Triton (model {model_name!r}).

pip install 'tritonclient[grpc]' pillow numpy; usage: python client.py IMAGE
"""
import sys

import numpy as np
from PIL import Image
import tritonclient.grpc as grpcclient

INPUT_SIZE = {tuple(size[-2:])!r}  # H, W
MEAN = np.array({mean!r}, dtype=np.float32)
STD = np.array({std!r}, dtype=np.float32)
CROP_PCT = {crop_pct!r}
INTERPOLATION = Image.Resampling.{pil_interp}


def preprocess(path: str) -> np.ndarray:
    """The model's eval preprocessing (from its ONNX metadata): resize, center crop, normalize; 1x3xHxW float32."""
    img = Image.open(path).convert('RGB')
    h, w = INPUT_SIZE
    scale_h, scale_w = int(h / CROP_PCT), int(w / CROP_PCT)
    if scale_h == scale_w:  # shorter side to H / crop_pct, keeping the aspect ratio (timm's eval transform)
        short, long = sorted(img.size)
        new_short, new_long = scale_h, int(scale_h * long / short)
        size = (new_short, new_long) if img.width <= img.height else (new_long, new_short)
    else:
        size = (scale_w, scale_h)
    if size != img.size:
        img = img.resize(size, INTERPOLATION)
    top = int(round((img.height - h) / 2.0))
    left = int(round((img.width - w) / 2.0))
    img = img.crop((left, top, left + w, top + h))
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def top5(path: str, url: str = {url!r}):
    """``[(score, class_index, label), ...]`` from Triton's classification extension (class_count=5)."""
    client = grpcclient.InferenceServerClient(url=url)
    x = preprocess(path)
    inp = grpcclient.InferInput({input_name!r}, list(x.shape), 'FP32')
    inp.set_data_from_numpy(x)
    out = grpcclient.InferRequestedOutput({output_name!r}, class_count=5)
    result = client.infer({model_name!r}, [inp], outputs=[out])
    entries = result.as_numpy({output_name!r})[0]  # b'score:index:label' strings, best first
    return [(float(s), int(i), label) for s, i, label in (e.decode().split(':', 2) for e in entries)]


if __name__ == '__main__':
    for score, index, label in top5(sys.argv[1]):
        print(f'{{score:8.3f}}  {{index:5d}}  {{label}}')
'''


#: the kind of file a path names by its suffix, None for a MODEL spec (the backend table's ``source_kind``)
artifact_kind = source_kind


def triton_artifact(source: str, backend: str, workdir: str, *, export_options: Any = None,
                    engine_options: Optional[Dict[str, Any]] = None, log=None) -> str:
    """The file ``backend`` serves, made from ``source`` inside ``workdir`` as its row says
    (``triton_backends``): a file of the kind it serves is used as it is; otherwise the row's ``requires`` runs
    first (a machine without TensorRT or a GPU gets one message, before any export, and nothing is written),
    then a MODEL spec is exported (``export_onnx``, or the row's ``export`` for a backend that serves the model)
    and, for a backend that serves a built file, the ONNX file is built (the row's ``build``, ``engine_options``
    its keywords). A file of another kind is returned as it is, for ``write_triton_repository`` to refuse with
    the command that makes the right one."""
    log = log or (lambda msg: None)
    row = triton_backend(backend)
    steps = triton_steps(row, artifact_kind(source))  # the steps whose options the command line checked
    if not {'package', 'export', 'build'} & set(steps):
        return source
    if row.requires:
        backend_hook(row.requires)()
    if 'package' in steps:
        return backend_hook(row.export)(source, os.path.join(workdir, row.filename), export_options, log=log)
    path = source
    if 'export' in steps:  # a model spec: the export stage
        log(f'exporting {source} ...')
        path = export_onnx(source, os.path.join(workdir, 'model.onnx'), export_options).output
    if 'build' in steps:
        log(f'building the {backend} backend\'s {row.filename} from {os.path.basename(path)} ...')
        path = backend_hook(row.build)(path, os.path.join(workdir, row.filename), **(engine_options or {}))['output']
    return path
