"""The notebook face: ``%%agent`` (``magic``), its live ``display`` in the cell, and the
``handoff`` of the notebook's variables into the sandbox."""
