//! `wasmvol key`, `wasmvol sign`, `wasmvol verify`: a vendor's signing key,
//! and the signature a policy's `signed_by` checks (see `wasmvol::signature`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::{bail, Context};

use wasmvol::digest::Sha256Digest;
use wasmvol::signature::{self, PublicKey, SecretKey};

/// `wasmvol key`.
#[derive(clap::Args)]
pub(crate) struct KeyArgs {
    /// Writes PREFIX.key (the secret, mode 0600; keep it off the nodes) and
    /// PREFIX.pub (what policies put in `signed_by`). Refuses to overwrite.
    #[arg(long)]
    out: PathBuf,
}

/// `wasmvol sign`.
#[derive(clap::Args)]
pub(crate) struct SignArgs {
    /// The secret key file (from `wasmvol key`).
    #[arg(long)]
    key: PathBuf,
    /// The component to sign (any signature it has is replaced).
    component: PathBuf,
    /// Where to write the signed component (default: in place).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `wasmvol verify`.
#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    /// A trusted public key (`ed25519:<hex>`) or key file; give several to
    /// accept any of them. With none, prints who signed it without trusting anyone.
    #[arg(long = "key")]
    keys: Vec<String>,
    /// The component to check.
    component: PathBuf,
}

pub(crate) fn key(args: KeyArgs) -> anyhow::Result<()> {
    let key = SecretKey::generate().context("reading /dev/urandom")?;
    let secret = args.out.with_extension("key");
    let public = args.out.with_extension("pub");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret)
        .with_context(|| format!("creating {}", secret.display()))?;
    file.write_all(key.to_text().as_bytes())?;
    std::fs::write(&public, format!("{}\n", key.public()))
        .with_context(|| format!("writing {}", public.display()))?;
    println!("secret key {} (0600)", secret.display());
    println!("public key {}: {}", public.display(), key.public());
    Ok(())
}

pub(crate) fn sign(args: SignArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.key)
        .with_context(|| format!("reading {}", args.key.display()))?;
    let key = SecretKey::parse(&text).with_context(|| args.key.display().to_string())?;
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("reading {}", args.component.display()))?;
    let signed =
        signature::sign(&bytes, &key).with_context(|| args.component.display().to_string())?;
    let out = args.out.unwrap_or(args.component);
    // Written beside and renamed: a host reading the file sees the old
    // bytes or the new ones, never half of each.
    let staged = out.with_extension("wasm.signing");
    std::fs::write(&staged, &signed).with_context(|| format!("writing {}", staged.display()))?;
    std::fs::rename(&staged, &out).with_context(|| format!("moving to {}", out.display()))?;
    println!(
        "signed {} by {} (sha256 {})",
        out.display(),
        key.public(),
        Sha256Digest::of(&signed)
    );
    Ok(())
}

/// Exit 1 (with why) unless the component is signed by a trusted key.
pub(crate) fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let base = std::env::current_dir()?;
    let trusted = (args.keys.iter())
        .map(|k| PublicKey::from_entry(k, &base))
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("reading {}", args.component.display()))?;
    let checked = if trusted.is_empty() {
        signature::signer(&bytes)
    } else {
        signature::verify(&bytes, &trusted)
    };
    match checked {
        Ok(signer) => {
            let trust = if trusted.is_empty() {
                "valid, trust not checked"
            } else {
                "trusted"
            };
            println!(
                "{}: signed by {signer} ({trust}), sha256 {}",
                args.component.display(),
                Sha256Digest::of(&bytes)
            );
            Ok(())
        }
        Err(e) => bail!("{}: {e}", args.component.display()),
    }
}
