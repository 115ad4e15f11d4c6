//! `status` (being written).

use crate::common::{Context, Exit};

/// `status`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `status`.
pub async fn run(_args: Args, _ctx: &Context) -> anyhow::Result<Exit> {
    anyhow::bail!("status: not built yet")
}
