//! `send` (being written).

use crate::common::{Context, Exit};

/// `send`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `send`.
pub async fn run(_args: Args, _ctx: &Context) -> anyhow::Result<Exit> {
    anyhow::bail!("send: not built yet")
}
