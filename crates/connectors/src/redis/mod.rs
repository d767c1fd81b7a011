//! redis adapter.
