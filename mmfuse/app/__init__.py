"""The applications on top of the library: the ``mmfuse`` CLI, the demo and its HTML report."""
