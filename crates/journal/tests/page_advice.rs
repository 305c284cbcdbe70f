#![cfg(all(target_os = "linux", not(ledgerq_loom)))]
//! With `Durability::Sync`, the part of a segment that appends write is mapped with
//! `MADV_RANDOM` (cached in single pages, so a flush does not write back a 2 MiB folio
//! for one record); sealed segments go back to normal readahead; `Buffered` journals
//! map the first block of a segment and the stretches the preparer pre-faults with
//! transparent huge pages (`MADV_HUGEPAGE`: one page-table entry per 2 MiB for the
//! flush to write-protect), without readahead there, and keep the default readahead
//! elsewhere.
//! Read from the mappings' `VmFlags` in `/proc/self/smaps` (`rr`: random-read advice,
//! `hg`: huge-page advice).

use std::path::{Path, PathBuf};

use ledgerq_journal::*;

const SEG: u64 = 256 * 1024;

/// The mappings of `file` in this process: (start, end, random-read advice, huge-page
/// advice), by address.
fn mappings_of(file: &Path) -> Vec<(u64, u64, bool, bool)> {
    let file = file.canonicalize().unwrap();
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut out = Vec::new();
    let mut current: Option<(u64, u64)> = None;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: "start-end perms offset dev inode path".
            current = None;
            if line.split_whitespace().nth(5).map(PathBuf::from).as_deref() == Some(&file) {
                let (a, b) = first.split_once('-').unwrap();
                current = Some((
                    u64::from_str_radix(a, 16).unwrap(),
                    u64::from_str_radix(b, 16).unwrap(),
                ));
            }
        } else if let (Some((a, b)), Some(flags)) = (current, line.strip_prefix("VmFlags:")) {
            let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
            out.push((a, b, has("rr"), has("hg")));
        }
    }
    out.sort_unstable();
    out
}

/// Whether this kernel has transparent huge pages (without them `MADV_HUGEPAGE` is
/// refused and the advice is, as documented, best effort).
fn thp() -> bool {
    Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists()
}

fn opts(d: Durability) -> JournalOptions {
    JournalOptions::new().segment_size(SEG).durability(d)
}

#[test]
fn sync_appends_map_the_active_segment_for_single_pages() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts(Durability::Sync)).unwrap();
    j.append(&RecordIn::new(b"one")).unwrap();
    let segs = segment_files(dir.path()).unwrap();
    assert_eq!(segs.len(), 1);
    let maps = mappings_of(&segs[0]);
    assert_eq!(maps.len(), 1, "{maps:?}");
    assert!(maps[0].2, "the active segment is advised random: {maps:?}");
    assert_eq!(maps[0].1 - maps[0].0, SEG);
    j.close().unwrap();
}

/// The mappings of the first segment of a new journal with durability `d`, after one
/// append.
fn mappings_after_one_append(d: Durability) -> Vec<(u64, u64, bool, bool)> {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts(d)).unwrap();
    j.append(&RecordIn::new(b"one")).unwrap();
    let maps = mappings_of(&segment_files(dir.path()).unwrap()[0]);
    j.close().unwrap();
    assert!(!maps.is_empty());
    maps
}

#[test]
fn buffered_journals_read_ahead_outside_their_huge_page_blocks() {
    let maps = mappings_after_one_append(Durability::Buffered);
    // Random-read advice only together with huge pages (a huge-page fault then makes
    // just its own folio).
    assert!(maps.iter().all(|m| !m.2 || m.3), "{maps:?}");
}

#[test]
fn sync_journals_do_not_ask_for_huge_pages() {
    let maps = mappings_after_one_append(Durability::Sync);
    assert!(maps.iter().all(|m| !m.3), "{maps:?}");
}

#[test]
fn the_buffered_preparer_asks_for_huge_pages_ahead_of_the_appends() {
    if !thp() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(
        dir.path(),
        JournalOptions::new()
            .segment_size(16 << 20)
            .durability(Durability::Buffered),
    )
    .unwrap();
    j.append(&RecordIn::new(b"one")).unwrap();
    let seg = segment_files(dir.path()).unwrap().remove(0);
    // The first block (with the header) is advised when the segment is made; the
    // preparer (started by the first append) advises each stretch it pre-faults.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let advised = loop {
        let maps = mappings_of(&seg);
        let huge: u64 = maps.iter().filter(|m| m.3).map(|m| m.1 - m.0).sum();
        // The preparer advises a stretch in two calls (huge pages, then no readahead):
        // a look between them sees one without the other, so wait for both.
        let settled = maps.iter().all(|m| m.2 == m.3);
        if (huge >= 2 << 20 && settled) || std::time::Instant::now() > until {
            break (huge, maps);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert!(advised.0 >= 2 << 20, "{advised:?}");
    let first = advised.1.first().unwrap();
    assert!(first.3, "the block with the header: {advised:?}");
    // And no readahead in the huge-page blocks.
    assert!(advised.1.iter().all(|m| m.2 == m.3), "{advised:?}");
    j.close().unwrap();
}

#[test]
fn a_sealed_segment_goes_back_to_normal_readahead() {
    for d in [Durability::Sync, Durability::Buffered] {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), opts(d)).unwrap();
        let payload = vec![7u8; 4000];
        while segment_files(dir.path()).unwrap().len() < 2 {
            j.append(&RecordIn::new(&payload)).unwrap();
        }
        let segs = segment_files(dir.path()).unwrap();
        let sealed = mappings_of(&segs[0]);
        assert!(!sealed.is_empty());
        assert!(sealed.iter().all(|m| !m.2), "{d:?} sealed: {sealed:?}");
        // The active segment is random-read advised: Sync's appended part; Buffered's
        // first huge-page block, which here is all of the (small) segment.
        let active = mappings_of(&segs[1]);
        let random = d == Durability::Sync || thp();
        assert!(
            active.iter().all(|m| m.2 == random),
            "{d:?} active: {active:?}"
        );
        j.close().unwrap();
    }
}

#[test]
fn a_reopened_tail_is_advised_from_its_end_on() {
    let dir = tempfile::tempdir().unwrap();
    let payload = vec![7u8; 1000];
    {
        let j = Journal::open(dir.path(), opts(Durability::Sync)).unwrap();
        for _ in 0..40 {
            j.append(&RecordIn::new(&payload)).unwrap();
        }
        j.close().unwrap();
    }
    let j = Journal::open(dir.path(), opts(Durability::Sync)).unwrap();
    let segs = segment_files(dir.path()).unwrap();
    let maps = mappings_of(&segs[0]);
    // The records (about 42 KB) keep the default; from the page of their end on, random.
    assert_eq!(maps.len(), 2, "{maps:?}");
    assert!(!maps[0].2 && maps[1].2, "{maps:?}");
    let head = maps[0].1 - maps[0].0;
    assert!((40 * 1000..48 * 1024).contains(&head), "{head}");
    j.close().unwrap();
}
