//! `sign` (being written).

use crate::common::{Context, Exit};

/// `sign`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `sign`.
pub async fn run(_args: Args, _ctx: &Context) -> anyhow::Result<Exit> {
    anyhow::bail!("sign: not built yet")
}
