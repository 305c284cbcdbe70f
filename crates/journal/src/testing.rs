//! Helpers shared by the unit tests.

use crate::{Journal, JournalOptions, RecordIn};

/// A closed journal made with `opts` from `n` records, the `i`-th of `len` bytes
/// each equal to `i as u8`.
pub(crate) fn closed_journal(opts: &JournalOptions, n: u64, len: usize) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let j = Journal::open(t.path(), opts.clone()).unwrap();
    for i in 0..n {
        j.append(&RecordIn::new(&vec![i as u8; len])).unwrap();
    }
    j.close().unwrap();
    t
}

/// Reads the file at `path`, lets `f` change its bytes, and writes them back.
pub(crate) fn edit_file(path: &std::path::Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(path).unwrap();
    f(&mut b);
    std::fs::write(path, &b).unwrap();
}
