//! `verify` (being written).

use crate::common::{Context, Exit};

/// `verify`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `verify`.
pub async fn run(_args: Args, _ctx: &Context) -> anyhow::Result<Exit> {
    anyhow::bail!("verify: not built yet")
}
