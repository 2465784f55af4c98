#![no_main]
//! `cargo fuzz run gpt_parse`: see `flipside_fuzz::harness::gpt_parse`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flipside_fuzz::harness::gpt_parse(data));
