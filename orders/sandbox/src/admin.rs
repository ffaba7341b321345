//! The sandbox's control surface: the fault knobs (`GET`/`PUT /admin/faults`) and
//! the record of webhook deliveries (`GET /admin/webhooks`).
//!
//! No API key: like the hosted page, it is meant for the machine the sandbox runs
//! on (it listens on loopback by default), and test scripts drive it with plain
//! curl.

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::Error;
use crate::app::Sandbox;
use crate::faults::{Faults, FaultsPatch};

pub fn router() -> Router<Sandbox> {
    Router::new()
        .route("/admin/faults", get(get_faults).put(put_faults))
        .route("/admin/webhooks", get(webhooks))
}

async fn get_faults(State(s): State<Sandbox>) -> Json<Faults> {
    Json(s.faults())
}

/// Takes any subset of the knobs; the others keep their values.
async fn put_faults(State(s): State<Sandbox>, body: Bytes) -> Result<Json<Faults>, Error> {
    let patch: FaultsPatch = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("Invalid faults: {e}")))?;
    let faults = s.set_faults(patch);
    tracing::info!(?faults, "faults changed");
    Ok(Json(faults))
}

/// Every delivery so far, oldest first, in Stripe's list shape.
async fn webhooks(State(s): State<Sandbox>) -> Json<Value> {
    Json(json!({"object": "list", "data": s.deliveries()}))
}
