//! kubelet's argv for a Flex call-out (NUL-separated here), options JSON
//! included: every input is parsed or refused, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let args: Vec<String> = data
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let _ = wasmvol::flex::callout::CallOut::parse(&args);
});
