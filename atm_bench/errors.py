"""Errors a user can fix. The CLI prints them as one line, without a traceback."""


class UserError(Exception):
    """Bad input: the message names the problem and the fix."""


def choice_error(what: str, value: object, choices) -> UserError:
    """A `UserError` for a value outside a fixed set, listing the valid choices."""
    listed = ", ".join(str(c) for c in choices)
    return UserError(f"unknown {what} {value!r}; valid choices: {listed}")
