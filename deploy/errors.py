"""The exception types of the deploy stage: a problem with the user's input (model name, file, folder, size),
reported by the ``timm-recal`` command as a one-line message with a non-zero exit, never a traceback."""
from timm_recal import outputs as _outputs

__all__ = ['DeployError', 'OutputExistsError', 'BatchNotSupported', 'NoNativePrecision', 'CompileFailed']


class DeployError(RuntimeError):
    """Bad input or an impossible request; the message says what is wrong and how to fix it.

    A ``RuntimeError`` so that ``timm_recal.cli.main`` prints it without a traceback.
    """


class OutputExistsError(DeployError, _outputs.OutputExistsError):
    """The output path exists and ``--force`` was not given (also a ``timm_recal.outputs.OutputExistsError``)."""


class BatchNotSupported(DeployError):
    """A runner cannot run one batch size (an ONNX graph or engine with a fixed batch); bench records a note."""


class NoNativePrecision(DeployError):
    """The CPU cannot run a precision natively (BF16 without AVX512_BF16/AMX): bench and pipeline record a note
    instead of timing an emulation."""


class CompileFailed(DeployError):
    """A compiled runtime's compile died (a signal), failed or timed out; bench and pipeline report that runtime
    as failed and go on with the others."""
