"""The notebook face: ``%%agent`` (``magic``) and its live ``display`` in the cell."""
