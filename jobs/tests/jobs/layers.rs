//! The crate's layers point one way: a module imports only from its own layer or the ones
//! below (the table in `lib.rs`), and the two job families never import each other.

use std::collections::BTreeSet;
use std::path::Path;

/// Layers, lowest first.
const LAYERS: [&[&str]; 5] = [
    &["job", "bookmarks"],
    &["sources", "iceberg", "generate"],
    &["transform"],
    &["physical_plan", "codec", "engine"],
    &["pipeline", "maintenance"],
];

/// Modules of one layer that must not import each other.
const APART: [(&str, &str); 2] = [("maintenance", "pipeline"), ("pipeline", "maintenance")];

fn layer(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module {module} is in no layer: add it to LAYERS"))
}

/// `crate::<module>` paths used in a file's code (comments left out).
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (i, _) in line.match_indices("crate::") {
            let rest = &line[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            // `crate::{Error, Result}` and other root re-exports are the core layer's.
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut wrong = Vec::new();
    let mut checked = 0;
    for path in all {
        let rel = path.strip_prefix(&src).unwrap();
        let top = rel.iter().next().unwrap().to_string_lossy();
        let module = top.trim_end_matches(".rs");
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for imported in imports(&text) {
            checked += 1;
            let upward = layer(&imported) > layer(module);
            let apart = APART.contains(&(module, imported.as_str()));
            if upward || apart {
                wrong.push(format!("{} imports crate::{imported}", rel.display()));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} imports found: is the scan broken?"
    );
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_scan_finds_an_upward_import() {
    let text =
        "use crate::pipeline::silver::Silver;\n// use crate::engine;\nuse crate::{Error, Result};";
    assert_eq!(
        imports(text),
        BTreeSet::from(["pipeline".to_string()]),
        "comments and root re-exports are not layer imports"
    );
    assert!(layer("pipeline") > layer("sources"));
}
