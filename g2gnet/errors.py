"""The one exception type for user mistakes: the CLI prints it as a single line, no traceback."""


class G2GError(ValueError):
    """A user-facing error (bad name, impossible size, corrupt data, foreign checkpoint).

    Subclasses ValueError so library users can catch it the usual way; the CLI turns it into
    ``g2g: error: <message>`` and exit status 2.
    """
