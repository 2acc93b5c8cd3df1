-- Server-wide settings shared by every instance on one database (the signing key of a
-- PostgreSQL site where none is configured, so that tokens work across instances).
CREATE TABLE settings (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
