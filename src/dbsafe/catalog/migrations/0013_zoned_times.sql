-- Times the catalog stamped itself (a server's and a replica set's creation, a node's
-- addition, a database's discovery, an item's protection) were 'YYYY-MM-DD HH:MM:SS' in UTC
-- without saying so, and were shown that way. They are ISO 8601 with their offset now, like
-- every other time the catalog holds ('2026-12-05T17:05:00+00:00').
UPDATE servers SET created = replace(created, ' ', 'T') || '+00:00'
    WHERE created LIKE '____-__-__ __:__:__';
UPDATE replica_sets SET created = replace(created, ' ', 'T') || '+00:00'
    WHERE created LIKE '____-__-__ __:__:__';
UPDATE replica_set_nodes SET added = replace(added, ' ', 'T') || '+00:00'
    WHERE added LIKE '____-__-__ __:__:__';
UPDATE databases SET discovered = replace(discovered, ' ', 'T') || '+00:00'
    WHERE discovered LIKE '____-__-__ __:__:__';
UPDATE protected_databases SET since = replace(since, ' ', 'T') || '+00:00'
    WHERE since LIKE '____-__-__ __:__:__';
