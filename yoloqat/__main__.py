"""``python -m yoloqat`` runs the CLI."""

from yoloqat.cli import main

main()
