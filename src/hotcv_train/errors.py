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


class BadSample(UserError):
    """One bad sample, reported as one line even from a DataLoader worker.

    PyTorch rebuilds a worker's exception in the main process as `type(e)(text)`, where the text
    is "Caught ... Original Traceback ..."; the original message is the traceback's last line.
    """

    def __init__(self, problem: str):
        if "Original Traceback" in problem:
            problem = problem.rstrip().rsplit("\n", 1)[-1].split(": ", 1)[-1]
        super().__init__(problem)
