"""Use cases: each function here is one thing a user asks for (init a vault, add a server,
back up, restore, verify). They join the engines to the vault and record jobs; the CLI and,
later, the API call them and nothing below them."""
