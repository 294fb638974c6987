"""The project's one error hierarchy: every problem a user can fix (bad input, an output that cannot be written, an
impossible request) is a ``RecalError``, which the ``timm-recal`` command prints as one line with a non-zero exit.

Beneath it: ``timm_recal.outputs.OutputError`` (an output path that cannot be used or written) and
``OutputExistsError``, ``timm_recal.publish.PublishError``, and the deploy stage's errors
(``timm_recal_deploy.errors``: ``DeployError`` is this class under the deploy stage's name, so ``except
DeployError`` catches output problems too, without a translation layer). Standard library only, so
``import timm_recal`` stays light.
"""

__all__ = ['RecalError']


class RecalError(RuntimeError):
    """Bad input or an impossible request; the message says what is wrong and how to fix it.

    A ``RuntimeError`` so that code written against the older error types keeps catching it.
    """
