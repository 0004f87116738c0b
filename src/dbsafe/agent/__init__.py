"""The resident agent: receives WAL files from PostgreSQL's archive_command.

PostgreSQL starts ``archive_command`` once per 16 MB segment, as the ``postgres`` user. A
Python process that imports dbsafe costs ~330 ms to start here; a bare ``python3 -I -S``
with only the standard library ~25-40 ms. So the archive command is a tiny stdlib-only
client (``client.py``) that hands the file name to this agent over a local socket and
waits for its answer; the agent keeps the vault open, stores the segment, and reads ahead:
the segments PostgreSQL marked ``.ready`` are pushed in parallel before it asks for them.
"""
