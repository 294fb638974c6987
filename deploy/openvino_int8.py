"""Which INT8 file OpenVINO runs in ``bench`` (and so in ``pipeline``): our QDQ file or an NNCF IR.

OpenVINO reads our QDQ ONNX file (``timm-recal quantize``) and its own NNCF post-training quantization; which is
faster depends on the model (benchmarks/gate_speed), and NNCF's defaults miss the 99% agreement contract on
depthwise-heavy nets. So both are made from the same FP32 file on the same calibration images, and
``openvino_runtime.pick_int8`` keeps the fastest whose top-1 agreement with OpenVINO FP32 reaches 99% on
held-out images of the calibration folder. The record says which file was timed, why, and on which images.
"""
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from timm_recal.outputs import public_path

from .errors import DeployError
from .images import (bundled_samples_dir, make_loader, same_folder_by_name, scan_images, split_indices,
                     spread_indices)
from .metadata import read_metadata
from .openvino_runtime import AGREEMENT_MIN, pick_int8, quantize_nncf
from .sources import Source, onnx_data_config

__all__ = ['pick_openvino_int8', 'agreement_images', 'PICK_IMAGES', 'bench_artifact']


def _images(root: Optional[str], cfg: Dict[str, Any], limit: Optional[int] = None,
            indices: Optional[Sequence[int]] = None) -> np.ndarray:
    loader = make_loader(root, cfg, 64, limit=None if indices is not None else limit, indices=indices)
    return np.concatenate([x.numpy() for x, _ in loader])


#: held-out images the pick measures agreement on: 99% of 500 allows 5 disagreements, so a candidate at 98% (NNCF's
#: defaults on the depthwise-heavy nets) fails it, where 50 bundled samples would let it pass
PICK_IMAGES = 500


def _calib_folder(recorded: Optional[str], given: Optional[str], cfg: Dict[str, Any]) -> Optional[str]:
    """The folder a QDQ file was calibrated on, here: the recorded one when it resolves, else ``given`` (the
    bundled samples when None) when the record names it."""
    if not recorded:
        return None
    if os.path.isdir(recorded):
        return recorded
    folder = given if given is not None else bundled_samples_dir(cfg)
    return folder if same_folder_by_name(recorded, folder) and os.path.isdir(folder) else None


def agreement_images(qdq_path: str, fp32_path: str, calib_data: Optional[str], calib_images: int
                     ) -> Tuple[Dict[str, Any], np.ndarray, str]:
    """``(NNCF calibration kwargs, agreement images, where they come from)`` for the QDQ file ``qdq_path``.

    NNCF calibrates on exactly the images the QDQ file was calibrated on, and agreement is measured on up to
    ``PICK_IMAGES`` other images of the same folder: the measurement part of a recorded split (the pipeline's
    default), else the folder's images outside the calibration sample. Only when the folder has no image left
    over (the bundled samples calibrated both) is agreement measured on the calibration images, and the record
    says that this is a speed pick, not an accuracy claim.
    """
    meta = read_metadata(fp32_path)
    cfg = onnx_data_config(meta, fp32_path)
    q = read_metadata(qdq_path).get('quantization') or {}
    root = _calib_folder(q.get('calib_data'), calib_data, cfg)
    n = len(scan_images(root)[0]) if root else 0
    if n and q.get('calib_split') and q.get('calib_split_of') == n:
        calib_idx, rest = split_indices(n, q['calib_images'])
    elif n and q.get('calib_images') and not q.get('calib_split'):
        calib_idx = spread_indices(n, q['calib_images'], seed=q.get('calib_seed', 0))
        rest = spread_indices(n, None, exclude=calib_idx)
    else:  # a file without a readable calibration record: calibrate NNCF as asked, measure on the samples
        samples = bundled_samples_dir(cfg)
        where = f'the bundled samples ({public_path(samples)})'
        if calib_data is None or os.path.realpath(calib_data) == os.path.realpath(samples):
            where += ', also the calibration images: a speed pick, not an accuracy claim'
        return {'calib_images': calib_data, 'num_images': calib_images}, _images(samples, cfg), where
    nncf_kw = {'calib_images': root, 'indices': calib_idx, 'num_images': None}
    if not rest:
        return (nncf_kw, _images(root, cfg, indices=calib_idx),
                f'the {len(calib_idx)} calibration images of {public_path(root)} (no other image there): '
                'a speed pick, not an accuracy claim')
    measure_idx = [rest[i] for i in spread_indices(len(rest), PICK_IMAGES, seed=1)]
    return (nncf_kw, _images(root, cfg, indices=measure_idx),
            f'{len(measure_idx)} images of {public_path(root)} disjoint from the {len(calib_idx)} calibration images')


def pick_openvino_int8(files: Dict[str, str], src: Source, o: Any, workdir: str, notes: List[str], log,
                       role: str) -> Tuple[str, Dict[str, Any]]:
    """``(file to time, record)`` of OpenVINO INT8 for one bench side with ``files`` by precision.

    The record: ``timed`` ('qdq' or 'nncf'), ``picked`` (None when no candidate passed the contract: the QDQ
    file is timed and ``passed`` is False), ``reason``, ``agreement_images`` and ``pick_int8``'s candidates.
    """
    qdq = files['int8']
    fp32 = files.get('fp32')
    if fp32 is None or not qdq.lower().endswith('.onnx'):
        notes.append(f'{role}/openvino/int8: no FP32 file beside {os.path.basename(qdq)}, so no NNCF candidate '
                     'and no agreement check; the given INT8 file is timed')
        return qdq, {'timed': 'given', 'picked': None, 'passed': None,
                     'reason': 'no FP32 file to quantize with NNCF or to measure agreement against'}
    nncf_kw, images, where = agreement_images(qdq, fp32, o.calib_data, o.calib_images)
    candidates = {'qdq': qdq}
    log(f'bench: {role}: NNCF INT8 of {src.name} for OpenVINO, then the INT8 pick on {len(images)} images')
    try:
        ir = quantize_nncf(fp32, nncf_kw.pop('calib_images'), os.path.join(workdir, f'{role}.nncf_int8.xml'),
                           force=True, **nncf_kw)
        candidates['nncf'] = ir['output']
    except DeployError as e:
        notes.append(f'{role}/openvino/int8: NNCF quantization failed ({e}); only the QDQ file is a candidate')
    batch = min(int(b) for b in (o.batches if not isinstance(o.batches, str) else o.batches.split(',')))
    pick = pick_int8(fp32, candidates, images, threads=o.threads, batch=batch, min_time_s=o.min_time_s,
                     rounds=max(1, min(3, o.repeats)))
    pick.update(agreement_images=where, min_agreement=AGREEMENT_MIN)
    for cand in pick['candidates'].values():  # the NNCF IR lives in bench's temporary folder: not a path to keep
        if os.path.realpath(cand['path']).startswith(os.path.realpath(workdir) + os.sep):
            cand['path'] = None
            cand['temporary'] = True
    if pick['picked'] is None:
        notes.append(f"{role}/openvino/int8: {pick['reason']}; the QDQ file is timed but did not pass")
        pick.update(timed='qdq', passed=False, path=os.path.abspath(qdq))
        return qdq, pick
    path = candidates[pick['picked']]
    pick.update(timed=pick['picked'], passed=True, path=pick['candidates'][pick['picked']]['path'])
    return path, pick


def bench_artifact(path: str, precision: str, files: Dict[str, str], src: Source, o: Any, workdir: str,
                   notes: List[str], log, role: str) -> Tuple[str, Optional[Dict[str, Any]]]:
    """The runtime table's ``artifact`` hook of ``openvino``: at INT8 the picked file and its record
    (``pick_openvino_int8``), the given file otherwise."""
    if precision != 'int8':
        return path, None
    return pick_openvino_int8(files, src, o, workdir, notes, log, role)
