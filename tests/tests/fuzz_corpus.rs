//! Replays every seed and crash input kept in `fuzz/corpus/<target>/` through the same
//! checking functions the fuzz targets run (`fuzz/checks.rs`), as ordinary tests.

use std::fs;
use std::path::PathBuf;

#[path = "../../fuzz/checks.rs"]
mod checks;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    let mut failures = Vec::new();
    for f in &files {
        let data = fs::read(f).unwrap();
        if let Err(e) = std::panic::catch_unwind(|| check(&data)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {msg}", f.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of {} corpus input(s) failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn decode_record_corpus() {
    replay("decode_record", checks::decode_record);
}

#[test]
fn recover_segment_corpus() {
    replay("recover_segment", checks::recover_segment);
}

#[test]
fn ops_with_crash_corpus() {
    replay("ops_with_crash", checks::ops_with_crash);
}
