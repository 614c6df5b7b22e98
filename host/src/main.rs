//! `wasmvol`: the host binary.

mod cli;

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};

use wasmvol::call::Operation;
use wasmvol::policy::Policy;
use wasmvol::runtime::Runtime;

/// Run Kubernetes storage drivers as sandboxed WebAssembly components.
#[derive(Parser)]
#[command(name = "wasmvol", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load every driver of a policy and serve them.
    Serve {
        /// The policy: host settings, and each driver's component, digest,
        /// grants, limits and sockets.
        #[arg(long)]
        config: PathBuf,
    },
    /// Show a component's imports and exports and the grants it would need.
    Inspect {
        /// The component (.wasm).
        component: PathBuf,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// For each driver of a policy: pinned digest, imports, grants, unused and missing grants.
    Audit {
        /// The policy to audit.
        #[arg(long)]
        config: PathBuf,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Exit 1 when a driver would be refused (digest, unreadable
        /// component, an import not granted) or has a grant it cannot use.
        #[arg(long)]
        strict: bool,
        /// The audit log (and its rotations, FILE.1, FILE.2.gz, …): add what
        /// each driver used, and each grant wider than that use.
        #[arg(long)]
        log: Option<PathBuf>,
        /// Only the log's records of this last span (`30m`, `24h`, `7d`).
        #[arg(long, value_parser = wasmvol::grant_usage::parse_duration, requires = "log")]
        since: Option<std::time::Duration>,
    },
    /// Install or remove the FlexVolume shim for a driver.
    Flex {
        #[command(subcommand)]
        command: FlexCommand,
    },
    /// Write a policy file (to stdout).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Print the Kubernetes objects that deploy the policy (YAML, to stdout).
    Manifests {
        /// The policy the node DaemonSet runs (its text becomes the ConfigMap).
        #[arg(long)]
        config: PathBuf,
        /// The wasmvol image (the host, the shim and the components).
        #[arg(long, default_value = "ghcr.io/wasmvol/wasmvol:0.1.0")]
        image: String,
        /// The namespace of the node objects.
        #[arg(long, default_value = "wasmvol")]
        namespace: String,
        /// Where the components are on this machine, when the policy names
        /// their paths inside the image (found by file name).
        #[arg(long)]
        components: Option<PathBuf>,
        /// A Kubernetes `List` as JSON instead of a YAML stream.
        #[arg(long)]
        json: bool,
    },
    /// Build driver crates into components (rustup's wasm32-wasip2 when
    /// installed, else Debian's Rust source with build-std, installed with
    /// apt when missing). Prints each component's path, size and sha256.
    Build(cli::build::BuildArgs),
    /// Make a signing key for components: PREFIX.key and PREFIX.pub.
    Key(cli::sign::KeyArgs),
    /// Sign a component, so policies that trust the key (`signed_by`) load it.
    Sign(cli::sign::SignArgs),
    /// Check a component's signature; exit 1 unless a trusted key made it.
    Verify(cli::sign::VerifyArgs),
    /// Write a new driver crate (Cargo.toml, a driver, a unit test, a
    /// policy entry) into ./NAME.
    New {
        /// The driver's name: lowercase letters, digits and `-`.
        name: String,
        /// wasmvol's guest-sdk crate (default: the one this wasmvol was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Run the CSI conformance sweep against a component, in a sandbox of its
    /// own (root: it mounts for real, in a private mount namespace). Prints a
    /// row per spec sentence; exits 1 when a row fails.
    Conformance(cli::conformance::ConformanceArgs),
    /// Show the running host of a policy: its drivers (version, digest,
    /// sockets, calls in flight), state directory and audit log.
    Status {
        /// The policy the host runs (its state directory holds the admin socket).
        #[arg(long)]
        config: PathBuf,
        /// Output: a table for people, JSON or YAML for tools.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = cli::Output::Table)]
        output: cli::Output,
    },
    /// Make the running host re-read its policy (as SIGHUP does): changed
    /// drivers are swapped in while calls in flight finish on the old
    /// version. Exit 1, with why, when the host refused the new policy (it
    /// then serves on as before).
    Reload {
        /// The policy the host runs (it re-reads the file it was started with).
        #[arg(long)]
        config: PathBuf,
    },
    /// Call one export of a driver by hand and print its answer as JSON
    /// (through the running host when there is one).
    Call {
        /// The policy whose driver to call: its running host takes the call
        /// over the admin socket; with none running, the call runs here.
        #[arg(long)]
        config: PathBuf,
        /// The driver's name in the policy.
        driver: String,
        /// e.g. create-volume, node-publish, list-snapshots
        operation: String,
        /// The request as JSON (field names as in the WIT records, snake_case).
        #[arg(long, default_value = "{}")]
        request: String,
        /// Request id for logs and the audit trail.
        #[arg(long, default_value = "cli")]
        request_id: String,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// The bundled example drivers (hostpath, loopfs, scratch), pinned by their digests now.
    Bundled {
        /// The directory holding hostpath.wasm and loopfs.wasm.
        #[arg(long)]
        components: PathBuf,
        /// The host's home: state and the drivers' storage roots go beneath it.
        #[arg(long)]
        home: PathBuf,
        /// hostpath's CSI socket.
        #[arg(long)]
        hostpath_socket: PathBuf,
        /// loopfs's CSI socket.
        #[arg(long)]
        loopfs_socket: PathBuf,
        /// scratch's CSI socket.
        #[arg(long)]
        scratch_socket: PathBuf,
    },
}

#[derive(Subcommand)]
enum FlexCommand {
    /// Install the shim as <plugin dir>/<vendor~name>/<name> (atomically).
    Install {
        /// The FlexVolume driver name, vendor/name.
        #[arg(long)]
        driver: String,
        /// kubelet's FlexVolume plugin directory (`--volume-plugin-dir`).
        #[arg(long, default_value = wasmvol::flex::install::DEFAULT_PLUGIN_DIR)]
        plugin_dir: PathBuf,
        /// The host's Flex socket the shim will call.
        #[arg(long, default_value = wasmvol_flex::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// The shim binary to install (default: wasmvol-flex beside this program).
        #[arg(long)]
        shim: Option<PathBuf>,
        /// Stay running once installed (an installer container of a DaemonSet).
        #[arg(long)]
        stay: bool,
    },
    /// Remove an installed shim.
    Uninstall {
        /// The FlexVolume driver name, vendor/name.
        #[arg(long)]
        driver: String,
        /// kubelet's FlexVolume plugin directory.
        #[arg(long, default_value = wasmvol::flex::install::DEFAULT_PLUGIN_DIR)]
        plugin_dir: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        // Like any Unix filter: a closed pipe (`wasmvol inspect x | head`) ends
        // us quietly. Never for `serve`: a client hanging up must not kill the host.
        // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let default_filter = match cli.command {
        // Every allowed capability use is in the audit log file already;
        // on stderr by default only denials, which someone should see.
        Command::Serve { .. } => "info,wasmvol::audit=warn",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(cli) {
        // A driver call that failed: its class and message, and an exit
        // status per class (see `CallError::exit_code`).
        if let Some(failed) = e.downcast_ref::<wasmvol::call::CallError>() {
            eprintln!("{}: {}", failed.class(), failed.message());
            std::process::exit(failed.exit_code());
        }
        eprintln!("wasmvol: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// An error chain on one line.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => cli::serve::serve(&config),
        Command::Inspect { component, json } => cli::inspect::inspect(&component, json),
        Command::Audit {
            config,
            json,
            strict,
            log,
            since,
        } => {
            if !cli::audit::audit(&config, json, strict, log.as_deref(), since)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Flex { command } => cli::flex::flex(command),
        Command::Build(args) => cli::build::build(args),
        Command::Key(args) => cli::sign::key(args),
        Command::Sign(args) => cli::sign::sign(args),
        Command::Verify(args) => cli::sign::verify(args),
        Command::New { name, sdk } => cli::new::new(&name, sdk),
        Command::Status { config, output } => cli::status::status(&config, output),
        Command::Reload { config } => cli::status::reload(&config),
        Command::Conformance(args) => {
            if !cli::conformance::conformance(args)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Policy {
            command:
                PolicyCommand::Bundled {
                    components,
                    home,
                    hostpath_socket,
                    loopfs_socket,
                    scratch_socket,
                },
        } => {
            let paths = wasmvol::policy::bundled::BundledPaths {
                components,
                home,
                hostpath_socket,
                loopfs_socket,
                scratch_socket,
            };
            let file = wasmvol::policy::bundled::bundled(&paths)
                .with_context(|| format!("components in {}", paths.components.display()))?;
            print!("{}", file.to_toml());
            Ok(())
        }
        Command::Manifests {
            config,
            image,
            namespace,
            components,
            json,
        } => cli::manifests::manifests(&config, &image, &namespace, components.as_deref(), json),
        Command::Call {
            config,
            driver,
            operation,
            request,
            request_id,
        } => {
            let policy = Policy::load(&config)?;
            let request: serde_json::Value = serde_json::from_str(&request)
                .map_err(|e| anyhow!("--request is not JSON: {e}"))?;
            let socket = policy.host.admin_socket();
            let remote = wasmvol::admin::AdminRequest::Call {
                driver: driver.clone(),
                operation: operation.clone(),
                request: request.clone(),
                request_id: request_id.clone(),
            };
            let served = wasmvol::admin::request(&socket, &remote)
                .with_context(|| format!("admin socket {}", socket.display()))?;
            if let Some(answer) = served {
                use wasmvol::admin::AdminAnswer;
                return match answer {
                    AdminAnswer::Outcome(v) => {
                        println!("{}", serde_json::to_string_pretty(&v)?);
                        Ok(())
                    }
                    AdminAnswer::Failed {
                        class,
                        message,
                        exit_code,
                    } => {
                        eprintln!("{class}: {message}");
                        std::process::exit(exit_code);
                    }
                    AdminAnswer::Refused(why) => Err(anyhow!(why)),
                    AdminAnswer::Status(_) | AdminAnswer::Reloaded(_) => {
                        Err(anyhow!("the host answered a call with something else"))
                    }
                };
            }
            let op = Operation::from_json(&operation, request).map_err(|e| anyhow!(e))?;
            let runtime = Runtime::start(&policy, Some(&driver))?;
            let outcome = runtime.call(&driver, &request_id, op)?;
            println!("{}", serde_json::to_string_pretty(&outcome)?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand and argument has help text (`wasmvol X --help` is
    /// how an operator learns the CLI).
    #[test]
    fn every_subcommand_and_argument_says_what_it_is() {
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if id != "help" && id != "version" && a.get_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for s in c.get_subcommands().filter(|s| s.get_name() != "help") {
                let sub = format!("{path} {}", s.get_name());
                if s.get_about().is_none() {
                    missing.push(sub.clone());
                }
                walk(s, &sub, missing);
            }
        }
        let cli = super::Cli::command();
        cli.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cli, "wasmvol", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
