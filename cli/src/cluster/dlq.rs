//! `dlq` (being written).

use crate::common::{Context, Exit};

/// `dlq`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List.
    List {},
}

/// Runs `dlq`.
pub async fn run(_command: Command, _ctx: &Context) -> anyhow::Result<Exit> {
    anyhow::bail!("dlq: not built yet")
}
