-- Session ids are kept as their SHA-256 from now on: sessions stored with
-- the id itself can no longer be found, and are removed (people sign in
-- again once).
DELETE FROM user_sessions;
