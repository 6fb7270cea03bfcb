-- Background loops that run on one replica at a time (scan, plan, expiry,
-- drift, stability, delivery): which replica holds each, since when and
-- until when, in the database's own clock (milliseconds since the epoch),
-- so replicas whose clocks disagree still agree on who holds what.
CREATE TABLE singletons (
    name        TEXT    PRIMARY KEY,
    holder      TEXT    NOT NULL,
    acquired_at BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);
