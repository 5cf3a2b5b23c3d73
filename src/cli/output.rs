//! Printing results: aligned text for people, JSON (an array of objects) for scripts.

use serde_json::{Map, Value};

use super::CliError;

/// Pretty JSON of a value; a value that does not serialize is an error, never an empty line.
pub fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(value).map_err(|e| {
        CliError::Job(cryptolake_jobs::Error::Internal(format!(
            "the output does not serialize as JSON: {e}"
        )))
    })
}

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Prints rows (objects with the same keys) as a table or a JSON array.
pub fn print_rows(rows: &[Map<String, Value>], columns: &[&str], format: Format) {
    match format {
        // A JSON value always prints (`{:#}` is pretty and infallible).
        Format::Json => println!("{:#}", Value::from(rows.to_vec())),
        Format::Text => print!("{}", render_table(rows, columns)),
    }
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Renders rows as an aligned text table.
pub fn render_table(rows: &[Map<String, Value>], columns: &[&str]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(r.get(*c))).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<String>| -> String {
        values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
            + "\n"
    };
    let mut out = line(columns.iter().map(|c| c.to_string()).collect());
    for r in cells {
        out.push_str(&line(r));
    }
    out
}

/// Builds a row object from key/value pairs.
pub fn row<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_tables_align() {
        let rows = vec![
            row([("a", json!("x")), ("b", json!(10))]),
            row([("a", json!("long")), ("b", Value::Null)]),
        ];
        assert_eq!(
            render_table(&rows, &["a", "b"]),
            "a     b\nx     10\nlong\n"
        );
    }
}
