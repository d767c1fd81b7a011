-- Keyed state (tributary_core::ports::KeyedState): entries of a pipeline's operator state
-- replaced whole when they change (for the window operator, the accumulators of one window
-- and key). `commit_checkpoint` deletes the dropped groups and the removed entries, then
-- upserts the new ones, in the checkpoint's transaction (under `BEGIN IMMEDIATE`); `claim`
-- reads them by (grp, key), keys compared bytewise. `epoch` is the epoch of the checkpoint
-- that last wrote the entry. Entries may be large, so the table keeps its rowid.
--
-- Since typed results, each pipeline's results live in a table of their own
-- (`results_{pipeline}`, created by `prepare_results`); `window_results` stays, read only, so
-- that `prepare_results` can copy an upgraded pipeline's rows into its new table.
CREATE TABLE checkpoint_state (
    pipeline TEXT    NOT NULL,
    grp      INTEGER NOT NULL,
    key      BLOB    NOT NULL,
    bytes    BLOB    NOT NULL,
    epoch    INTEGER NOT NULL CHECK (epoch > 0),
    PRIMARY KEY (pipeline, grp, key)
);
