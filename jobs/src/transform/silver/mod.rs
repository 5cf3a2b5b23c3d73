//! silver's per-record logic, run by the silver plan nodes: parsing and normalizing bronze
//! records ([`parse`], [`normalize`]), the wide rows stage one emits ([`stage`]), the
//! deduplication fingerprints ([`dedup`]) with the table files their keys are read from
//! ([`key_files`]), and the sink that writes the three tables.

mod batches;
mod dedup;
mod key_files;
pub mod normalize;
pub mod parse;
pub mod stage;

use cryptolake_catalog::layout::{self, TableLayout};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The three outputs, in commit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    Quotes,
    Trades,
    Quarantine,
}

impl Output {
    pub const ALL: [Output; 3] = [Output::Quotes, Output::Trades, Output::Quarantine];

    /// Position in [`Output::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: usize) -> Result<Self> {
        Self::ALL
            .get(i)
            .copied()
            .ok_or_else(|| Error::Internal(format!("no silver output {i}")))
    }

    /// The table's name in the `silver` namespace.
    pub fn name(self) -> &'static str {
        match self {
            Output::Quotes => "quotes",
            Output::Trades => "trades",
            Output::Quarantine => "quarantine",
        }
    }

    pub fn from_name(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|o| o.name() == name)
            .ok_or_else(|| Error::Internal(format!("no silver output {name}")))
    }

    pub fn layout(self) -> TableLayout {
        match self {
            Output::Quotes => layout::silver_quotes(),
            Output::Trades => layout::silver_trades(),
            Output::Quarantine => layout::silver_quarantine(),
        }
    }
}
