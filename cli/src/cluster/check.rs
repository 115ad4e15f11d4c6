//! `check` (being written).

use crate::common::{Context, Exit};

/// `check`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `check`.
pub async fn run(_args: Args, _ctx: &Context) -> anyhow::Result<Exit> {
    anyhow::bail!("check: not built yet")
}
