#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sync_fuzz::core_inputs::decode_message(data);
});
