//! Waiting, in tests, for what happens on its own schedule (a worker's pass, a
//! refresher's round, a webhook in flight): polling with a deadline rather than sleeping
//! for a guess, so a fast machine does not wait and a slow one does not fail.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// Runs `attempt` every `every` until it gives a value; once `within` has passed, fails
/// with what the last attempt said it was still waiting for.
pub async fn eventually<T, E: Display>(
    within: Duration,
    every: Duration,
    attempt: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    eventually_by(Instant::now() + within, every, attempt).await
}

/// [`eventually`] with a deadline fixed before the test set off what it waits for.
pub async fn eventually_by<T, E: Display>(
    deadline: Instant,
    every: Duration,
    mut attempt: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    loop {
        match attempt().await {
            Ok(v) => return v,
            Err(still) => assert!(Instant::now() < deadline, "{still}"),
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_first_value_an_attempt_gives() {
        let mut tries = 0;
        let got = eventually(
            Duration::from_secs(5),
            Duration::from_millis(1),
            async || {
                tries += 1;
                if tries < 3 { Err("not yet") } else { Ok(tries) }
            },
        )
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "still waiting")]
    async fn fails_with_what_it_waited_for_past_the_deadline() {
        eventually(
            Duration::from_millis(20),
            Duration::from_millis(5),
            async || Err::<(), _>("still waiting"),
        )
        .await;
    }
}
