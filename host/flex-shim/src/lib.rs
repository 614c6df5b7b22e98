//! The FlexVolume shim's wire format, shared by the shim and the host.
//!
//! Deliberately tiny and dependency-free: a request is the driver name, the
//! call-out and its arguments, length-prefixed; a reply is the exit code
//! and the exact bytes kubelet must read on stdout. The socket the shim
//! talks to is stamped into the installed shim's own file as a trailer.

use std::io::{self, Read, Write};

const MAGIC: &[u8; 4] = b"WVF1";
/// Most items a request may carry (driver, call-out, at most 6 arguments in practice).
pub const MAX_ITEMS: usize = 16;
/// Largest single item (kubelet's JSON options, secrets included).
pub const MAX_ITEM_BYTES: usize = 1 << 20;
/// Marks the socket trailer at the very end of an installed shim.
pub const TRAILER_MAGIC: &[u8; 8] = b"WVFLEXS1";
/// Where the shim looks when it carries no trailer.
pub const DEFAULT_SOCKET: &str = "/run/wasmvol/flex.sock";

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// Writes a request: `items[0]` is the driver, `items[1]` the call-out.
pub fn write_request(w: &mut impl Write, items: &[&[u8]]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(64 + items.iter().map(|i| i.len() + 4).sum::<usize>());
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for item in items {
        buf.extend_from_slice(&(item.len() as u32).to_le_bytes());
        buf.extend_from_slice(item);
    }
    w.write_all(&buf)
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// Reads a request, refusing anything oversized.
pub fn read_request(r: &mut impl Read) -> io::Result<Vec<Vec<u8>>> {
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(invalid("not a wasmvol flex request"));
    }
    let n = read_u32(r)? as usize;
    if n > MAX_ITEMS {
        return Err(invalid("too many arguments"));
    }
    (0..n)
        .map(|_| {
            let len = read_u32(r)? as usize;
            if len > MAX_ITEM_BYTES {
                return Err(invalid("argument too large"));
            }
            let mut item = vec![0u8; len];
            r.read_exact(&mut item)?;
            Ok(item)
        })
        .collect()
}

/// How long the request starting `prefix` is, once its item headers have
/// arrived (`None` until then), without reading the items: a reader that
/// gets the request in pieces knows when it is whole at a cost that does
/// not grow with it. Refuses what [`read_request`] refuses.
pub fn request_len(prefix: &[u8]) -> io::Result<Option<usize>> {
    let u32_at = |at: usize| {
        prefix
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
    };
    if prefix.len() >= 4 && &prefix[..4] != MAGIC {
        return Err(invalid("not a wasmvol flex request"));
    }
    let Some(n) = u32_at(4) else { return Ok(None) };
    if n > MAX_ITEMS {
        return Err(invalid("too many arguments"));
    }
    let mut at = 8;
    for _ in 0..n {
        let Some(len) = u32_at(at) else {
            return Ok(None);
        };
        if len > MAX_ITEM_BYTES {
            return Err(invalid("argument too large"));
        }
        at += 4 + len;
    }
    Ok(Some(at))
}

/// Writes a reply: exit code and stdout bytes.
pub fn write_reply(w: &mut impl Write, exit_code: u8, stdout: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(9 + stdout.len());
    buf.extend_from_slice(MAGIC);
    buf.push(exit_code);
    buf.extend_from_slice(&(stdout.len() as u32).to_le_bytes());
    buf.extend_from_slice(stdout);
    w.write_all(&buf)
}

/// Reads a reply.
pub fn read_reply(r: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head)?;
    if &head[..4] != MAGIC {
        return Err(invalid("not a wasmvol flex reply"));
    }
    let len = read_u32(r)? as usize;
    if len > MAX_ITEM_BYTES {
        return Err(invalid("reply too large"));
    }
    let mut out = vec![0u8; len];
    r.read_exact(&mut out)?;
    Ok((head[4], out))
}

/// The trailer that stamps `socket` into an installed shim.
pub fn trailer(socket: &[u8]) -> Vec<u8> {
    let mut t = socket.to_vec();
    t.extend_from_slice(&(socket.len() as u32).to_le_bytes());
    t.extend_from_slice(TRAILER_MAGIC);
    t
}

/// The socket stamped at the end of `file`'s tail bytes, if any.
pub fn socket_from_tail(tail: &[u8]) -> Option<&[u8]> {
    let body = tail.strip_suffix(TRAILER_MAGIC.as_slice())?;
    let (rest, len) = body.split_at(body.len().checked_sub(4)?);
    let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
    rest.get(rest.len().checked_sub(len)?..)
}

/// A FlexVolume `Failure` answer, as kubelet reads it.
pub fn failure_json(message: &str) -> String {
    format!(
        "{{\"status\":\"Failure\",\"message\":{}}}",
        json_string(message)
    )
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_round_trip() {
        let mut buf = Vec::new();
        write_request(&mut buf, &[b"k8s/nfs", b"mount", b"/dir", b"{}"]).unwrap();
        let items = read_request(&mut buf.as_slice()).unwrap();
        assert_eq!(items, [&b"k8s/nfs"[..], b"mount", b"/dir", b"{}"]);
        let mut buf = Vec::new();
        write_reply(&mut buf, 1, b"{\"status\":\"Failure\"}").unwrap();
        assert_eq!(read_reply(&mut buf.as_slice()).unwrap().0, 1);
        assert!(read_request(&mut &b"junk-junk"[..]).is_err());
    }

    #[test]
    fn a_request_s_length_is_known_from_its_headers_alone() {
        let mut buf = Vec::new();
        write_request(&mut buf, &[b"k8s/nfs", b"mount", b"", b"{\"a\":1}"]).unwrap();
        for cut in 0..buf.len() {
            match request_len(&buf[..cut]).unwrap() {
                None => {}
                Some(len) => assert_eq!(len, buf.len(), "at {cut}"),
            }
        }
        assert_eq!(request_len(&buf).unwrap(), Some(buf.len()));
        assert!(request_len(b"junk").is_err());
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&1u32.to_le_bytes());
        huge.extend_from_slice(&(MAX_ITEM_BYTES as u32 + 1).to_le_bytes());
        assert!(
            request_len(&huge).is_err(),
            "refused before its bytes arrive"
        );
    }

    #[test]
    fn the_trailer_is_found_at_the_end() {
        let mut file = b"\x7fELF...binary...".to_vec();
        file.extend(trailer(b"/run/x.sock"));
        assert_eq!(socket_from_tail(&file), Some(&b"/run/x.sock"[..]));
        assert_eq!(socket_from_tail(b"no trailer"), None);
    }

    #[test]
    fn failures_are_valid_json_strings() {
        assert_eq!(
            failure_json("bad \"x\"\n"),
            r#"{"status":"Failure","message":"bad \"x\"\n"}"#
        );
    }
}
