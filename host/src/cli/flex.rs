//! `wasmvol flex install|uninstall`: the shim where kubelet looks for it.

use anyhow::anyhow;

use wasmvol::policy::FlexName;

use crate::FlexCommand;

pub(crate) fn flex(command: FlexCommand) -> anyhow::Result<()> {
    match command {
        FlexCommand::Install {
            driver,
            plugin_dir,
            socket,
            shim,
            stay,
        } => {
            let name = FlexName::parse(&driver).map_err(|e| anyhow!("--driver: {e}"))?;
            let shim = match shim {
                Some(s) => s,
                None => std::env::current_exe()?
                    .parent()
                    .map(|d| d.join("wasmvol-flex"))
                    .ok_or_else(|| anyhow!("cannot locate wasmvol-flex; pass --shim"))?,
            };
            let dest = wasmvol::flex::install::install(&shim, &plugin_dir, &name, &socket)?;
            println!("installed {} (calls {})", dest.display(), socket.display());
            if stay {
                // Until the pod ends (SIGTERM's default action ends us).
                loop {
                    std::thread::park();
                }
            }
            Ok(())
        }
        FlexCommand::Uninstall { driver, plugin_dir } => {
            let name = FlexName::parse(&driver).map_err(|e| anyhow!("--driver: {e}"))?;
            Ok(wasmvol::flex::install::uninstall(&plugin_dir, &name)?)
        }
    }
}
