"""The one exception type that reaches the user as plain lines instead of a traceback."""


class UserError(Exception):
    """A problem the user fixes in the config, the command line or the data.

    Carries every problem found, one line each, so a run fails once with the whole list.
    """

    def __init__(self, *problems: str):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class NonFiniteLossError(UserError):
    """The training loss became NaN or infinite: stop, since every later step is wasted."""
