"""The one exception type of the deploy stage: a problem with the user's input (model name, file, folder,
size), reported by the ``timm-recal`` command as a one-line message with a non-zero exit, never a traceback."""

__all__ = ['DeployError', 'OutputExistsError']


class DeployError(RuntimeError):
    """Bad input or an impossible request; the message says what is wrong and how to fix it.

    A ``RuntimeError`` so that ``timm_recal.cli.main`` prints it without a traceback.
    """


class OutputExistsError(DeployError, FileExistsError):
    """The output path exists and ``--force`` was not given."""
