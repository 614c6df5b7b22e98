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
        #[arg(long)]
        config: PathBuf,
    },
    /// Show a component's imports and exports and the grants it would need.
    Inspect {
        component: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// For each driver of a policy: pinned digest, imports, grants, unused and missing grants.
    Audit {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
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
    /// Call one export of a driver by hand and print its answer as JSON.
    Call {
        #[arg(long)]
        config: PathBuf,
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
        #[arg(long)]
        driver: String,
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
        Command::Audit { config, json } => cli::audit::audit(&config, json),
        Command::Flex { command } => cli::flex::flex(command),
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
            let op = Operation::from_json(&operation, request).map_err(|e| anyhow!(e))?;
            let runtime = Runtime::start(&policy, Some(&driver))?;
            let outcome = runtime.call(&driver, &request_id, op)?;
            println!("{}", serde_json::to_string_pretty(&outcome)?);
            Ok(())
        }
    }
}
