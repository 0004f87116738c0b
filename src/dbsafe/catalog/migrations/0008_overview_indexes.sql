-- The portal's dashboard: the newest failed jobs, without reading every job.
CREATE INDEX jobs_state ON jobs (state, start_time);
