//! CRC32C of several records at once.
//!
//! One record's checksum is a chain of dependent `crc32` instructions (3 cycles each
//! per 8 bytes on current x86 cores), so checking records one after another leaves
//! the unit mostly idle. [`crc32c_many`] runs the chains of up to [`LANES`] records
//! side by side over their common length and finishes each one alone: the open-time
//! tail scan checks a whole segment this way.

/// How many checksums [`crc32c_many`] computes side by side.
pub(crate) const LANES: usize = 4;

/// The CRC32C of `words` as little-endian bytes, seeded with `seed` (as
/// `crc32c::crc32c_append(seed, bytes)`): one `crc32` instruction per word, on values
/// already in registers.
#[inline]
pub(crate) fn crc32c_words(seed: u32, words: &[u64; 6]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU supports SSE 4.2 (checked just above), the only target
            // feature `words_sse42` enables.
            return unsafe { words_sse42(seed, words) };
        }
    }
    let mut bytes = [0u8; 48];
    for (chunk, w) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    crc32c::crc32c_append(seed, &bytes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn words_sse42(seed: u32, words: &[u64; 6]) -> u32 {
    use std::arch::x86_64::_mm_crc32_u64;
    let mut state = u64::from(!seed);
    for &w in words {
        // The intrinsic is safe to call in an `sse4.2` function on newer compilers.
        #[allow(unused_unsafe)]
        // SAFETY: this function runs only where SSE 4.2 is available.
        let next = unsafe { _mm_crc32_u64(state, w) };
        state = next;
    }
    !(state as u32)
}

/// The CRC32C of each of `bufs`, each seeded with `seed` (as
/// `crc32c::crc32c_append(seed, buf)`).
pub(crate) fn crc32c_many(seed: u32, bufs: &[&[u8]], out: &mut [u32]) {
    debug_assert!(bufs.len() <= LANES && out.len() >= bufs.len());
    #[cfg(target_arch = "x86_64")]
    {
        if bufs.len() == LANES && std::arch::is_x86_feature_detected!("sse4.2") {
            let lanes: &[&[u8]; LANES] = bufs.try_into().expect("LANES buffers");
            // SAFETY: the CPU supports SSE 4.2 (checked just above), the only target
            // feature `lanes_sse42` enables.
            let crcs = unsafe { lanes_sse42(seed, lanes) };
            out[..LANES].copy_from_slice(&crcs);
            return;
        }
    }
    for (o, b) in out.iter_mut().zip(bufs) {
        *o = crc32c::crc32c_append(seed, b);
    }
}

/// [`LANES`] interleaved chains over the common whole words, then each tail alone.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn lanes_sse42(seed: u32, bufs: &[&[u8]; LANES]) -> [u32; LANES] {
    use std::arch::x86_64::_mm_crc32_u64;
    let common = bufs.iter().map(|b| b.len()).min().unwrap_or(0) & !7;
    let mut state = [u64::from(!seed); LANES];
    let mut at = 0;
    while at < common {
        for (s, b) in state.iter_mut().zip(bufs) {
            let word = u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
            // The intrinsic is safe to call in an `sse4.2` function on newer compilers.
            #[allow(unused_unsafe)]
            // SAFETY: this function runs only where SSE 4.2 is available.
            let next = unsafe { _mm_crc32_u64(*s, word) };
            *s = next;
        }
        at += 8;
    }
    let mut out = [0u32; LANES];
    for ((o, s), b) in out.iter_mut().zip(state).zip(bufs) {
        // The chain's register holds the inverted CRC; `crc32c_append` takes the
        // plain one and inverts it again.
        *o = crc32c::crc32c_append(!(s as u32), &b[common..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn words_equal_their_bytes(seed in any::<u32>(), words in any::<[u64; 6]>()) {
            let mut bytes = Vec::new();
            for w in words {
                bytes.extend_from_slice(&w.to_le_bytes());
            }
            prop_assert_eq!(crc32c_words(seed, &words), crc32c::crc32c_append(seed, &bytes));
        }

        #[test]
        fn many_equals_one_by_one(
            seed in any::<u32>(),
            bufs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..=LANES),
        ) {
            let refs: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
            let mut out = [0u32; LANES];
            crc32c_many(seed, &refs, &mut out);
            for (i, b) in bufs.iter().enumerate() {
                prop_assert_eq!(out[i], crc32c::crc32c_append(seed, b));
            }
        }
    }
}
