"""`apt assets`: (to be written)."""

HELP = "(not yet implemented)"


def add_arguments(parser):
    pass


def run(args):
    raise NotImplementedError("apt assets")
