"""Why the stack cannot start."""


class StackError(Exception):
    """The stack cannot start; each argument is one line the operator sees."""
