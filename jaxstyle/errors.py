"""The one exception type users see: a problem with their input, stated with its fix."""


class JaxstyleError(ValueError):
    """Bad input or configuration. The message is one line naming the problem and the fix.

    The CLI prints it as ``jaxstyle: error: <message>`` and exits with status 2.
    """


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocator's refusal: Python's ``MemoryError`` or XLA's
    ``RESOURCE_EXHAUSTED`` (host or device memory)."""
    text = str(error)
    return isinstance(error, MemoryError) or "RESOURCE_EXHAUSTED" in text or "Out of memory" in text
