"""(to be written: see shared/method.md)."""

NEEDS_HESSIAN = True


def prune(weight, hessian, pattern, sparsity, **options):
    raise NotImplementedError("sparsegpt")
