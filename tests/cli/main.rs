//! Integration tests of the `cryptolake` binary against real components: the SQLite catalog,
//! the local warehouse, moto's Glue and S3, and PyIceberg and DuckDB as independent readers.
//! One test binary.

mod alerts;
mod assets;
mod bookmarks;
mod cluster;
mod common;
mod compaction;
pub mod console;
mod containers;
mod crash;
mod damaged;
mod evolution;
mod fake_api;
mod glue;
mod gold_values;
mod kafka;
mod kills;
mod landing;
#[allow(dead_code)] // shared with the catalog and jobs tests, which use all of it
#[path = "../../catalog/tests/catalog/moto.rs"]
mod moto;
mod neighbours;
mod pipeline;
mod poll;
mod proxy;
pub mod readers;
pub mod scheduling;
mod sources;
