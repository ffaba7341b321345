//! Redis key names. Every key of one event carries the hash tag `{slug}` so that the
//! Lua scripts touching several of them stay legal on a Redis Cluster.

use crate::EventSlug;

/// The keys of one event under a deployment-wide prefix (tests use a random prefix so
/// they can run in parallel against one Redis and clean up after themselves).
#[derive(Clone, Debug)]
pub struct EventKeys {
    base: String,
}

impl EventKeys {
    pub fn new(prefix: &str, event: &EventSlug) -> Self {
        Self {
            base: format!("{prefix}:{{{event}}}"),
        }
    }

    /// Hash: `tail` (arrivals), `head` (admission pointer), `claimed`, `obs_per_min`,
    /// admitter bookkeeping (`last_tick`, `carry`, `last_sample`).
    pub fn queue(&self) -> String {
        format!("{}:q", self.base)
    }
    /// Hash: the live admission settings.
    pub fn settings(&self) -> String {
        format!("{}:settings", self.base)
    }
    /// Sorted set: admitted sequence numbers still holding a slot, scored by deadline (ms).
    pub fn active(&self) -> String {
        format!("{}:active", self.base)
    }
    /// Hash: sequence number -> `jti:exp` of the admission token issued for it.
    pub fn claims(&self) -> String {
        format!("{}:claims", self.base)
    }
    /// List: visitor ids that arrived during the pre-queue, in arrival order.
    pub fn prequeue(&self) -> String {
        format!("{}:pq", self.base)
    }
    /// Hash: pre-queue index -> sequence number drawn by the lottery.
    pub fn lottery_seq(&self) -> String {
        format!("{}:pqseq", self.base)
    }
    /// Hash: `commit` (sha256 of the seed), `seed`, `revealed`, `base`, `drawn_at`.
    pub fn lottery(&self) -> String {
        format!("{}:lottery", self.base)
    }
    /// String: the admitter lease (value = owner id).
    pub fn lease(&self) -> String {
        format!("{}:lease", self.base)
    }
    /// Sorted set of `ts:active:head` samples for the observed admission and
    /// completion rates.
    pub fn samples(&self) -> String {
        format!("{}:samples", self.base)
    }
    /// Hash of per-minute counters for dashboards: `arrivals:{minute}`, `admitted:{minute}`.
    pub fn counters(&self) -> String {
        format!("{}:counters", self.base)
    }

    /// Hashes, one per parity of the minute: client bucket -> places taken in that
    /// minute, plus `minute` (which minute the hash counts). The per-client join limit
    /// reads this minute's and the last one's, so every gateway counts the same joins.
    pub fn joiners(&self, parity: u8) -> String {
        format!("{}:joiners:{}", self.base, parity % 2)
    }

    pub fn all(&self) -> Vec<String> {
        vec![
            self.joiners(0),
            self.joiners(1),
            self.queue(),
            self.settings(),
            self.active(),
            self.claims(),
            self.prequeue(),
            self.lottery_seq(),
            self.lottery(),
            self.lease(),
            self.samples(),
            self.counters(),
        ]
    }
}

/// The set of event slugs the admitter serves.
pub fn registry(prefix: &str) -> String {
    format!("{prefix}:events")
}
