"""The one exception type users see: a problem with their input, stated with its fix."""


class JaxstyleError(ValueError):
    """Bad input or configuration. The message is one line naming the problem and the fix.

    The CLI prints it as ``jaxstyle: error: <message>`` and exits with status 2.
    """
