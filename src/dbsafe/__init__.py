"""dbsafe: a backup vault for PostgreSQL on virtual machines.

Layers, top to bottom (data flows down, never up):
``cli`` → ``services`` → {``engines``, ``catalog``} and ``vault`` → ``storage`` → ``core``.
Engines never import the vault; services join them.
"""

__version__ = "0.1.0"
