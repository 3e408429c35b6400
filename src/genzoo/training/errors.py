"""What stops a training run, as exceptions the command line turns into one line and an exit status."""

from __future__ import annotations

from safetensors import SafetensorError

#: What a failed save can raise: the file system's errors, torch's (a full disk in ``torch.save`` is a
#: ``RuntimeError``) and safetensors' (its writer reports a full disk as a ``SafetensorError``).
SAVE_ERRORS = (OSError, RuntimeError, SafetensorError)


class TrainingError(RuntimeError):
    """Training stopped: a non-finite loss or weights, or a method that cannot run. The message says what to do."""


class TrainingInterrupted(BaseException):
    """The run was stopped by a signal (SIGTERM, SIGINT): raised at the end of the step the signal arrived in (or at
    once while the run is still setting up). A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except
    Exception`` on the way swallows it; the command line prints its message as one line and exits with
    ``128 + signum``, the shell's convention for a process ended by a signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class CheckpointError(TrainingError, OSError):
    """An output folder or checkpoint that cannot be used as asked: another run's folder, a resume whose recipe
    differs, a damaged, foreign or unsafe checkpoint, a checkpoint that could not be written. Like every
    ``OSError``, the command line reports it as one ``error:`` line with exit status 2."""
