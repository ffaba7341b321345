//! The admitter's own small HTTP face: liveness, readiness (Redis reachable) and metrics,
//! through the probes every service shares (`platform::probes`).

use std::sync::Arc;

use axum::Router;

use crate::admission::Admitter;
use crate::queue::Waitroom;

#[derive(Clone)]
struct Probe {
    room: Waitroom,
    admitter: Arc<Admitter>,
}

impl platform::probes::Probe for Probe {
    async fn ready(&self) -> Result<(), &'static str> {
        self.room.ping().await.map_err(|_| "redis unreachable")
    }

    fn registry(&self) -> &prometheus::Registry {
        &self.admitter.metrics().registry
    }
}

pub fn router(room: Waitroom, admitter: Arc<Admitter>) -> Router {
    platform::probes::routes().with_state(Probe { room, admitter })
}
