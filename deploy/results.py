"""The base of every stage's typed result: ``to_dict()`` is what ``--json`` prints and the pipeline stores.

Results also answer ``result['key']`` and ``result.get('key')`` (with the old key names of renamed fields,
``ALIASES``), so code written against the dicts the stages returned before keeps working for one release.
"""
import dataclasses
from typing import Any, Dict

from timm_recal.outputs import to_jsonable

__all__ = ['Result']


class Result:
    """Mixin for result dataclasses."""

    #: old key -> field name, kept in ``to_dict()`` for one release
    ALIASES: Dict[str, str] = {}

    def _plain(self) -> Dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update(self._extra())
        out.update({old: out[new] for old, new in self.ALIASES.items() if new in out})
        return out

    def _extra(self) -> Dict[str, Any]:
        """Further keys of ``to_dict()`` (flattened details kept under their old names)."""
        return {}

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON types (numpy values converted, NaN/Inf as strings)."""
        return to_jsonable(self._plain())

    def __getitem__(self, key: str) -> Any:
        return self._plain()[key]

    def __contains__(self, key: str) -> bool:
        return key in self._plain()

    def get(self, key: str, default: Any = None) -> Any:
        return self._plain().get(key, default)
