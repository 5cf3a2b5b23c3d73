//! The upsert of `silver.assets`, as Spark's `MERGE INTO` does it copy-on-write: an asset
//! whose attributes changed is replaced (or, with history, its current version is closed and a
//! new one added), a new asset is inserted, an unchanged one is untouched. Only the data files
//! holding a changed row are rewritten, with all their rows; every other file stays.

use std::collections::{BTreeMap, HashMap};

/// What CoinCap says of an asset: the attributes an upsert compares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub symbol: Option<String>,
    pub name: Option<String>,
    pub rank: Option<i32>,
    /// Decimals at the table's scale (16).
    pub supply: Option<i128>,
    pub max_supply: Option<i128>,
    pub market_cap_usd: Option<i128>,
}

/// One row of `silver.assets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRow {
    pub id: String,
    pub attrs: Attributes,
    pub icon_url: Option<String>,
    pub updated_us: i64,
    pub valid_from_us: i64,
    /// Set on a closed version (history only).
    pub valid_to_us: Option<i64>,
}

/// An asset's newest state in CoinCap's answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetState {
    pub attrs: Attributes,
    pub updated_us: i64,
}

/// An icon's newest URL, by upper-case asset symbol, with when it was ingested.
pub type Icons = BTreeMap<String, (String, i64)>;

/// What the merge changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Merged {
    /// Indexes of the current files to remove (each rewritten into `rows`).
    pub rewrite: Vec<usize>,
    /// The rows to write: the rewritten files' rows after the merge, then new rows.
    pub rows: Vec<AssetRow>,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
}

impl AssetRow {
    fn same_attributes(&self, other: &AssetRow) -> bool {
        self.attrs == other.attrs && self.icon_url == other.icon_url
    }

    fn with_state(&self, s: &AssetState) -> AssetRow {
        AssetRow {
            attrs: s.attrs.clone(),
            updated_us: s.updated_us,
            ..self.clone()
        }
    }
}

fn icon_of<'a>(icons: &'a Icons, symbol: Option<&str>) -> Option<&'a (String, i64)> {
    icons.get(&symbol?.to_ascii_uppercase())
}

/// Merges the new asset states and icons into the table's files (`files[i]`: the rows of its
/// i-th live data file). `history` keeps a closed version per change (SCD type 2).
pub fn merge(
    files: &[Vec<AssetRow>],
    states: &BTreeMap<String, AssetState>,
    icons: &Icons,
    history: bool,
) -> Merged {
    let mut files: Vec<Vec<AssetRow>> = files.to_vec();
    let mut dirty = vec![false; files.len()];
    let current: HashMap<String, (usize, usize)> = files
        .iter()
        .enumerate()
        .flat_map(|(f, rows)| {
            rows.iter()
                .enumerate()
                .filter(|(_, r)| r.valid_to_us.is_none())
                .map(move |(i, r)| (r.id.clone(), (f, i)))
        })
        .collect();
    let mut out = Merged::default();
    let mut new_rows: Vec<AssetRow> = Vec::new();
    // An asset's candidate row after this run, and whether it is already in a file.
    let mut next: BTreeMap<String, (AssetRow, Option<(usize, usize)>)> = BTreeMap::new();
    for (id, state) in states {
        match current.get(id) {
            Some(&(f, i)) => {
                let cur = &files[f][i];
                if state.updated_us < cur.updated_us {
                    continue; // older than what the table holds
                }
                next.insert(id.clone(), (cur.with_state(state), Some((f, i))));
            }
            None => {
                let row = AssetRow {
                    id: id.clone(),
                    attrs: state.attrs.clone(),
                    icon_url: None,
                    updated_us: state.updated_us,
                    valid_from_us: state.updated_us,
                    valid_to_us: None,
                };
                next.insert(id.clone(), (row, None));
            }
        }
    }
    // A new icon changes every current asset of its symbol, not only those updated now.
    for (id, &(f, i)) in &current {
        let row = &files[f][i];
        if !next.contains_key(id)
            && icon_of(icons, row.attrs.symbol.as_deref())
                .is_some_and(|(url, _)| Some(url) != row.icon_url.as_ref())
        {
            next.insert(id.clone(), (row.clone(), Some((f, i))));
        }
    }
    for (_, (mut row, at)) in next {
        let mut changed_at = row.updated_us;
        if let Some((url, ingested)) = icon_of(icons, row.attrs.symbol.as_deref())
            && row.icon_url.as_ref() != Some(url)
        {
            row.icon_url = Some(url.clone());
            if at.is_some_and(|(f, i)| files[f][i].updated_us == row.updated_us) {
                changed_at = changed_at.max(*ingested);
            }
        }
        let Some((f, i)) = at else {
            out.inserted += 1;
            new_rows.push(row);
            continue;
        };
        if files[f][i].same_attributes(&row) {
            out.unchanged += 1;
            continue;
        }
        out.updated += 1;
        dirty[f] = true;
        if history {
            files[f][i].valid_to_us = Some(changed_at);
            new_rows.push(AssetRow {
                valid_from_us: changed_at,
                valid_to_us: None,
                ..row
            });
        } else {
            files[f][i] = AssetRow {
                valid_from_us: changed_at,
                ..row
            };
        }
    }
    for (f, rows) in files.into_iter().enumerate() {
        if dirty[f] {
            out.rewrite.push(f);
            out.rows.extend(rows);
        }
    }
    out.rows.extend(new_rows);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const E16: i128 = 10_000_000_000_000_000;

    fn state(symbol: &str, rank: i32, supply: i128, at: i64) -> AssetState {
        AssetState {
            attrs: Attributes {
                symbol: Some(symbol.into()),
                name: Some(format!("{symbol} coin")),
                rank: Some(rank),
                supply: Some(supply * E16),
                max_supply: None,
                market_cap_usd: Some(supply * 2 * E16),
            },
            updated_us: at,
        }
    }

    fn states(list: &[(&str, AssetState)]) -> BTreeMap<String, AssetState> {
        list.iter()
            .map(|(id, s)| (id.to_string(), s.clone()))
            .collect()
    }

    #[test]
    fn inserts_updates_and_leaves_unchanged_files_alone() {
        let first = merge(
            &[],
            &states(&[
                ("bitcoin", state("BTC", 1, 19, 10)),
                ("ethereum", state("ETH", 2, 120, 10)),
            ]),
            &Icons::new(),
            false,
        );
        assert_eq!(
            (first.inserted, first.updated, first.rewrite.len()),
            (2, 0, 0)
        );
        // Two files now: bitcoin alone, ethereum alone.
        let files = vec![vec![first.rows[0].clone()], vec![first.rows[1].clone()]];
        let icons: Icons = [("ETH".to_string(), ("https://i/eth.png".to_string(), 15))].into();
        let second = merge(
            &files,
            &states(&[
                ("bitcoin", state("BTC", 1, 19, 20)), // only the time moved: unchanged
                ("solana", state("SOL", 5, 400, 20)),
            ]),
            &icons,
            false,
        );
        assert_eq!(
            (second.inserted, second.updated, second.unchanged),
            (1, 1, 1)
        );
        assert_eq!(second.rewrite, vec![1]);
        assert_eq!(second.rows.len(), 2);
        assert_eq!(
            second.rows[0].icon_url.as_deref(),
            Some("https://i/eth.png")
        );
        assert_eq!(second.rows[0].valid_from_us, 15);
        assert_eq!(second.rows[1].id, "solana");
        // An older state than the table's is ignored.
        let stale = merge(
            &files,
            &states(&[("bitcoin", state("BTC", 9, 1, 5))]),
            &Icons::new(),
            false,
        );
        assert_eq!(stale, Merged::default());
    }

    #[test]
    fn history_closes_the_old_version_and_adds_the_new_one() {
        let first = merge(
            &[],
            &states(&[("bitcoin", state("BTC", 1, 19, 10))]),
            &Icons::new(),
            true,
        );
        let files = vec![first.rows.clone()];
        let second = merge(
            &files,
            &states(&[("bitcoin", state("BTC", 1, 20, 30))]),
            &Icons::new(),
            true,
        );
        assert_eq!(second.rewrite, vec![0]);
        assert_eq!(second.rows.len(), 2);
        assert_eq!(
            (
                second.rows[0].valid_from_us,
                second.rows[0].valid_to_us,
                second.rows[0].attrs.supply
            ),
            (10, Some(30), Some(19 * E16))
        );
        assert_eq!(
            (
                second.rows[1].valid_from_us,
                second.rows[1].valid_to_us,
                second.rows[1].attrs.supply
            ),
            (30, None, Some(20 * E16))
        );
        // The closed version is never matched again.
        let third = merge(
            std::slice::from_ref(&second.rows),
            &states(&[("bitcoin", state("BTC", 1, 20, 40))]),
            &Icons::new(),
            true,
        );
        assert_eq!((third.unchanged, third.rewrite.len()), (1, 0));
    }
}
