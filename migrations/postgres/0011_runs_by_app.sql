-- An app's page lists its newest runs.
CREATE INDEX runs_by_app ON runs (app_id, id);
