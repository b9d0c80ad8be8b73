"""Before a run: what it will cost (``--estimate``), from the input and settings alone."""
