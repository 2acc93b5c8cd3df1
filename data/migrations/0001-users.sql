-- Users and their credentials. Portable SQL: runs on SQLite and PostgreSQL.
-- password_version is raised at every password change; tokens carry it as "pwv".
CREATE TABLE users (
  user_id TEXT PRIMARY KEY,
  login_name TEXT NOT NULL UNIQUE,
  first_name TEXT NOT NULL,
  last_name TEXT NOT NULL,
  email TEXT,
  password_hash TEXT NOT NULL,
  user_type TEXT NOT NULL DEFAULT 'User',
  preferred_language TEXT NOT NULL DEFAULT 'en',
  password_version INTEGER NOT NULL DEFAULT 0
);
