"""Keep libraries' deprecation notices about themselves off the operator's terminal.

asyncssh (2.x) still names cryptography's DSA classes in its type hints, and
cryptography 48 and later warn about DSA when they are touched: importing asyncssh
printed ten lines of ``CryptographyDeprecationWarning`` on stderr, in the middle of
a command's output.  They tell asyncssh's maintainers something, not an operator;
only that category, raised from asyncssh's own modules, is silenced.  Anything else
(our own warnings, other libraries') still shows.
"""

from __future__ import annotations

import warnings

__all__ = ["silence_library_warnings"]


def silence_library_warnings() -> None:
    """Ignore cryptography's deprecation warnings raised while asyncssh is imported or used.

    Call before asyncssh is imported (the warnings come at import time), once per process."""
    try:
        from cryptography.utils import CryptographyDeprecationWarning
    except ImportError:  # no cryptography: nothing to silence
        return
    warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning, module=r"asyncssh(\.|$)")
