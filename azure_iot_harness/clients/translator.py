"""Not built yet.

Not built yet."""

HELP = "(not built yet)"


def add_arguments(p):
    pass


def run(args):
    from .common import ClientError

    raise ClientError("this variant is not built yet", 2)
