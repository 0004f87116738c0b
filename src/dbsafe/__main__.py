"""``python -m dbsafe`` runs the command line."""

from dbsafe.cli.app import main

main()
