//! `check_inject` (being written).

use crate::common::{Context, Exit};

/// `check_inject`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `check_inject`.
pub async fn run(_args: Args, _ctx: &Context) -> anyhow::Result<Exit> {
    anyhow::bail!("check_inject: not built yet")
}
