"""``python -m mmfuse.app.cli``."""

from mmfuse.app.cli import main

main()
