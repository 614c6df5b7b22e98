//! Component signatures: a vendor signs a `.wasm` once, and a policy that
//! pins the driver by signer (`signed_by`) accepts every release signed by
//! that key, where a `sha256` pin accepts exactly one file.
//!
//! The signature travels inside the component, as its last section: a
//! custom section named [`SECTION`] holding a format byte, the signer's
//! ed25519 public key and a signature over a domain tag and the sha256 of
//! every byte before the section. The component stays one file that any
//! wasm tool reads (custom sections are ignored by runtimes); re-signing
//! replaces the section. Keys are written `ed25519:<64 hex>` (public) and
//! `ed25519-secret:<64 hex>` (the secret seed, kept 0600).

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::digest::Sha256Digest;

/// The custom section that carries the signature.
pub const SECTION: &str = "wasmvol-signature";
/// The section's format.
const FORMAT: u8 = 1;
/// What the signature covers, before the digest: no signature made for
/// anything else verifies as a component's.
const DOMAIN: &[u8] = b"wasmvol component signature v1\0";

/// Why a key or a signature was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The component carries no signature section.
    #[error("it is not signed (no `{SECTION}` section at its end; sign it with `wasmvol sign`)")]
    Unsigned,
    /// The section is not one this host reads.
    #[error("its signature section is malformed: {0}")]
    Malformed(String),
    /// Signed, but by a key the policy does not trust.
    #[error("it is signed by {0}, which is not among the trusted keys")]
    UntrustedSigner(PublicKey),
    /// The signature does not match the bytes (changed after signing).
    #[error("its signature by {0} does not match its bytes (changed after signing?)")]
    Mismatch(PublicKey),
    /// A key in the wrong form.
    #[error("{0}")]
    Key(String),
    /// The bytes are not a WebAssembly binary.
    #[error("it is not a WebAssembly binary")]
    NotWasm,
}

/// An ed25519 public key that signs components (its 32 bytes, checked to
/// be a curve point when parsed).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Parses `ed25519:<64 hex>`.
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let hex = text.trim().strip_prefix("ed25519:").ok_or_else(|| {
            SignatureError::Key(format!("`{text}` is not a public key `ed25519:<64 hex>`"))
        })?;
        let bytes = key_bytes(hex)?;
        VerifyingKey::from_bytes(&bytes)
            .map(|k| Self(k.to_bytes()))
            .map_err(|e| SignatureError::Key(format!("`{text}` is not an ed25519 point: {e}")))
    }

    /// A policy's `signed_by` entry: a key itself, or a file that holds one
    /// (a relative path is taken against `base`, the policy's folder).
    pub fn from_entry(entry: &str, base: &Path) -> Result<Self, SignatureError> {
        if entry.starts_with("ed25519:") {
            return Self::parse(entry);
        }
        let path = base.join(entry);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| SignatureError::Key(format!("key file {}: {e}", path.display())))?;
        Self::parse(&text)
            .map_err(|e| SignatureError::Key(format!("key file {}: {e}", path.display())))
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ed25519:{}", hex::encode(self.0))
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// A vendor's signing key. Its `Debug` shows only the public half.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A new key from the kernel's random source.
    pub fn generate() -> std::io::Result<Self> {
        let mut seed = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut seed)?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// Parses `ed25519-secret:<64 hex>` (a key file's text).
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let hex = text.trim().strip_prefix("ed25519-secret:").ok_or_else(|| {
            SignatureError::Key("not a secret key `ed25519-secret:<64 hex>`".into())
        })?;
        Ok(Self(SigningKey::from_bytes(&key_bytes(hex)?)))
    }

    /// The key file's text.
    pub fn to_text(&self) -> String {
        format!("ed25519-secret:{}\n", hex::encode(self.0.to_bytes()))
    }

    /// Its public half, which policies trust.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(of {})", self.public())
    }
}

fn key_bytes(hex: &str) -> Result<[u8; 32], SignatureError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex.trim(), &mut out)
        .map_err(|_| SignatureError::Key("a key is 64 hex digits".into()))?;
    Ok(out)
}

/// What the signature signs: the domain tag and the unsigned bytes' digest.
fn message(unsigned: &[u8]) -> Vec<u8> {
    let mut m = DOMAIN.to_vec();
    m.extend_from_slice(Sha256Digest::of(unsigned).as_bytes());
    m
}

/// A component's bytes without its signature section, and the section's
/// contents when it has one.
fn split(bytes: &[u8]) -> Result<(&[u8], Option<&[u8]>), SignatureError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(SignatureError::NotWasm);
    }
    let mut at = 8;
    let mut last = None;
    while at < bytes.len() {
        let start = at;
        let id = bytes[at];
        let (size, n) = leb_u32(&bytes[at + 1..])
            .ok_or_else(|| SignatureError::Malformed(format!("section size at byte {}", at + 1)))?;
        let body = at + 1 + n;
        let end = body
            .checked_add(size as usize)
            .filter(|e| *e <= bytes.len())
            .ok_or_else(|| {
                SignatureError::Malformed(format!("section at byte {start} runs past the end"))
            })?;
        last = Some((start, id, body, end));
        at = end;
    }
    let Some((start, 0, body, end)) = last else {
        return Ok((bytes, None));
    };
    let payload = &bytes[body..end];
    let Some((name_len, n)) = leb_u32(payload) else {
        return Ok((bytes, None));
    };
    let name = payload.get(n..n + name_len as usize);
    if name != Some(SECTION.as_bytes()) {
        return Ok((bytes, None));
    }
    Ok((&bytes[..start], Some(&payload[n + name_len as usize..])))
}

fn leb_u32(b: &[u8]) -> Option<(u32, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in b.iter().take(5).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return u32::try_from(value).ok().map(|v| (v, i + 1));
        }
    }
    None
}

fn leb(mut v: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Signs a component: its bytes (any earlier signature dropped) with a
/// signature section by `key` at the end.
pub fn sign(bytes: &[u8], key: &SecretKey) -> Result<Vec<u8>, SignatureError> {
    let (unsigned, _) = split(bytes)?;
    let signature = key.0.sign(&message(unsigned));
    let mut contents = vec![FORMAT];
    contents.extend_from_slice(key.0.verifying_key().as_bytes());
    contents.extend_from_slice(&signature.to_bytes());
    let mut payload = Vec::new();
    leb(SECTION.len(), &mut payload);
    payload.extend_from_slice(SECTION.as_bytes());
    payload.extend_from_slice(&contents);
    let mut out = unsigned.to_vec();
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The key that signed `bytes`, whether or not anyone trusts it; an error
/// if they are unsigned or the signature does not match them.
pub fn signer(bytes: &[u8]) -> Result<PublicKey, SignatureError> {
    let (unsigned, section) = split(bytes)?;
    let contents = section.ok_or(SignatureError::Unsigned)?;
    let [FORMAT, rest @ ..] = contents else {
        return Err(SignatureError::Malformed(format!(
            "format {:?}, this host reads {FORMAT}",
            contents.first()
        )));
    };
    if rest.len() != 32 + 64 {
        return Err(SignatureError::Malformed(format!(
            "{} bytes of key and signature, not 96",
            rest.len()
        )));
    }
    let key: [u8; 32] = rest[..32].try_into().expect("32 bytes");
    let verifying = VerifyingKey::from_bytes(&key)
        .map_err(|e| SignatureError::Malformed(format!("the signer is not an ed25519 key: {e}")))?;
    let signature = Signature::from_bytes(&rest[32..].try_into().expect("64 bytes"));
    verifying
        .verify_strict(&message(unsigned), &signature)
        .map_err(|_| SignatureError::Mismatch(PublicKey(key)))?;
    Ok(PublicKey(key))
}

/// Checks that `bytes` carry a valid signature by one of `trusted`; returns that key.
pub fn verify(bytes: &[u8], trusted: &[PublicKey]) -> Result<PublicKey, SignatureError> {
    let key = signer(bytes)?;
    if !trusted.contains(&key) {
        return Err(SignatureError::UntrustedSigner(key));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: the header alone, then a custom section.
    fn component() -> Vec<u8> {
        let mut c = b"\0asm\x0d\0\x01\0".to_vec();
        c.extend_from_slice(&[0, 4, 3, b'a', b'b', b'c']);
        c
    }

    #[test]
    fn a_signed_component_verifies_and_any_changed_byte_does_not() {
        let key = SecretKey::generate().unwrap();
        let signed = sign(&component(), &key).unwrap();
        assert_eq!(verify(&signed, &[key.public()]).unwrap(), key.public());
        for i in 8..signed.len() {
            let mut tampered = signed.clone();
            tampered[i] ^= 1;
            assert!(
                verify(&tampered, &[key.public()]).is_err(),
                "byte {i} changed"
            );
        }
        let other = SecretKey::generate().unwrap();
        assert!(matches!(
            verify(&signed, &[other.public()]),
            Err(SignatureError::UntrustedSigner(k)) if k == key.public()
        ));
        assert!(matches!(
            verify(&component(), &[key.public()]),
            Err(SignatureError::Unsigned)
        ));
    }

    #[test]
    fn signing_again_replaces_the_signature() {
        let (a, b) = (
            SecretKey::generate().unwrap(),
            SecretKey::generate().unwrap(),
        );
        let once = sign(&component(), &a).unwrap();
        let twice = sign(&once, &b).unwrap();
        assert_eq!(once.len(), twice.len());
        assert_eq!(signer(&twice).unwrap(), b.public());
        assert_eq!(split(&twice).unwrap().0, component().as_slice());
    }

    #[test]
    fn keys_read_back_as_written_and_bad_ones_are_named() {
        let key = SecretKey::generate().unwrap();
        let back = SecretKey::parse(&key.to_text()).unwrap();
        assert_eq!(back.public(), key.public());
        assert_eq!(
            PublicKey::parse(&key.public().to_string()).unwrap(),
            key.public()
        );
        assert!(
            !format!("{key:?}").contains(&key.to_text()[15..]),
            "Debug shows no secret"
        );
        for bad in ["", "ed25519:00", "rsa:abcd", "ed25519-secret:zz"] {
            assert!(PublicKey::parse(bad).is_err(), "{bad}");
        }
    }
}
