//! Fuzz target `decode_record`: see `checks::decode_record`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::decode_record(data);
});
