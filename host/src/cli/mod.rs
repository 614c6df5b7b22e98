//! The subcommands, one file each.

pub(crate) mod audit;
pub(crate) mod build;
pub(crate) mod conformance;
pub(crate) mod flex;
pub(crate) mod inspect;
pub(crate) mod manifests;
pub(crate) mod new;
pub(crate) mod serve;
pub(crate) mod sign;
pub(crate) mod status;

/// How a subcommand whose output is data prints it (`-o`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    /// Aligned columns, for people.
    Table,
    /// JSON, for tools.
    Json,
    /// YAML, for people who diff it and tools that read it.
    Yaml,
}

impl Output {
    /// Prints `data` as JSON or YAML, or `table()` for a table.
    pub(crate) fn print<T: serde::Serialize>(
        self,
        data: &T,
        table: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        match self {
            Output::Table => print!("{}", table()),
            Output::Json => println!("{}", serde_json::to_string_pretty(data)?),
            Output::Yaml => print!(
                "{}",
                wasmvol::manifests::yaml::document(&serde_json::to_value(data)?)
            ),
        }
        Ok(())
    }
}
