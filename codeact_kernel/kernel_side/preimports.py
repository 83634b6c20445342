# Runs INSIDE the sandboxed kernel, at startup: the modules a notebook user has imported
# already, so that a model's `np.mean(...)` without `import numpy as np` works (a NameError
# on np cost small models a step). The system prompt lists them (agent/prompt.py).
import collections  # noqa: F401
import json  # noqa: F401
import math  # noqa: F401
import re  # noqa: F401
import statistics  # noqa: F401

try:
    import numpy as np  # noqa: F401
except ImportError:  # a kernel environment without numpy: the model imports what it has
    pass
try:
    import pandas as pd  # noqa: F401
except ImportError:
    pass
