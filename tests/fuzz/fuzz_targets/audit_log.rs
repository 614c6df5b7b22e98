//! Any text as an audit log for `audit --log`: each line counted or
//! counted unreadable, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let used = wasmvol::grant_usage::LogUse::from_text(&text, Some("2026-01-01T00:00:00.000Z"));
    assert!((used.records + used.unreadable) as usize <= text.lines().count());
});
