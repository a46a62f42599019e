"""Domain exceptions of the engine. No gRPC here: `service/grpc/errors.py` maps each class to a status code.

`str(exc)` is always a safe, client-facing message; details that must not leak go to the log instead.
"""


class SeqServeError(Exception):
    """Base of every error the engine reports to a client."""


class InvalidInput(SeqServeError):
    """Bad shape, dtype, feature size, NaN/Inf, empty chunk or explicit state (INVALID_ARGUMENT)."""


class ModelNotFound(SeqServeError):
    """Unknown model name or version (NOT_FOUND)."""


class SequenceNotFound(SeqServeError):
    """Triton: a request for an unknown sequence id without START (NOT_FOUND)."""


class FailedPrecondition(SeqServeError):
    """Not streamable, chunk before open, second open, expired session (FAILED_PRECONDITION)."""


class ResourceExhausted(SeqServeError):
    """Session limit reached or queue full; nothing was admitted (RESOURCE_EXHAUSTED)."""


class Unavailable(SeqServeError):
    """Model not loaded or failed to load, or the server is draining (UNAVAILABLE)."""


class Aborted(SeqServeError):
    """A concurrent step won the session (the stored position moved on): nothing of this step was written or
    answered; retry from the stored position (ABORTED)."""


class OutcomeUnknown(Aborted):
    """The session store did not answer a step's write, nor the reads of its outcome, in time: the step may or may
    not have been applied (ABORTED). The server does not go on from a guess: a native stream resumes (its position
    says which), a Triton sequence restarts with START."""


class FirstMessageTimeout(SeqServeError):
    """A stream sent no first message (native: no open; Triton: no request) within --first-message-timeout; the
    stream ends (DEADLINE_EXCEEDED)."""


class ModelRunFailed(SeqServeError):
    """The model run of a batch failed (INTERNAL with this generic message; the batcher logs the cause once per
    batch). Nothing of the batch was written back: every session's state is unchanged, and a stream goes on."""

    def __init__(self, message: str = "the model run failed; see the server log") -> None:
        super().__init__(message)


class Unauthenticated(SeqServeError):
    """No credentials, or credentials the server does not know (UNAUTHENTICATED)."""


class PermissionDenied(SeqServeError):
    """The principal may not use this model (PERMISSION_DENIED)."""


class ConfigurationError(Exception):
    """The server cannot start as configured (e.g. `--device cuda` without an active CUDA provider).

    Not a `SeqServeError`: it never reaches a client, it stops the start-up with a clear message.
    """


CLIP_CHARS = 64  # client text (names, ids) echoed in an error message, at most


def clip(value: object, limit: int = CLIP_CHARS) -> str:
    """`repr(value)` cut to `limit` characters: client text in an error message never makes it unbounded."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"
