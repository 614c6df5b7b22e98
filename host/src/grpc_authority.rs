//! Any gRPC client on a unix socket: gRPC C-core (Python, Ruby, C++, C#),
//! grpc-java and grpc-swift send the socket path, percent-encoded, as the
//! HTTP/2 `:authority` (`tmp%2Fcsi.sock`), which is not an authority; the
//! h2 crate under tonic refuses such a request as malformed (RST_STREAM,
//! PROTOCOL_ERROR) before any handler runs, and has no setting to allow it
//! (hyperium/h2#487, open). Go clients, kubelet's and the sidecars', send
//! `localhost`, which is what a unix socket's authority means.
//!
//! [`AuthorityFix`] sits between the socket and h2. Until the first header
//! block of a connection it reads frames; if that block's `:authority` is
//! one h2 would refuse, it re-encodes every header block of the connection
//! with `:authority: localhost` (HPACK is stateful: once one block is
//! re-encoded, all must be, with one encoder whose table h2's decoder
//! mirrors); otherwise it steps aside and bytes pass untouched. On the way
//! out it watches the frames h2 writes and logs each protocol error
//! (RST_STREAM or GOAWAY with an error code) at warn, which h2 itself
//! reports only at debug.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::codegen::http::uri::Authority;

const PREFACE_LEN: usize = 24;
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame payload h2 accepts unless it says otherwise (it does not).
const MAX_FRAME: usize = 16_384;
/// The header block a connection may gather before the fix gives up on it.
const MAX_BLOCK: usize = 1 << 20;
/// What a unix socket's authority is.
const LOCALHOST: &[u8] = b"localhost";

/// What the reader does with a connection's frames.
enum Mode {
    /// Reading frames until the first header block says which.
    Deciding,
    /// Every header block is re-encoded with `:authority: localhost`.
    Rewrite,
    /// Bytes pass untouched.
    Passthrough,
}

/// A header block being gathered: its HEADERS frame's stream, flags and
/// priority fields, the block so far, and the raw frames it came in.
struct Block {
    stream: [u8; 4],
    flags: u8,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    raw: Vec<u8>,
}

/// A unix socket stream with the `:authority` fix on its read side and a
/// protocol-error watch on its write side.
pub struct AuthorityFix<S> {
    inner: S,
    mode: Mode,
    preface_seen: bool,
    input: Vec<u8>,
    output: Vec<u8>,
    out_at: usize,
    block: Option<Block>,
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
    watch: FrameWatch,
    /// Ends a connection that has not sent the HTTP/2 preface in time.
    handshake: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// How long a peer has to send the HTTP/2 connection preface: a peer that
/// connects and sends nothing (or half a preface) holds a descriptor and a
/// task; after this it holds neither. Clients send it at once.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The connections a gRPC unix socket accepts, each behind the fix.
pub fn incoming(
    listener: tokio::net::UnixListener,
) -> impl tokio_stream::Stream<Item = io::Result<AuthorityFix<tokio::net::UnixStream>>> {
    use tokio_stream::StreamExt;
    crate::unix_socket::Acceptor::new(listener).map(|s| s.map(AuthorityFix::new))
}

impl<S> AuthorityFix<S> {
    /// Wraps an accepted connection.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            mode: Mode::Deciding,
            preface_seen: false,
            input: Vec::new(),
            output: Vec::new(),
            out_at: 0,
            block: None,
            decoder: loona_hpack::Decoder::new(),
            encoder: loona_hpack::Encoder::new(),
            watch: FrameWatch::default(),
            handshake: None,
        }
    }

    /// Moves what `input` holds, as far as whole frames go, to `output`.
    fn process(&mut self) {
        if !self.preface_seen {
            if self.input.len() < PREFACE_LEN {
                return;
            }
            self.output.extend(self.input.drain(..PREFACE_LEN));
            self.preface_seen = true;
        }
        loop {
            if let Mode::Passthrough = self.mode {
                self.output.append(&mut self.input);
                return;
            }
            if self.input.len() < FRAME_HEADER {
                return;
            }
            let len = u32::from_be_bytes([0, self.input[0], self.input[1], self.input[2]]) as usize;
            if len > MAX_FRAME {
                // Larger than h2 accepts: h2 refuses it from its header
                // alone, so it gets the bytes now rather than after the fix
                // buffered up to 16 MiB of them.
                self.output.append(&mut self.input);
                self.mode = Mode::Passthrough;
                return;
            }
            if self.input.len() < FRAME_HEADER + len {
                return;
            }
            let frame: Vec<u8> = self.input.drain(..FRAME_HEADER + len).collect();
            self.frame(frame);
        }
    }

    fn frame(&mut self, frame: Vec<u8>) {
        let (kind, flags) = (frame[3], frame[4]);
        let payload = &frame[FRAME_HEADER..];
        match (kind, self.block.as_mut()) {
            (HEADERS, None) => {
                let mut body = payload;
                let mut pad = 0;
                if flags & PADDED != 0 {
                    let Some((&p, rest)) = body.split_first() else {
                        return self.give_up(frame);
                    };
                    pad = p as usize;
                    body = rest;
                }
                let mut priority = None;
                if flags & PRIORITY != 0 {
                    let Some(p) = body.get(..5) else {
                        return self.give_up(frame);
                    };
                    priority = Some(p.try_into().expect("five bytes"));
                    body = &body[5..];
                }
                let Some(fragment) = body.len().checked_sub(pad).map(|n| &body[..n]) else {
                    return self.give_up(frame);
                };
                self.block = Some(Block {
                    stream: frame[5..9].try_into().expect("four bytes"),
                    flags,
                    priority,
                    fragment: fragment.to_vec(),
                    raw: frame.clone(),
                });
                if flags & END_HEADERS != 0 {
                    self.finish_block();
                }
            }
            (CONTINUATION, Some(block)) => {
                block.fragment.extend_from_slice(payload);
                block.raw.extend_from_slice(&frame);
                if block.raw.len() > MAX_BLOCK {
                    let raw = std::mem::take(&mut block.raw);
                    self.block = None;
                    return self.give_up(raw);
                }
                if flags & END_HEADERS != 0 {
                    self.finish_block();
                }
            }
            // Anything else: as it came (a frame inside a header block is
            // h2's protocol error to report, not ours).
            (_, Some(_)) => {
                let raw = self.block.take().map(|b| b.raw).unwrap_or_default();
                self.output.extend_from_slice(&raw);
                self.output.extend_from_slice(&frame);
            }
            (_, None) => self.output.extend_from_slice(&frame),
        }
    }

    /// A complete header block: decoded, and passed on as it was or re-encoded.
    fn finish_block(&mut self) {
        let block = self.block.take().expect("a block");
        let Ok(mut headers) = self.decoder.decode(&block.fragment) else {
            return self.give_up(block.raw);
        };
        if let Mode::Deciding = self.mode {
            let refused = headers
                .iter()
                .find(|(name, _)| name == b":authority")
                .is_some_and(|(_, value)| Authority::try_from(value.as_slice()).is_err());
            if !refused {
                self.mode = Mode::Passthrough;
                self.output.extend_from_slice(&block.raw);
                return;
            }
            tracing::debug!(
                authority = %String::from_utf8_lossy(&headers.iter().find(|(n, _)| n == b":authority").expect("found").1),
                "a client names its unix socket as :authority; read as localhost"
            );
            self.mode = Mode::Rewrite;
        }
        for (name, value) in headers.iter_mut() {
            if name == b":authority" && Authority::try_from(value.as_slice()).is_err() {
                *value = LOCALHOST.to_vec();
            }
        }
        let encoded = self
            .encoder
            .encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        self.emit_headers(&block, &encoded);
    }

    /// Writes a header block as one HEADERS frame and as many CONTINUATION
    /// frames as the frame size needs.
    fn emit_headers(&mut self, block: &Block, encoded: &[u8]) {
        let mut body = Vec::with_capacity(encoded.len() + 5);
        if let Some(p) = block.priority {
            body.extend_from_slice(&p);
        }
        body.extend_from_slice(encoded);
        let mut chunks = body.chunks(MAX_FRAME).peekable();
        let mut kind = HEADERS;
        let first_flags = block.flags & (END_STREAM | PRIORITY);
        if chunks.peek().is_none() {
            self.frame_out(HEADERS, first_flags | END_HEADERS, block.stream, &[]);
            return;
        }
        while let Some(chunk) = chunks.next() {
            let mut flags = if kind == HEADERS { first_flags } else { 0 };
            if chunks.peek().is_none() {
                flags |= END_HEADERS;
            }
            self.frame_out(kind, flags, block.stream, chunk);
            kind = CONTINUATION;
        }
    }

    fn frame_out(&mut self, kind: u8, flags: u8, stream: [u8; 4], payload: &[u8]) {
        let len = (payload.len() as u32).to_be_bytes();
        self.output.extend_from_slice(&len[1..]);
        self.output.extend_from_slice(&[kind, flags]);
        self.output.extend_from_slice(&stream);
        self.output.extend_from_slice(payload);
    }

    /// Something the fix cannot read: from here on bytes pass as they
    /// came, for h2 to judge.
    fn give_up(&mut self, raw: Vec<u8>) {
        self.output.extend_from_slice(&raw);
        self.mode = Mode::Passthrough;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.preface_seen {
            let deadline = this
                .handshake
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(HANDSHAKE_TIMEOUT)));
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no HTTP/2 preface in time",
                )));
            }
        } else {
            this.handshake = None;
        }
        loop {
            if this.out_at < this.output.len() {
                let n = buf.remaining().min(this.output.len() - this.out_at);
                buf.put_slice(&this.output[this.out_at..this.out_at + n]);
                this.out_at += n;
                if this.out_at == this.output.len() {
                    this.output.clear();
                    this.out_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if let Mode::Passthrough = this.mode {
                if this.input.is_empty() {
                    return Pin::new(&mut this.inner).poll_read(cx, buf);
                }
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // End of stream: whatever is left goes to h2 as it came.
                if let Some(block) = this.block.take() {
                    this.output.extend_from_slice(&block.raw);
                }
                this.output.append(&mut this.input);
                if this.output.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            this.input.extend_from_slice(read.filled());
            this.process();
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.watch.saw(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityFix<S>
{
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Follows the frames the server writes, to log its protocol errors.
#[derive(Default)]
struct FrameWatch {
    /// The frame header being read (up to 9 bytes), and its first payload bytes.
    head: Vec<u8>,
    /// Payload bytes of the current frame still to skip.
    skip: usize,
}

impl FrameWatch {
    fn saw(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            // The header and, for RST_STREAM and GOAWAY, the error code.
            let want = match self.head.get(3) {
                Some(&RST_STREAM) => FRAME_HEADER + 4,
                Some(&GOAWAY) => FRAME_HEADER + 8,
                _ => FRAME_HEADER,
            };
            let n = (want - self.head.len().min(want)).min(bytes.len());
            self.head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.head.len() < FRAME_HEADER {
                continue;
            }
            let kind = self.head[3];
            let want = match kind {
                RST_STREAM => FRAME_HEADER + 4,
                GOAWAY => FRAME_HEADER + 8,
                _ => FRAME_HEADER,
            };
            if self.head.len() < want {
                continue;
            }
            let len = u32::from_be_bytes([0, self.head[0], self.head[1], self.head[2]]) as usize;
            let code_at = match kind {
                RST_STREAM => Some(FRAME_HEADER),
                GOAWAY => Some(FRAME_HEADER + 4),
                _ => None,
            };
            if let Some(at) = code_at {
                let code = u32::from_be_bytes(self.head[at..at + 4].try_into().expect("4"));
                if code != 0 && code != 0x8 {
                    // 0x8 is CANCEL: a client gone or a deadline, not an error.
                    let stream =
                        u32::from_be_bytes(self.head[5..9].try_into().expect("4")) & 0x7fff_ffff;
                    tracing::warn!(
                        frame = if kind == RST_STREAM { "RST_STREAM" } else { "GOAWAY" },
                        error_code = code,
                        stream,
                        "HTTP/2 protocol error sent to a client (the request never reached the driver)"
                    );
                }
            }
            self.skip = len - (self.head.len() - FRAME_HEADER).min(len);
            self.head.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn request(encoder: &mut loona_hpack::Encoder<'_>, authority: &[u8]) -> Vec<u8> {
        encoder.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/csi.v1.Identity/Probe"),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
        ])
    }

    /// Everything the fix passes on for `wire`, read in small pieces.
    async fn through(wire: Vec<u8>) -> Vec<u8> {
        let mut fix = AuthorityFix::new(std::io::Cursor::new(wire));
        let mut out = Vec::new();
        fix.read_to_end(&mut out).await.unwrap();
        out
    }

    /// The frames of `bytes` after the preface: kind, flags, payload.
    fn frames(bytes: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
        let mut rest = &bytes[PREFACE_LEN..];
        let mut out = Vec::new();
        while rest.len() >= FRAME_HEADER {
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            out.push((
                rest[3],
                rest[4],
                rest[FRAME_HEADER..FRAME_HEADER + len].to_vec(),
            ));
            rest = &rest[FRAME_HEADER + len..];
        }
        out
    }

    /// The header blocks of `bytes`, decoded as h2 would.
    fn blocks(bytes: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut d = loona_hpack::Decoder::new();
        let (mut out, mut block) = (Vec::new(), Vec::new());
        for (kind, flags, payload) in frames(bytes) {
            if kind == HEADERS || kind == CONTINUATION {
                assert_eq!(flags & PADDED, 0, "the fix writes no padding");
                let skip = if kind == HEADERS && flags & PRIORITY != 0 {
                    5
                } else {
                    0
                };
                block.extend_from_slice(&payload[skip..]);
                if flags & END_HEADERS != 0 {
                    out.push(d.decode(&std::mem::take(&mut block)).unwrap());
                }
            }
        }
        out
    }

    fn authority(block: &[(Vec<u8>, Vec<u8>)]) -> &[u8] {
        &block.iter().find(|(n, _)| n == b":authority").unwrap().1
    }

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    #[tokio::test]
    async fn a_socket_path_authority_reads_as_localhost_on_every_request_of_the_connection() {
        let mut e = loona_hpack::Encoder::new();
        let mut wire = PREFACE.to_vec();
        wire.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        for stream in [1u32, 3, 5] {
            let block = request(&mut e, b"tmp%2Fpyt%2Fh.sock");
            // The third request comes split across HEADERS and CONTINUATION, padded.
            if stream == 5 {
                let (a, b) = block.split_at(block.len() / 2);
                let mut padded = vec![3u8];
                padded.extend_from_slice(a);
                padded.extend_from_slice(&[0, 0, 0]);
                wire.extend(frame(HEADERS, PADDED, stream, &padded));
                wire.extend(frame(CONTINUATION, END_HEADERS, stream, b));
            } else {
                wire.extend(frame(HEADERS, END_HEADERS, stream, &block));
            }
            wire.extend(frame(0x0, END_STREAM, stream, b"\0\0\0\0\0"));
        }
        let out = through(wire).await;
        assert!(out.starts_with(PREFACE));
        let blocks = blocks(&out);
        assert_eq!(blocks.len(), 3);
        for b in &blocks {
            assert_eq!(authority(b), b"localhost");
            assert!(b
                .iter()
                .any(|(n, v)| n == b":path" && v == b"/csi.v1.Identity/Probe"));
        }
        // The DATA frames pass as they were.
        let data: Vec<_> = frames(&out).into_iter().filter(|f| f.0 == 0x0).collect();
        assert_eq!(data.len(), 3);
        assert!(data
            .iter()
            .all(|f| f.1 == END_STREAM && f.2 == b"\0\0\0\0\0"));
    }

    #[tokio::test]
    async fn a_valid_authority_leaves_the_connection_untouched() {
        let mut e = loona_hpack::Encoder::new();
        let mut wire = PREFACE.to_vec();
        for stream in [1u32, 3] {
            let block = request(&mut e, b"localhost");
            wire.extend(frame(HEADERS, END_HEADERS | END_STREAM, stream, &block));
        }
        assert_eq!(through(wire.clone()).await, wire);
    }

    #[tokio::test]
    async fn bytes_the_fix_cannot_read_pass_as_they_came() {
        let mut wire = PREFACE.to_vec();
        // Not HPACK at all: h2 is left to refuse it.
        wire.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &[0xff, 0xff, 0xff, 0xff, 0xff],
        ));
        wire.extend(b"trailing garbage");
        assert_eq!(through(wire.clone()).await, wire);
    }

    #[tokio::test]
    async fn a_frame_larger_than_h2_takes_reaches_h2_at_once() {
        let mut wire = PREFACE.to_vec();
        // A header claiming a 1 MiB HEADERS frame, and only its first bytes.
        wire.extend_from_slice(&[0x10, 0x00, 0x00, HEADERS, END_HEADERS, 0, 0, 0, 1]);
        wire.extend_from_slice(&[0; 100]);
        // The client stays connected: nothing ends the read but the fix.
        let (mut client, server) = tokio::io::duplex(1 << 16);
        tokio::io::AsyncWriteExt::write_all(&mut client, &wire)
            .await
            .unwrap();
        let mut fix = AuthorityFix::new(server);
        let mut got = vec![0; wire.len()];
        tokio::time::timeout(std::time::Duration::from_secs(2), fix.read_exact(&mut got))
            .await
            .expect("h2 gets the bytes without the rest of the frame")
            .unwrap();
        assert_eq!(got, wire);
    }

    #[test]
    fn the_watch_follows_frames_split_anywhere() {
        let mut bytes = frame(0x0, 0, 1, &[7; 100]);
        bytes.extend(frame(RST_STREAM, 0, 1, &1u32.to_be_bytes()));
        bytes.extend(frame(0x1, 0, 3, &[1, 2, 3]));
        for split in [1, 5, 9, 10, 50, 109, 112, 120] {
            let mut w = FrameWatch::default();
            let (a, b) = bytes.split_at(split.min(bytes.len()));
            w.saw(a);
            w.saw(b);
            assert!(w.head.is_empty() && w.skip == 0, "split at {split}");
        }
    }
}
