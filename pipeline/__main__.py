"""``python -m pipeline`` runs the vnnews CLI (used where the console script is not on PATH)."""

from pipeline.cli import main

main()
