//! Start-up wiring: secret, engine, ports, metrics endpoint, signal handling,
//! then the I/O loop until SIGINT/SIGTERM. Owned by the gateway runner.

use crate::config::Settings;

/// Run the gateway until a shutdown signal. Placeholder until the runner lands.
pub fn run(_settings: &Settings) -> anyhow::Result<()> {
    anyhow::bail!("gateway runner not implemented yet")
}
