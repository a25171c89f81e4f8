"""``python -m mmfuse``: the same as the ``mmfuse`` console script."""

from mmfuse.app.cli import main

main()
