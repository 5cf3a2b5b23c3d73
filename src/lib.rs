//! The `cryptolake` command line: arguments, configuration and output. The work itself is in
//! the `cryptolake-jobs`, `cryptolake-catalog` and `cryptolake-scheduler` crates.

pub mod cli;
