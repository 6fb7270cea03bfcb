-- This installation's tag, one row shared by all its replicas. Build pods
-- carry it, so one Gantry's clean-up loop collects what any of its
-- replicas left on a build cluster and never touches another Gantry's.
CREATE TABLE installation (
    id  INTEGER PRIMARY KEY,
    tag TEXT    NOT NULL
);
