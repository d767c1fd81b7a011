//! redb adapter.
