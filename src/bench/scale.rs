//! placeholder
#[derive(clap::Args, Clone, Debug)]
pub struct ScaleBenchArgs {
    #[arg(long)]
    pub json: bool,
}
pub async fn run(_: &ScaleBenchArgs) -> anyhow::Result<Vec<super::Table>> {
    Ok(vec![])
}
