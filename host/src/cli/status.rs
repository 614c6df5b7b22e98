//! `wasmvol status`: what the running host of a policy serves, asked over
//! its admin socket.

use std::path::Path;

use anyhow::{anyhow, bail, Context};

use wasmvol::admin::{AdminAnswer, AdminRequest, HostStatus};
use wasmvol::policy::Policy;

pub(crate) fn status(config: &Path, output: super::Output) -> anyhow::Result<()> {
    let policy = Policy::load(config)?;
    let socket = policy.host.admin_socket();
    let answer = wasmvol::admin::request(&socket, &AdminRequest::Status)
        .with_context(|| format!("admin socket {}", socket.display()))?;
    let status = match answer {
        None => bail!(
            "no wasmvol serve is running for {} (nothing answers on {})",
            config.display(),
            socket.display()
        ),
        Some(AdminAnswer::Status(s)) => s,
        Some(other) => return Err(anyhow!("unexpected answer: {other:?}")),
    };
    output.print(&status, || table(&status))
}

/// `wasmvol reload`: asks the running host to re-read its policy; exits 1
/// with the host's reason when it refused (it serves on as before).
pub(crate) fn reload(config: &Path) -> anyhow::Result<()> {
    let policy = Policy::load(config).context("the new policy (the host was not asked)")?;
    let socket = policy.host.admin_socket();
    let answer = wasmvol::admin::request(&socket, &AdminRequest::Reload)
        .with_context(|| format!("admin socket {}", socket.display()))?;
    match answer {
        None => bail!(
            "no wasmvol serve is running for {} (nothing answers on {})",
            config.display(),
            socket.display()
        ),
        Some(AdminAnswer::Reloaded(changed)) => {
            println!("reloaded: {changed}");
            Ok(())
        }
        Some(AdminAnswer::Refused(why)) => {
            eprintln!("reload refused (every driver serves as before): {why}");
            std::process::exit(1);
        }
        Some(other) => Err(anyhow!("unexpected answer: {other:?}")),
    }
}

fn table(s: &HostStatus) -> String {
    let mut out = format!(
        "host       wasmvol {}, pid {}, up {} s\nstate      {}\naudit log  {}\nflex       {}\n\n",
        s.version,
        s.pid,
        s.uptime_s,
        s.state_dir.display(),
        s.audit_log.display(),
        s.flex_socket
            .as_ref()
            .map_or("-".into(), |p| p.display().to_string()),
    );
    if let Some(reload) = &s.last_reload {
        out.insert_str(out.len() - 1, &format!("reload     {reload}\n"));
    }
    let rows: Vec<[String; 6]> = s
        .drivers
        .iter()
        .map(|d| {
            [
                d.name.clone(),
                d.version.clone(),
                format!(
                    "{}{}",
                    &d.sha256[..12.min(d.sha256.len())],
                    if d.cached { " (cached)" } else { "" }
                ),
                d.csi.as_ref().map_or("-".into(), |c| {
                    format!("{} on {}", c.name, c.socket.display())
                }),
                d.flex.clone().unwrap_or_else(|| "-".into()),
                format!(
                    "{}/{} ({} waiting)",
                    d.calls_in_flight, d.concurrency, d.calls_waiting
                ),
            ]
        })
        .collect();
    let head = ["DRIVER", "VERSION", "SHA256", "CSI", "FLEX", "CALLS"].map(String::from);
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            rows.iter()
                .chain(std::iter::once(&head))
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in std::iter::once(&head).chain(rows.iter()) {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
