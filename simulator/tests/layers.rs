//! The simulator's parts depend one way: `npu` on nothing of the others, `predict` on `npu`,
//! `fit` on both. A `use` that runs back up fails here, naming the file and the line.

use std::path::Path;

/// Every `.rs` file below `dir`.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Lines of the files of `part` that name a part it must not use.
fn back_references(part: &str, forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(part);
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(!files.is_empty(), "no sources under {}", root.display());
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            for f in forbidden {
                if line.contains(&format!("crate::{f}")) {
                    found.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn the_npu_model_uses_neither_predictions_nor_fits() {
    let found = back_references("npu", &["predict", "fit", "SimulatedSoc"]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn predictions_use_no_fit() {
    let found = back_references("predict", &["fit"]);
    assert!(found.is_empty(), "{found:#?}");
}
