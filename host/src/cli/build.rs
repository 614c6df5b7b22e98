//! `wasmvol build`: driver crates into components, on any machine. With
//! rustup's `wasm32-wasip2` target installed it is an ordinary cargo build;
//! without it (Debian's rustc has no wasm standard library to link) the
//! standard library is built from Debian's Rust source (`rustc-web`,
//! `rust-web-src`, `wasi-libc`; installed with apt when missing) with
//! `-Zbuild-std`, linked by rustup's `rust-lld` or a `wasm-ld`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

const TARGET: &str = "wasm32-wasip2";
/// What the Debian path needs.
const DEBIAN_PACKAGES: &[&str] = &["rustc-web", "rust-web-src", "cargo-web", "wasi-libc"];

/// What to build, from the command line.
#[derive(clap::Args)]
pub(crate) struct BuildArgs {
    /// Driver crate directories (default: this one); several must be
    /// one workspace's.
    crates: Vec<PathBuf>,
    /// The cargo profile.
    #[arg(long, default_value = "release")]
    profile: String,
    /// Cargo's target directory (default: <crate>/target).
    #[arg(long)]
    target_dir: Option<PathBuf>,
    /// Where the components go (default: <target dir>/components).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One driver crate: its package and the library file cargo writes.
struct DriverCrate {
    package: String,
    lib: String,
}

impl DriverCrate {
    fn read(dir: &Path) -> anyhow::Result<Self> {
        let manifest = dir.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("{}", manifest.display()))?;
        let doc: toml::Table =
            toml::from_str(&text).with_context(|| format!("{}", manifest.display()))?;
        let package = doc
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .with_context(|| format!("{}: no [package] name", manifest.display()))?
            .to_owned();
        let lib = doc.get("lib");
        let cdylib = lib
            .and_then(|l| l.get("crate-type"))
            .and_then(|t| t.as_array())
            .is_some_and(|t| t.iter().any(|t| t.as_str() == Some("cdylib")));
        if !cdylib {
            bail!(
                "{}: a driver is a library with crate-type = [\"cdylib\"] under [lib]",
                manifest.display()
            );
        }
        let lib = lib
            .and_then(|l| l.get("name"))
            .and_then(|n| n.as_str())
            .map_or_else(|| package.replace('-', "_"), str::to_owned);
        Ok(Self { package, lib })
    }
}

/// How this machine builds for `wasm32-wasip2`.
enum Toolchain {
    /// rustup with the target installed.
    Rustup,
    /// Debian's rustc-web with `-Zbuild-std`, linked by `lld`.
    DebianBuildStd { lld: PathBuf },
}

fn rustup_has_target() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l == TARGET)
        })
}

/// Installs the Debian packages the build-std path needs, when missing.
fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg")
                .args(["-s", p])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("build: installing {} (apt)", missing.join(" "));
    let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
    if !ok(Command::new("apt-get").args(["update", "-qq"]))
        || !ok(Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    {
        bail!(
            "could not install {} (as root: apt-get install {}; or rustup target add {TARGET})",
            missing.join(" "),
            missing.join(" ")
        );
    }
    Ok(())
}

/// rustup's `rust-lld`, else an `lld` on PATH.
fn find_lld() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let toolchains = home.join(".rustup/toolchains");
    let mut found: Vec<PathBuf> = std::fs::read_dir(toolchains)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| {
            e.path()
                .join("lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld")
        })
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.into_iter().next().or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .flat_map(|d| [d.join("rust-lld"), d.join("wasm-ld")])
                .find(|p| p.exists())
        })
    })
}

impl Toolchain {
    fn find() -> anyhow::Result<Self> {
        if rustup_has_target() {
            return Ok(Self::Rustup);
        }
        debian_packages()?;
        let lld =
            find_lld().context("no rust-lld (rustup) or wasm-ld (apt install lld) to link with")?;
        Ok(Self::DebianBuildStd { lld })
    }

    fn describe(&self) -> &'static str {
        match self {
            Self::Rustup => "rustup wasm32-wasip2",
            Self::DebianBuildStd { .. } => "Debian rustc-web with build-std",
        }
    }

    /// The cargo command that builds for the target into `target_dir`.
    fn cargo(&self, target_dir: &Path) -> anyhow::Result<Command> {
        match self {
            Self::Rustup => {
                let mut c =
                    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
                c.args(["build", "--target", TARGET]);
                Ok(c)
            }
            Self::DebianBuildStd { lld } => {
                // Debian's rustc looks for rust-lld and wasm-ld on PATH.
                let links = target_dir.join("wasm-linkers");
                std::fs::create_dir_all(&links)?;
                for name in ["rust-lld", "wasm-ld"] {
                    let link = links.join(name);
                    let _ = std::fs::remove_file(&link);
                    std::os::unix::fs::symlink(lld, &link)?;
                }
                let mut path = OsString::from(&links);
                if let Some(p) = std::env::var_os("PATH") {
                    path.push(":");
                    path.push(p);
                }
                let mut c = Command::new("/usr/bin/cargo");
                c.env("PATH", path)
                    .env(
                        "RUSTFLAGS",
                        "-L /usr/lib/wasm32-wasi -C link-self-contained=no -C link-arg=-L/usr/lib/wasm32-wasi",
                    )
                    .env("RUSTC", "/usr/bin/rustc")
                    .env("RUSTC_BOOTSTRAP", "1")
                    .args(["build", "-Zbuild-std=std,panic_abort", "--target", TARGET]);
                Ok(c)
            }
        }
    }
}

/// Builds the crates (one cargo run: they are one workspace's, or one
/// crate) and copies each component to the output directory.
pub(crate) fn build(args: BuildArgs) -> anyhow::Result<()> {
    let crates = if args.crates.is_empty() {
        vec![std::env::current_dir()?]
    } else {
        args.crates
    };
    let drivers: Vec<DriverCrate> = crates
        .iter()
        .map(|c| DriverCrate::read(c))
        .collect::<anyhow::Result<_>>()?;
    let dir = std::fs::canonicalize(&crates[0])?;
    let target_dir = args.target_dir.unwrap_or_else(|| dir.join("target"));
    let target_dir = std::path::absolute(&target_dir)?;
    let out = std::path::absolute(args.out.unwrap_or_else(|| target_dir.join("components")))?;
    let toolchain = Toolchain::find()?;
    eprintln!(
        "build: {} with {} (profile {}), cargo's progress follows",
        drivers
            .iter()
            .map(|d| d.package.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        toolchain.describe(),
        args.profile
    );
    let mut cargo = toolchain.cargo(&target_dir)?;
    cargo
        .current_dir(&dir)
        .arg("--profile")
        .arg(&args.profile)
        .arg("--target-dir")
        .arg(&target_dir);
    for d in &drivers {
        cargo.args(["-p", &d.package]);
    }
    let status = cargo.status().context("run cargo")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    let profile_dir = match args.profile.as_str() {
        "dev" | "test" => "debug",
        "bench" => "release",
        p => p,
    };
    std::fs::create_dir_all(&out)?;
    for d in &drivers {
        let built = target_dir
            .join(TARGET)
            .join(profile_dir)
            .join(format!("{}.wasm", d.lib));
        let dest = out.join(format!("{}.wasm", d.package));
        let tmp = out.join(format!(".{}.wasm.tmp", d.package));
        std::fs::copy(&built, &tmp).with_context(|| format!("{}", built.display()))?;
        std::fs::rename(&tmp, &dest)?;
        let bytes = std::fs::read(&dest)?;
        println!(
            "build: {} ({} bytes, sha256 {})",
            dest.display(),
            bytes.len(),
            wasmvol::digest::Sha256Digest::of(&bytes).to_hex()
        );
    }
    Ok(())
}
