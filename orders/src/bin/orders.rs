//! The orders service (reads DATABASE_URL, ORDERS_LISTEN, PAYMENTS_*, ...).

use orders::config::OrdersConfig;
use orders::startup::Application;
use platform::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::logs::init();
    let config = OrdersConfig::from_env()?;
    let verifier = waitroom::config::verifier_from_env()?;
    let app = Application::build(config, verifier).await?;
    let s = app.state();
    tracing::info!(listen = %app.local_addr(), provider = s.config.payments.provider, "orders starting");
    app.run_until_stopped(Shutdown::on_signal()).await?;
    Ok(())
}
