-- A Corrosion schema file: every table has a NOT NULL primary key, and NOT NULL columns
-- have defaults, as Corrosion requires.
CREATE TABLE todos (
    id BLOB NOT NULL PRIMARY KEY,
    title TEXT NOT NULL DEFAULT '',
    completed_at INTEGER
);
