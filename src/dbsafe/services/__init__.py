"""Use cases: each function of a group is one thing a user asks for (init a vault, add a
server, back up, restore, verify). They join the engines to the vault and record jobs.

Nine groups, one folder each, bottom first; a group imports only those below it:
``handle`` (the opened vault), ``activity`` (jobs, alerts), ``inventory`` (servers,
policies, limits), ``logchain`` (WAL), ``lifecycle`` (points over time), ``protection``,
``backup``, ``restore``, ``operations`` (health, overview, access). The interfaces (CLI,
API, portal, scheduler, agent) import a group's published names from its package, never a
module inside. docs/architecture.md draws the map; import-linter holds it.
"""
