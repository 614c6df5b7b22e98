//! Any text as a policy file: parsed into a policy or refused with an
//! error (file:line:column where the TOML is at fault), never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = wasmvol::policy::Policy::parse(std::path::Path::new("/fuzz/policy.toml"), text);
    }
});
