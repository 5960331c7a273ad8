"""The one exception type users see: a message they can act on, printed by the CLI without a traceback."""


class OwnGPTError(Exception):
    """An error caused by the user's input or environment, with a message that says what to do."""
