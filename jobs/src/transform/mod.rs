//! Per-record logic that plan nodes run: silver's parsing, normalizing, deduplication keys and
//! the sink stage that writes the silver tables.

pub mod silver;
