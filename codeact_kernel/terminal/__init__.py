"""The terminal face: the ``codeact`` command (``cli``), its live ``display`` and the
README's ``demo`` task."""
