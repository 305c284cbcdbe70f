//! CRC32C, faster than one chain of `crc32` instructions where that matters.
//!
//! One checksum is a chain of dependent `crc32` instructions (3 cycles each per 8 bytes
//! on current x86 cores, one issued per cycle), so a single chain leaves the unit mostly
//! idle:
//! - [`crc32c_append`] (one buffer, as records are written and read) splits a buffer of
//!   [`SPLIT_MIN`] to [`SPLIT_MAX`] bytes into three blocks, runs their chains side by
//!   side, and joins them by shifting the first two over the bytes that follow them (a
//!   carry-less multiply by a constant `x^(8n - 33) mod P`, then one `crc32`);
//! - [`crc32c_many`] runs the chains of up to [`LANES`] records side by side over their
//!   common length and finishes each one alone: the open-time tail scan checks a whole
//!   segment this way.
//!
//! Both give exactly `crc32c::crc32c_append`'s value (the tests compare every length up
//! to past `SPLIT_MAX`), and fall back to it on CPUs without SSE 4.2 and PCLMULQDQ.

/// The CRC32C polynomial, bit-reflected (bit 0 is the coefficient of `x^31`).
const POLY: u32 = 0x82F6_3B78;
/// Buffers shorter than this take one chain: joining the blocks costs about as much as
/// the ten `crc32` instructions saved.
pub(crate) const SPLIT_MIN: usize = 64;
/// The most words a block of the three-way split holds (the shift table's size).
const MAX_BLOCK_WORDS: usize = 512;
/// Buffers this long or longer go to the `crc32c` crate (which splits long buffers
/// itself).
pub(crate) const SPLIT_MAX: usize = 3 * 8 * MAX_BLOCK_WORDS;

/// `x * v mod P` for `v` bit-reflected.
const fn mul_x(v: u32) -> u32 {
    if v & 1 == 1 {
        (v >> 1) ^ POLY
    } else {
        v >> 1
    }
}

/// `SHIFT[j] = x^(64 j - 33) mod P`, bit-reflected: multiplied (carry-less) by a chain's
/// state and folded by one `crc32` of zero, it moves the state over `8 j` zero bytes.
/// `SHIFT[0]` is unused.
const SHIFT: [u32; 2 * MAX_BLOCK_WORDS + 1] = {
    let mut t = [0u32; 2 * MAX_BLOCK_WORDS + 1];
    // x^31: x^0 (bit 31 set) times x, 31 times.
    let mut v = 1u32 << 31;
    let mut i = 0;
    while i < 31 {
        v = mul_x(v);
        i += 1;
    }
    t[1] = v;
    let mut j = 2;
    while j < t.len() {
        // One more 8-byte word: times x^64.
        let mut k = 0;
        while k < 64 {
            v = mul_x(v);
            k += 1;
        }
        t[j] = v;
        j += 1;
    }
    t
};

/// The CRC32C of `bytes` seeded with `seed`: exactly `crc32c::crc32c_append(seed,
/// bytes)`, with the chain split in three for buffers of [`SPLIT_MIN`] to
/// [`SPLIT_MAX`] bytes.
#[inline]
pub(crate) fn crc32c_append(seed: u32, bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if (SPLIT_MIN..SPLIT_MAX).contains(&bytes.len())
            && std::arch::is_x86_feature_detected!("sse4.2")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
        {
            // SAFETY: the CPU supports SSE 4.2 and PCLMULQDQ (checked just above), the
            // only target features `split3` enables; its length bounds hold.
            return unsafe { split3(seed, bytes) };
        }
    }
    crc32c::crc32c_append(seed, bytes)
}

/// Three chains over the first `3 * 8 m` bytes (`m` words each), joined, then one
/// chain over the rest. Requires `SPLIT_MIN <= bytes.len() < SPLIT_MAX`, so that
/// `1 <= m <= MAX_BLOCK_WORDS`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2,pclmulqdq")]
unsafe fn split3(seed: u32, bytes: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u16, _mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};
    let m = bytes.len() / 8 / 3;
    debug_assert!((1..=MAX_BLOCK_WORDS).contains(&m));
    let block = 8 * m;
    let (a, rest) = bytes.split_at(block);
    let (b, rest) = rest.split_at(block);
    let (c, rest) = rest.split_at(block);
    let word = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    let mut s0 = u64::from(!seed);
    let mut s1 = 0u64;
    let mut s2 = 0u64;
    let mut i = 0;
    while i < block {
        // The intrinsics are safe to call in a function with their features enabled on
        // newer compilers.
        #[allow(unused_unsafe)]
        // SAFETY: this function runs only where SSE 4.2 is available.
        unsafe {
            s0 = _mm_crc32_u64(s0, word(a, i));
            s1 = _mm_crc32_u64(s1, word(b, i));
            s2 = _mm_crc32_u64(s2, word(c, i));
        }
        i += 8;
    }
    // The state after `a b c` from `!seed`: `s0` moved over `b c`, `s1` over `c`, and
    // `s2` (the chains are linear in their state).
    // SAFETY: this function runs only where SSE 4.2 and PCLMULQDQ are available.
    let joined = unsafe { shift(s0 as u32, SHIFT[2 * m]) ^ shift(s1 as u32, SHIFT[m]) } ^ s2 as u32;
    let mut s = u64::from(joined);
    let mut words = rest.chunks_exact(8);
    for w in &mut words {
        #[allow(unused_unsafe)]
        // SAFETY: as above.
        unsafe {
            s = _mm_crc32_u64(s, u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
    }
    // The last 0 to 7 bytes: at most one instruction each for 4, 2 and 1 of them.
    let mut s = s as u32;
    let mut tail = words.remainder();
    #[allow(unused_unsafe)]
    // SAFETY: as above.
    unsafe {
        if let Some((four, rest)) = tail.split_first_chunk::<4>() {
            s = _mm_crc32_u32(s, u32::from_le_bytes(*four));
            tail = rest;
        }
        if let Some((two, rest)) = tail.split_first_chunk::<2>() {
            s = _mm_crc32_u16(s, u16::from_le_bytes(*two));
            tail = rest;
        }
        if let Some(&byte) = tail.first() {
            s = _mm_crc32_u8(s, byte);
        }
    }
    !s
}

/// A chain's state `state` moved over the zero bytes `k` stands for (`k = SHIFT[j]`:
/// `8 j` bytes): `state * k * x^33 mod P`, the carry-less product (which is `x * state
/// * k` read as 64 reflected bits) folded by a `crc32` of it (times `x^32`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2,pclmulqdq")]
unsafe fn shift(state: u32, k: u32) -> u32 {
    use std::arch::x86_64::{
        _mm_clmulepi64_si128, _mm_crc32_u64, _mm_cvtsi128_si64, _mm_cvtsi32_si128,
    };
    #[allow(unused_unsafe)]
    // SAFETY: this function runs only where SSE 4.2 and PCLMULQDQ are available.
    unsafe {
        let p = _mm_clmulepi64_si128(
            _mm_cvtsi32_si128(state as i32),
            _mm_cvtsi32_si128(k as i32),
            0x00,
        );
        _mm_crc32_u64(0, _mm_cvtsi128_si64(p) as u64) as u32
    }
}

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

    /// Every length from empty to past the split's range, each with its own data and
    /// seed, against the `crc32c` crate.
    #[test]
    fn append_equals_the_crate_at_every_length() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let data: Vec<u8> = (0..SPLIT_MAX + 100).map(|_| next() as u8).collect();
        for len in 0..SPLIT_MAX + 100 {
            let seed = next() as u32;
            let start = (next() % 8) as usize; // unaligned starts too
            let b = &data[start..(start + len).min(data.len())];
            assert_eq!(
                crc32c_append(seed, b),
                crc32c::crc32c_append(seed, b),
                "len {}",
                b.len()
            );
        }
    }

    #[test]
    fn the_shift_table_moves_a_state_over_zero_bytes() {
        // `SHIFT[j]` stands for 8 j zero bytes: the state after `a` then 8 j zeros.
        for j in [1, 2, 7, MAX_BLOCK_WORDS, 2 * MAX_BLOCK_WORDS] {
            let zeros = vec![0u8; 8 * j];
            let direct = crc32c::crc32c_append(!0x1234_5678, &zeros);
            // The raw state `0x1234_5678` (the crate inverts on the way in and out).
            let mut s = 0x1234_5678u32;
            for _ in 0..64 * j {
                s = mul_x(s);
            }
            assert_eq!(!s, direct, "j {j}");
            let mut t = 1u32 << 31;
            for _ in 0..64 * j - 33 {
                t = mul_x(t);
            }
            assert_eq!(SHIFT[j], t, "j {j}");
        }
    }

    proptest! {
        #[test]
        fn append_equals_the_crate(seed in any::<u32>(), b in proptest::collection::vec(any::<u8>(), 0..2000)) {
            prop_assert_eq!(crc32c_append(seed, &b), crc32c::crc32c_append(seed, &b));
        }

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
