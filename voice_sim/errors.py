"""One exception root for the package.

Every failure a user can cause or fix is a :class:`VoiceSimError`. Its message is one
line that says what is wrong, where (file, line, field or device) and how to fix it;
the CLI prints exactly that line and exits with :attr:`VoiceSimError.exit_code`.
Third-party failures are wrapped once, at the boundary where they happen, with
``raise ... from e``.
"""

from __future__ import annotations

_CONTROL = {**{c: f"\\x{c:02x}" for c in (*range(32), 127)}, 9: "\\t", 10: "\\n", 13: "\\r"}


def one_line(text: str) -> str:
    """``text`` with control characters written out (``\\n``, ``\\x1b``): a file name or
    YAML key from a user can hold a newline, which would break the one-line rule, or a
    terminal escape sequence, which the terminal would obey."""
    return text.translate(_CONTROL)


class VoiceSimError(Exception):
    """Base of every error voice-sim reports to a user."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        """The single line the CLI prints."""
        return one_line(f"{self.message} — {self.hint}" if self.hint else self.message)


class InputError(VoiceSimError):
    """A bad argument or input file (wrong value, missing path, bad format)."""


class AudioError(InputError):
    """An audio file that cannot be read, or holds no usable sound."""


class DeviceError(VoiceSimError):
    """No usable audio device, or the named one does not exist."""


class ModelError(VoiceSimError):
    """A speech model is missing, broken or could not be fetched."""


class TTSError(VoiceSimError):
    """The text-to-speech engine could not render a line."""


class PersonaError(InputError):
    """A persona script is invalid. ``problems`` holds every problem found."""

    def __init__(self, message: str, *, hint: str | None = None,
                 problems: tuple[object, ...] = ()) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems


class RubricError(InputError):
    """A rubric file is invalid."""


class SessionError(VoiceSimError):
    """A session folder or history database is unusable."""
