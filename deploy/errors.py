"""The exception types of the deploy stage: a problem with the user's input (model name, file, folder, size),
reported by the ``timm-recal`` command as a one-line message with a non-zero exit, never a traceback.

They belong to the project's one hierarchy (``timm_recal.errors``): ``DeployError`` is its base under the deploy
stage's name, so ``except DeployError`` also catches ``timm_recal.outputs``' errors (an output that exists, a
folder that cannot be written), which this module re-exports.
"""
from timm_recal.errors import RecalError
from timm_recal.outputs import OutputError, OutputExistsError

__all__ = ['DeployError', 'OutputError', 'OutputExistsError', 'BatchNotSupported', 'NotAvailableHere',
           'NoNativePrecision', 'CompileFailed']

#: bad input or an impossible request; the message says what is wrong and how to fix it
DeployError = RecalError


class BatchNotSupported(DeployError):
    """A runner cannot run one batch size (an ONNX graph or engine with a fixed batch); bench records a note."""


class NotAvailableHere(DeployError):
    """This machine (or this file) lacks what a step needs: a library, a GPU, a form of the file a builder parses.
    The pipeline records the step as skipped with the reason, not as failed: it says nothing about the model."""


class NoNativePrecision(NotAvailableHere):
    """The CPU cannot run a precision natively (BF16 without AVX512_BF16/AMX): bench and pipeline record a note
    instead of timing an emulation."""


class CompileFailed(DeployError):
    """A compiled runtime's compile died (a signal), failed or timed out; bench and pipeline report that runtime
    as failed and go on with the others."""
