"""``python -m govshare`` is the same as the ``govshare`` command."""

from govshare.cli import main

main()
