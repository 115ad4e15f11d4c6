//! `tail` (being written).

use crate::common::{Context, Exit};

/// `tail`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `tail`.
pub async fn run(_args: Args, _ctx: &Context) -> anyhow::Result<Exit> {
    anyhow::bail!("tail: not built yet")
}
