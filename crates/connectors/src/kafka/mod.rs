//! kafka adapter.
