//! Integration tests of the `cryptolake` binary against real components: the SQLite catalog,
//! the local warehouse, and PyIceberg as an independent reader. One test binary.

mod common;
mod compaction;
mod crash;
mod gold_values;
mod pipeline;
pub mod readers;
mod scheduling;
