"""Kiln's compiler: ONNX -> IR -> passes -> target code -> Artifact."""


def compile(model, target: str = "ref", **options):
    """Compile `model` for `target` and return an Artifact (see compiler.driver.compile)."""
    from compiler.driver import compile as _compile

    return _compile(model, target, **options)


__all__ = ["compile"]
