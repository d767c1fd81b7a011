-- Keyed state (tributary_core::ports::KeyedState): entries of a pipeline's operator state
-- replaced whole when they change (for the window operator, the accumulators of one window
-- and key). `commit_checkpoint` deletes the dropped groups and the removed entries, then
-- upserts the new ones, in the checkpoint's transaction under the owner row's lock; `claim`
-- reads them by (grp, key). `epoch` is the epoch of the checkpoint that last wrote the entry.
--
-- Since typed results, each pipeline's results live in a table of their own
-- (`results_{pipeline}`, created by `prepare_results`); `window_results` stays, read only, so
-- that `prepare_results` can copy an upgraded pipeline's rows into its new table.
CREATE TABLE checkpoint_state (
    pipeline text   NOT NULL,
    grp      bigint NOT NULL,
    key      bytea  NOT NULL,
    bytes    bytea  NOT NULL,
    epoch    bigint NOT NULL CHECK (epoch > 0),
    PRIMARY KEY (pipeline, grp, key)
);
