//! `wasmvol-flex`: the executable kubelet runs as a FlexVolume driver.
//!
//! Installed as `<plugin dir>/<vendor~driver>/<driver>` by `wasmvol flex
//! install`, it forwards `<call-out> <args...>` to the wasmvol host over a
//! unix socket and prints the host's answer: exactly one JSON object on
//! stdout, nothing on stderr (kubelet reads both as one JSON document).
//! It never hangs: connecting and waiting are bounded, then `Failure`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmvol_flex::{failure_json, read_reply, socket_from_tail, write_request, DEFAULT_SOCKET};

/// How long a call may take end to end (kubelet's longest, waitforattach, allows 10 minutes).
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);

/// The socket stamped into this executable at install, or the default.
fn socket_path() -> PathBuf {
    let read_tail = || -> std::io::Result<Vec<u8>> {
        let mut f = std::fs::File::open("/proc/self/exe")?;
        let len = f.metadata()?.len();
        let take = len.min(4096);
        f.seek(SeekFrom::Start(len - take))?;
        let mut tail = Vec::with_capacity(take as usize);
        f.read_to_end(&mut tail)?;
        Ok(tail)
    };
    read_tail()
        .ok()
        .and_then(|t| socket_from_tail(&t).map(|s| PathBuf::from(std::ffi::OsStr::from_bytes(s))))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// `vendor/driver` from `<plugin dir>/vendor~driver/driver`.
fn driver_name(argv0: &Path) -> String {
    argv0
        .parent()
        .and_then(Path::file_name)
        .map(|d| d.to_string_lossy().replacen('~', "/", 1))
        .unwrap_or_default()
}

fn answer(code: i32, json: &[u8]) -> ! {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(json);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
    std::process::exit(code)
}

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let driver = driver_name(Path::new(
        args.first().map(|a| a.as_os_str()).unwrap_or_default(),
    ));
    if args.len() < 2 {
        answer(
            1,
            failure_json("no call-out given (usage: <driver> <call-out> <args...>)").as_bytes(),
        );
    }
    let socket = socket_path();
    let fail = |what: &str, e: std::io::Error| -> ! {
        answer(
            1,
            failure_json(&format!(
                "wasmvol host at {}: {what}: {e}",
                socket.display()
            ))
            .as_bytes(),
        )
    };
    let mut stream = UnixStream::connect(&socket).unwrap_or_else(|e| fail("cannot connect", e));
    let _ = stream.set_read_timeout(Some(REPLY_TIMEOUT));
    let _ = stream.set_write_timeout(Some(REPLY_TIMEOUT));
    let mut items: Vec<&[u8]> = vec![driver.as_bytes()];
    items.extend(args[1..].iter().map(|a| a.as_bytes()));
    write_request(&mut stream, &items).unwrap_or_else(|e| fail("cannot send the call", e));
    let (code, json) = read_reply(&mut stream).unwrap_or_else(|e| fail("no answer", e));
    answer(i32::from(code), &json)
}
