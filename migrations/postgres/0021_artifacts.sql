-- What runs build. An artifact is one app's source tree built by one
-- pipeline commit: a fast-forward and a merge commit with the same tree
-- are one artifact. A run points at the artifact it builds.
CREATE TABLE artifacts (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id        BIGINT  NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    source_tree   TEXT    NOT NULL,
    pipeline_sha  TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    UNIQUE (app_id, source_tree, pipeline_sha)
);
ALTER TABLE runs ADD COLUMN artifact_id BIGINT REFERENCES artifacts(id);
-- What a run's steps declared through $GANTRY_OUTPUTS (an image with its
-- digest, a file with its checksum): a later step's value of a name wins.
CREATE TABLE run_outputs (
    run_id  BIGINT  NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name    TEXT    NOT NULL,
    value   TEXT    NOT NULL,
    step    TEXT    NOT NULL,
    PRIMARY KEY (run_id, name)
);
