//! Fuzz target `recover_segment`: see `checks::recover_segment`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::recover_segment(data);
});
