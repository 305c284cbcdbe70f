//! Compression: `Compression::{None, Lz4, Zstd}` as the queue default and per message;
//! payloads of at least `min_compression_size` are stored compressed when that saves at
//! least 5%, and every read returns the original bytes. A record that would decompress
//! beyond `max_message_size` is a typed error. Regression: the original compressed in
//! some enqueue variants only.
//!
//! Stored size is observed through the number of segments the same messages fill.

use std::time::Duration;

use ledgerq::{Compression, EnqueueOptions, Error, Options, Priority, Queue};

const ALL: [Compression; 3] = [
    Compression::None,
    Compression::Lz4,
    Compression::Zstd { level: 3 },
];

fn text(len: usize) -> Vec<u8> {
    let words = b"the quick brown fox jumps over the lazy dog; ";
    words.iter().copied().cycle().take(len).collect()
}

/// Bytes no compressor shrinks (xorshift).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn small_segments(c: Compression) -> Options {
    Options::new()
        .segment_size(64 << 10)
        .auto_compact(false)
        .compression(c)
}

/// Segments used by `n` copies of `payload` enqueued with `enqueue`.
fn segments_used(opts: Options, payload: &[u8], n: usize) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(dir.path(), opts).unwrap();
    for _ in 0..n {
        q.enqueue(payload).unwrap();
    }
    let segs = q.stats().segments;
    for _ in 0..n {
        assert_eq!(q.dequeue().unwrap().unwrap().payload(), payload);
    }
    segs
}

#[test]
fn every_compression_round_trips_every_payload() {
    let payloads = [
        Vec::new(),
        b"tiny".to_vec(),
        text(1023),
        text(1024),
        text(4096),
        noise(4096, 7),
        text(1 << 20),
        noise(100_000, 9),
    ];
    for c in ALL {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open_with(dir.path(), Options::new().compression(c)).unwrap();
        for p in &payloads {
            q.enqueue(p).unwrap();
            q.enqueue_with(p, &EnqueueOptions::new().header("h", "v"))
                .unwrap();
        }
        q.enqueue_batch(&payloads).unwrap();
        q.enqueue_batch_with(payloads.iter().map(|p| (p, EnqueueOptions::new())))
            .unwrap();
        let mut got = Vec::new();
        loop {
            let b = q.dequeue_batch(3).unwrap();
            if b.is_empty() {
                break;
            }
            got.extend(b.into_iter().map(|m| m.into_payload()));
        }
        let mut want = Vec::new();
        for p in &payloads {
            want.push(p.clone());
            want.push(p.clone());
        }
        want.extend(payloads.iter().cloned());
        want.extend(payloads.iter().cloned());
        assert_eq!(got.len(), want.len(), "{c:?}");
        assert!(got == want, "payloads differ with {c:?}");
    }
}

#[test]
fn per_message_compression_round_trips_with_other_options() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open_with(
        dir.path(),
        Options::new()
            .priorities(true)
            .compression(Compression::Lz4),
    )
    .unwrap();
    let body = text(10_000);
    for (i, c) in ALL.into_iter().enumerate() {
        q.enqueue_with(
            &body,
            &EnqueueOptions::new()
                .compression(c)
                .priority(Priority::High)
                .ttl(Duration::from_secs(60))
                .header("i", i.to_string())
                .dedup_key(format!("key-{i}")),
        )
        .unwrap();
    }
    for i in 0..3 {
        let m = q.dequeue().unwrap().unwrap();
        assert_eq!(m.payload(), &body[..]);
        assert_eq!(m.header("i"), Some(&*i.to_string()));
        assert_eq!(m.priority(), Priority::High);
        assert!(m.expires_at().is_some());
    }
}

#[test]
fn compressed_messages_survive_reopen_seek_and_peek() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || Options::new().compression(Compression::Zstd { level: 5 });
    let body = text(50_000);
    {
        let q = Queue::open_with(dir.path(), opts()).unwrap();
        q.enqueue(&body).unwrap();
        q.enqueue_with(&body, &EnqueueOptions::new().compression(Compression::Lz4))
            .unwrap();
        q.close().unwrap();
    }
    // Opening with other options reads what is stored.
    let q = Queue::open(dir.path()).unwrap();
    for m in q.peek(2).unwrap() {
        assert_eq!(m.payload(), &body[..]);
    }
    for _ in 0..2 {
        assert_eq!(q.dequeue().unwrap().unwrap().payload(), &body[..]);
    }
    q.seek_to_id(1).unwrap();
    assert_eq!(q.dequeue_batch(5).unwrap().len(), 2);
}

#[test]
fn small_and_incompressible_payloads_take_as_much_room_as_uncompressed() {
    // Below `min_compression_size`: never compressed.
    let small = text(900);
    let raw = segments_used(small_segments(Compression::None), &small, 300);
    for c in [Compression::Lz4, Compression::Zstd { level: 3 }] {
        let opts = small_segments(c).min_compression_size(1024);
        assert_eq!(segments_used(opts, &small, 300), raw, "{c:?}");
    }
    // Incompressible: stored as is (no growth from a failed compression).
    let random = noise(8000, 3);
    let raw = segments_used(small_segments(Compression::None), &random, 60);
    for c in [Compression::Lz4, Compression::Zstd { level: 3 }] {
        assert_eq!(segments_used(small_segments(c), &random, 60), raw, "{c:?}");
    }
}

#[test]
fn compressible_payloads_take_less_room() {
    let body = text(8000);
    let raw = segments_used(small_segments(Compression::None), &body, 100);
    assert!(raw >= 10, "{raw}");
    for c in [Compression::Lz4, Compression::Zstd { level: 3 }] {
        let packed = segments_used(small_segments(c), &body, 100);
        assert!(packed * 4 <= raw, "{c:?}: {packed} segments against {raw}");
    }
    // `min_compression_size` lowered: small payloads are compressed too.
    let small = text(900);
    let raw = segments_used(small_segments(Compression::None), &small, 300);
    let packed = segments_used(
        small_segments(Compression::Lz4).min_compression_size(256),
        &small,
        300,
    );
    assert!(packed * 2 <= raw, "{packed} segments against {raw}");
}

/// Regression: the original compressed in `Enqueue` but not with TTL, headers, priority
/// or plain batches.
#[test]
fn every_enqueue_variant_compresses() {
    let body = text(8000);
    let n = 100;
    let raw = segments_used(small_segments(Compression::None), &body, n);
    type Variant = fn(&Queue, &[u8], usize);
    let variants: [(&str, Variant); 5] = [
        ("enqueue", |q, b, n| {
            for _ in 0..n {
                q.enqueue(b).unwrap();
            }
        }),
        ("enqueue_batch", |q, b, n| {
            for _ in 0..n / 5 {
                q.enqueue_batch([b; 5]).unwrap();
            }
        }),
        ("enqueue_with ttl+headers+priority", |q, b, n| {
            let o = EnqueueOptions::new()
                .ttl(Duration::from_secs(600))
                .header("h", "v")
                .priority(Priority::High);
            for _ in 0..n {
                q.enqueue_with(b, &o).unwrap();
            }
        }),
        ("enqueue_batch_with", |q, b, n| {
            for _ in 0..n / 5 {
                q.enqueue_batch_with((0..5).map(|_| (b, EnqueueOptions::new())))
                    .unwrap();
            }
        }),
        (
            "per-message override on an uncompressed queue",
            |q, b, n| {
                let o = EnqueueOptions::new().compression(Compression::Zstd { level: 3 });
                for _ in 0..n {
                    q.enqueue_with(b, &o).unwrap();
                }
            },
        ),
    ];
    for (i, (name, run)) in variants.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let default = if i == 4 {
            Compression::None
        } else {
            Compression::Lz4
        };
        let q = Queue::open_with(dir.path(), small_segments(default)).unwrap();
        run(&q, &body, n);
        let packed = q.stats().segments;
        assert!(packed * 4 <= raw, "{name}: {packed} segments against {raw}");
        let got = q.dequeue_batch(usize::MAX).unwrap();
        assert_eq!(got.len(), n, "{name}");
        assert!(got.iter().all(|m| m.payload() == &body[..]), "{name}");
    }
}

/// A queue directory holding `payloads` as messages, the one at `bad` stored as an LZ4
/// record that declares more uncompressed bytes than any segment holds: no writer of
/// this queue makes one (it is damage that kept a valid checksum, as a faulty writer
/// could leave), so it must be refused with a typed error, not allocated.
fn written_with_an_undecodable_record(payloads: &[&[u8]], bad: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    Queue::open(dir.path()).unwrap().close().unwrap();
    let j = ledgerq_journal::Journal::open(dir.path(), Default::default()).unwrap();
    let mut lie = u32::MAX.to_le_bytes().to_vec();
    lie.extend_from_slice(b"not lz4 at all");
    for (i, p) in payloads.iter().enumerate() {
        let mut r = ledgerq_journal::RecordIn::new(if i == bad { &lie } else { p });
        if i == bad {
            r.compression = 1; // LZ4
        }
        j.append(&r).unwrap();
    }
    j.close().unwrap();
    dir
}

#[test]
fn a_record_that_decodes_beyond_any_segment_is_a_typed_error() {
    let dir = written_with_an_undecodable_record(&[b"x"], 0);
    let q = Queue::open(dir.path()).unwrap();
    let err = q.dequeue().unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
}

/// A batch dequeue that meets a record it cannot decode returns the messages before
/// it, reports the record's error on the next call, and then goes on: nothing after
/// the damaged record is lost, and the error is never dropped.
#[test]
fn batch_dequeue_reports_an_undecodable_record_and_loses_nothing() {
    let dir = written_with_an_undecodable_record(&[b"before", b"", b"after 1", b"after 2"], 1);
    let q = Queue::open(dir.path()).unwrap();
    let mut got = Vec::new();
    let mut errors = 0;
    for _ in 0..6 {
        match q.dequeue_batch(10) {
            Ok(batch) => got.extend(batch.into_iter().map(|m| m.payload().to_vec())),
            Err(e) => {
                assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
                errors += 1;
            }
        }
    }
    assert_eq!(errors, 1);
    assert_eq!(
        got,
        vec![b"before".to_vec(), b"after 1".to_vec(), b"after 2".to_vec()]
    );
}

/// A compressed message written under a larger `max_message_size` is still delivered
/// after a reopen with a smaller one: it is a valid message, not damage, and is not
/// consumed without being delivered (the limit guards against records that decode
/// beyond anything a writer could store).
#[test]
fn a_compressed_message_from_a_larger_limit_is_delivered_after_the_limit_is_lowered() {
    let dir = tempfile::tempdir().unwrap();
    let big = text(2 << 20);
    for c in [Compression::Lz4, Compression::Zstd { level: 3 }] {
        let q = Queue::open_with(
            dir.path(),
            Options::new()
                .compression(c)
                .max_message_size(4 << 20)
                .ack_mode(ledgerq::AckMode::Manual),
        )
        .unwrap();
        let id = q.enqueue(&big).unwrap();
        q.close().unwrap();
        let q = Queue::open_with(
            dir.path(),
            Options::new()
                .max_message_size(1 << 20)
                .ack_mode(ledgerq::AckMode::Manual),
        )
        .unwrap();
        let m = q.dequeue().unwrap().expect("the message");
        assert_eq!((m.id(), m.payload().len()), (id, big.len()), "{c:?}");
        assert!(m.payload() == &big[..]);
        q.ack(m.id()).unwrap();
        assert_eq!(q.stats().pending, 0);
        q.close().unwrap();
    }
}
