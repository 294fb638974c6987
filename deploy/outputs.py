"""The deploy stage's view of ``timm_recal.outputs`` (the one place that resolves and writes outputs): the same
functions, raising the deploy stage's error types so that ``except DeployError`` catches every input problem.
"""
import contextlib
import functools
from typing import Any, Callable, Iterator

from timm_recal import outputs as _outputs

from .errors import DeployError, OutputExistsError

__all__ = ['resolve_output', 'atomic_output', 'atomic_folder', 'call_atomically', 'write_json', 'write_text',
           'to_jsonable', 'deploy_errors', 'temporary_folder']

to_jsonable = _outputs.to_jsonable
temporary_folder = _outputs.temporary_folder


@contextlib.contextmanager
def deploy_errors() -> Iterator[None]:
    """``timm_recal.outputs`` errors as ``DeployError``/``OutputExistsError`` (same message)."""
    try:
        yield
    except OutputExistsError:
        raise
    except _outputs.OutputExistsError as e:
        raise OutputExistsError(str(e)) from None
    except _outputs.OutputError as e:
        raise DeployError(str(e)) from None


def _translated(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def call(*args, **kwargs):
        with deploy_errors():
            return fn(*args, **kwargs)
    return call


def _translated_cm(cm: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(cm)
    @contextlib.contextmanager
    def managed(*args, **kwargs):
        with deploy_errors(), cm(*args, **kwargs) as value:
            yield value
    return managed


resolve_output = _translated(_outputs.resolve_output)
call_atomically = _translated(_outputs.call_atomically)
write_json = _translated(_outputs.write_json)
write_text = _translated(_outputs.write_text)
atomic_output = _translated_cm(_outputs.atomic_output)
atomic_folder = _translated_cm(_outputs.atomic_folder)
