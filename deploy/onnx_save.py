"""Writing an ONNX file: whole or not at all, and naming no local folder.

Every ONNX file the deploy stage writes (export, quantize, gate rewrites, the Hub folder's copies) goes through
``save_onnx``. torch's dynamo exporter stores each node's Python stack trace (``pkg.torch.onnx.stack_trace``: the
absolute paths of the project's and of site-packages' source files) in the node's metadata, and has no switch to
leave it out (torch 2.x ``_core._set_node_metadata``); ``onnx_ir``'s ``ClearMetadataAndDocStringPass`` would also
drop the module hierarchy (``namespace``, ``pkg.torch.onnx.class_hierarchy``) that Netron shows and that names no
path. So the stack traces are dropped, and any other doc string or metadata value (of the model, a graph, a node,
a function, a value or an initializer) that names a local path has it made public
(``timm_recal.outputs.public_text``): relative to the working folder, or its last part.
"""
import os
from typing import Iterator

from timm_recal.outputs import call_atomically, public_text

__all__ = ['DEBUG_METADATA', 'strip_local_paths', 'save_onnx']

#: node metadata that is debugging information written by exporters and names source files: dropped
DEBUG_METADATA = ('pkg.torch.onnx.stack_trace',)


def _graphs(graph) -> Iterator:
    """``graph`` and every subgraph of its nodes' attributes (If/Loop/Scan bodies), depth first."""
    import onnx
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _graphs(g)


def _scrub_props(holder) -> int:
    """Drop ``DEBUG_METADATA`` from ``holder.metadata_props`` and make the others' paths public; returns changes."""
    changed = 0
    keep = []
    for prop in holder.metadata_props:
        if prop.key in DEBUG_METADATA:
            changed += 1
            continue
        value = public_text(prop.value)
        changed += value != prop.value
        keep.append((prop.key, value))
    if changed:
        del holder.metadata_props[:]
        for key, value in keep:
            holder.metadata_props.add(key=key, value=value)
    return changed


def _scrub_doc(holder) -> int:
    doc = public_text(holder.doc_string) if holder.doc_string else ''
    if doc != holder.doc_string:
        holder.doc_string = doc
        return 1
    return 0


def strip_local_paths(proto) -> int:
    """Remove the exporter's stack traces from ``proto`` (in place) and make every other local path in its doc
    strings and metadata public; returns how many fields changed."""
    changed = _scrub_props(proto) + _scrub_doc(proto)
    holders = [*(g for g in _graphs(proto.graph)), *proto.functions]
    for holder in list(holders):
        if hasattr(holder, 'initializer'):  # a graph (functions have nodes, no initializers or value_info)
            holders += [*holder.initializer, *holder.input, *holder.output, *holder.value_info]
        holders += list(holder.node)
    for holder in holders:
        changed += _scrub_props(holder) + _scrub_doc(holder)
    return changed


def save_onnx(proto, path: str, force: bool = False) -> str:
    """Write ``proto`` (weights inside the file) to ``path`` whole or not at all (``call_atomically``), without
    local paths (``strip_local_paths``); returns ``path``."""
    import onnx
    strip_local_paths(proto)
    return call_atomically(os.fspath(path), lambda tmp: onnx.save(proto, tmp), force=force)


def copy_onnx(source: str, path: str) -> str:
    """Copy the ONNX file ``source`` to ``path`` (a new file) as ``save_onnx`` would write it: byte for byte when
    it names no local path, else without them (a file exported elsewhere may carry stack traces)."""
    import shutil
    import onnx
    proto = onnx.load(source, load_external_data=False)
    if strip_local_paths(proto):
        return call_atomically(os.fspath(path), lambda tmp: onnx.save(proto, tmp))
    shutil.copyfile(source, path)
    return path
