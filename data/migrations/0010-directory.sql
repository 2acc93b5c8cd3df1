-- Directory logins (issue "Institute accounts"): a user row made or kept up to date by a login
-- against the institute's LDAP directory has source 'directory', the DN of its entry and no usable
-- password here (password_hash holds a marker no password matches). Assignments given by the
-- directory's experiment groups have source 'directory' and follow the groups at each login; those
-- made here ('local') are kept.
ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'local';
ALTER TABLE users ADD COLUMN directory_dn TEXT;
ALTER TABLE user_experiments ADD COLUMN source TEXT NOT NULL DEFAULT 'local';
