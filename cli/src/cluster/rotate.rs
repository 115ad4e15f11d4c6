//! `rotate` (being written).

use crate::common::{Context, Exit};

/// `rotate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `rotate`.
pub async fn run(_args: Args, _ctx: &Context) -> anyhow::Result<Exit> {
    anyhow::bail!("rotate: not built yet")
}
