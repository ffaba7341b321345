//! Tracing, set up the same way in every binary: `RUST_LOG` when given, else `info`,
//! to stderr (stdout is a command's answer, e.g. `console token create`).
//! No personal data goes in fields (see `infra/pii-check`); that rule is the callers'.

/// Installs the global subscriber; call once, first thing in `main`.
pub fn init() {
    init_with("info");
}

/// As [`init`], with another default filter when `RUST_LOG` is unset.
pub fn init_with(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
