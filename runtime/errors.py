"""The exceptions gpt2onnx raises for problems a user can fix.

Each carries a one-line message that says what is wrong and how to fix it; the
CLI prints that line alone (no traceback) and exits with `exit_code`.
"""


def short(value, limit: int = 60) -> str:
    """repr of a value the user gave (a setting, a JSON field), cut to fit in a one-line message."""
    try:
        text = repr(value)
    except RecursionError:  # deeply nested junk
        text = f"<nested {type(value).__name__}>"
    except ValueError:  # an int of more digits than Python will print
        text = f"<{type(value).__name__} too long to print>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Gpt2OnnxError(Exception):
    """Base class: a failure gpt2onnx can explain in one line."""

    exit_code = 1


class UsageError(Gpt2OnnxError, ValueError):
    """Bad input from the user: a path, a setting, a prompt (exit code 2)."""

    exit_code = 2


class ModelLoadError(UsageError):
    """A model folder that can't be run: missing files, bad manifest, wrong graph."""


class ProviderError(Gpt2OnnxError):
    """An execution provider that was asked for explicitly but can't run here."""
