//! `secret` (being written).

use crate::common::{Context, Exit};

/// `secret`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `secret`.
pub async fn run(_args: Args, _ctx: &Context) -> anyhow::Result<Exit> {
    anyhow::bail!("secret: not built yet")
}
