"""Kept so kernelspecs installed before 0.2 (``-m codeact_kernel.launcher``) still start.

The launcher lives in :mod:`codeact_kernel.sandbox.launcher`; ``codeact kernelspec install``
writes the new name.
"""

from __future__ import annotations

import sys
import warnings

from .sandbox.launcher import main

if __name__ == "__main__":
    warnings.warn(
        "this kernelspec names codeact_kernel.launcher; reinstall it with "
        "'codeact kernelspec install' (the launcher is codeact_kernel.sandbox.launcher)",
        DeprecationWarning,
        stacklevel=1,
    )
    sys.exit(main())
