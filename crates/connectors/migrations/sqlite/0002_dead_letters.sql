-- Dead letters (tributary_core::dead_letter): what Tributary refused, with the reason.
-- `at` is INTEGER epoch milliseconds, `origin` the JSON of the Origin, `truncated` 0 or 1.
-- First version wins: `put_dead_letters` inserts with ON CONFLICT DO NOTHING.
CREATE TABLE dead_letters (
    id        TEXT    NOT NULL PRIMARY KEY,
    at        INTEGER NOT NULL,
    stream    TEXT    NOT NULL,
    origin    TEXT    NOT NULL,
    reason    TEXT    NOT NULL,
    raw       TEXT    NOT NULL,
    truncated INTEGER NOT NULL CHECK (truncated IN (0, 1))
);

-- Serves `recent_dead_letters`: newest first, ties broken by id.
CREATE INDEX dead_letters_at_id ON dead_letters (at DESC, id DESC);
