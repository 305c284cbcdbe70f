#![cfg(all(not(ledgerq_loom), unix))]
//! Removed segment files are reused as new segments, and nothing of their previous
//! life is ever read back (live, after a reopen, or by a cursor).

use std::path::Path;

use ledgerq_journal::*;

const SEG: u64 = 64 * 1024;

/// Hard-links the first `n` segment files (so their inodes outlive removal) and
/// returns the links with the base ID each header had.
fn keep(dir: &Path, n: usize) -> Vec<(std::path::PathBuf, u64)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v.into_iter()
        .take(n)
        .enumerate()
        .map(|(i, p)| {
            let link = dir.join(format!("keep{i}"));
            std::fs::hard_link(&p, &link).unwrap();
            (link.clone(), header_base(&link))
        })
        .collect()
}

fn header_base(p: &Path) -> u64 {
    let b = std::fs::read(p).unwrap();
    u64::from_le_bytes(b[16..24].try_into().unwrap())
}

/// How many kept files now hold another segment (were reused).
fn reused(kept: &[(std::path::PathBuf, u64)]) -> usize {
    kept.iter()
        .filter(|(p, base)| header_base(p) != *base)
        .count()
}

fn read_all(j: &Journal, from: u64) -> Vec<(u64, Vec<u8>)> {
    let mut c = j.cursor(from).unwrap();
    let mut out = Vec::new();
    while let Some(r) = c.next(j, |v| (v.id(), v.payload().to_vec())).unwrap() {
        out.push(r);
    }
    out
}

fn fill_segment(j: &Journal, byte: u8) {
    let start = j.segments().len();
    let payload = vec![byte; 1000];
    while j.segments().len() == start {
        j.append(&RecordIn::new(&payload)).unwrap();
    }
}

#[test]
fn removed_segments_are_reused_without_stale_records() {
    let d = tempfile::tempdir().unwrap();
    let j = Journal::open(
        d.path(),
        JournalOptions::new()
            .segment_size(SEG)
            .recycle_segments(true),
    )
    .unwrap();
    fill_segment(&j, 1);
    fill_segment(&j, 2);
    let kept = keep(d.path(), 2);
    let below = j.segments()[2].base_id;
    assert_eq!(j.remove_segments_below(below).unwrap(), 2);
    // Roll a few more times: the rolls take the recycled files (a file is taken once
    // no retired segment table still refers to it, which a loaded machine may delay by
    // a roll or two).
    let mut b = 3;
    while b < 8 || (reused(&kept) == 0 && b < 40) {
        fill_segment(&j, b);
        b += 1;
    }
    assert!(reused(&kept) > 0, "a removed file was reused");
    // Partially fill the newest segment with short records: if old bytes were left
    // behind, a reader would run into the old life's records after these.
    let newest = j.next_id();
    let below = j.first_id();
    for i in 0..10u8 {
        j.append(&RecordIn::new(&[i])).unwrap();
    }
    let live = read_all(&j, below);
    let expect_ids: Vec<u64> = (below..newest + 10).collect();
    assert_eq!(live.iter().map(|r| r.0).collect::<Vec<_>>(), expect_ids);
    assert!(live[..live.len() - 10].iter().all(|r| r.1.len() == 1000));
    assert!(live[live.len() - 10..].iter().all(|r| r.1.len() == 1));
    j.close().unwrap();
    // No temporary files survive a close; a reopen recovers exactly the same.
    assert!(std::fs::read_dir(d.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
    let j = Journal::open(
        d.path(),
        JournalOptions::new()
            .segment_size(SEG)
            .recycle_segments(true),
    )
    .unwrap();
    assert_eq!(j.next_id(), newest + 10);
    assert_eq!(read_all(&j, below), live);
    j.close().unwrap();
}

#[test]
fn recycling_can_be_turned_off() {
    let d = tempfile::tempdir().unwrap();
    let j = Journal::open(
        d.path(),
        JournalOptions::new()
            .segment_size(SEG)
            .recycle_segments(false),
    )
    .unwrap();
    fill_segment(&j, 1);
    fill_segment(&j, 2);
    let kept = keep(d.path(), 2);
    j.remove_segments_below(j.segments()[2].base_id).unwrap();
    assert_eq!(j.disk_bytes() % SEG, 0);
    for b in 3..8 {
        fill_segment(&j, b);
    }
    assert_eq!(reused(&kept), 0);
}

#[test]
fn a_cursor_keeps_a_removed_segment_intact() {
    let d = tempfile::tempdir().unwrap();
    let j = Journal::open(
        d.path(),
        JournalOptions::new()
            .segment_size(SEG)
            .recycle_segments(true),
    )
    .unwrap();
    fill_segment(&j, 1);
    fill_segment(&j, 2);
    let kept = keep(d.path(), 1);
    let mut c = j.cursor(1).unwrap();
    assert_eq!(c.next(&j, |v| v.id()).unwrap(), Some(1));
    j.remove_segments_below(j.segments()[2].base_id).unwrap();
    // Rolls must not reuse the file the cursor still reads.
    for b in 3..8 {
        fill_segment(&j, b);
    }
    assert_eq!(reused(&kept), 0, "the file the cursor holds was not reused");
    let mut n = 1;
    while let Some(p) = c.next(&j, |v| v.payload()[0]).unwrap() {
        if p != 1 {
            break;
        }
        n += 1;
    }
    assert!(
        n > 10,
        "the cursor read the whole removed segment intact ({n})"
    );
    // Once the cursor lets go, the file may be reused.
    drop(c);
    for b in 8..12 {
        fill_segment(&j, b);
        j.remove_segments_below(j.next_id()).unwrap();
    }
    assert_eq!(reused(&kept), 1);
}
