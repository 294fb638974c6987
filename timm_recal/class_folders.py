"""Class folders matched to a model's classes by name: the one rule of ``train`` (its eval split against its
train split) and of the deploy verbs (a data folder against the model's labels).

Sorting each folder's own class names would number a split that lacks a class (no ``bird`` in the test split)
differently from the model's classes, every label after the gap shifted by one, and an accuracy computed on
those labels is silently wrong. By name, a subset of the classes keeps the model's indices, and a folder that is
no class of the model is refused. Standard library only.
"""
from typing import List, Optional, Sequence

__all__ = ['indices_by_name', 'not_in', 'few']


def indices_by_name(folders: Sequence[str], classes: Sequence[str]) -> Optional[List[int]]:
    """The index in ``classes`` of each of ``folders``; None if a folder names no class (see ``not_in``)."""
    index = {name: i for i, name in enumerate(classes)}
    if not folders or not index or any(f not in index for f in folders):
        return None
    return [index[f] for f in folders]


def not_in(folders: Sequence[str], classes: Sequence[str]) -> List[str]:
    """The folders that name no class, in their order."""
    known = set(classes)
    return [f for f in folders if f not in known]


def few(names: Sequence[str], n: int = 4) -> str:
    """The first ``n`` names and how many there are in all: a list a one-line message can hold."""
    names = list(names)
    return ', '.join(names[:n]) + (f', ... ({len(names)} in all)' if len(names) > n else '')
