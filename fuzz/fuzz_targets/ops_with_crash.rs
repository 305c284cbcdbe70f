//! Fuzz target `ops_with_crash`: see `checks::ops_with_crash`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::ops_with_crash(data);
});
