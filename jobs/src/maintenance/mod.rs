//! Table maintenance, as Spark's Iceberg procedures: `compact` (rewrite_data_files),
//! `rewrite-manifests`, `expire-snapshots` and `remove-orphans`. Maintenance never imports
//! the pipeline: what it must keep (bookmarks, the files-taken log) is in
//! [`crate::bookmarks`].

pub mod compact;
pub mod expire_snapshots;
pub mod options;
pub mod reachable;
pub mod remove_orphans;
pub mod rewrite_manifests;
