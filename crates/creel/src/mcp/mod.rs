//! MCP server (placeholder in the scratch tree).
#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// Serve streamable HTTP on this address instead of stdio
    #[arg(long)]
    pub http: Option<std::net::SocketAddr>,
}
pub fn run(_engine: creel_engine::Engine, _args: McpArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
