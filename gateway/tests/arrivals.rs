//! The join batcher against the real Redis at 127.0.0.1:6379: however joins are
//! gathered into calls, every joiner gets its own place, places are consecutive, and
//! nobody who joined after another finished joining is placed ahead of them. Each test
//! uses its own key prefix and removes its keys.

use std::collections::BTreeMap;

use gateway::EdgeError;
use gateway::arrivals::Arrivals;
use tokio::task::JoinSet;
use waitroom::EventSlug;
use waitroom::queue::Joined;
use waitroom::settings::{AdmissionSettings, Mode};
use waitroom::testing::fresh_room as room;

fn settings(mode: Mode) -> AdmissionSettings {
    AdmissionSettings {
        mode,
        rate_per_minute: 0,
        max_active: 1000,
        admission_ttl_seconds: 300,
        opens_at: None,
    }
}

fn seq(j: Joined) -> u64 {
    match j {
        Joined::Queued { seq } => seq,
        other => panic!("expected a place in line, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crowd_of_joins_on_two_events_gets_distinct_consecutive_places() {
    let room = room().await;
    let a = EventSlug::parse("gig-a").unwrap();
    let b = EventSlug::parse("gig-b").unwrap();
    room.apply_settings(&a, &settings(Mode::On)).await.unwrap();
    room.apply_settings(&b, &settings(Mode::On)).await.unwrap();
    let arrivals = std::sync::Arc::new(Arrivals::start(room.clone()));

    // More joiners than one batch holds, the two events interleaved.
    let mut tasks = JoinSet::new();
    for i in 0..1200 {
        let arrivals = arrivals.clone();
        let event = if i % 3 == 0 { b.clone() } else { a.clone() };
        tasks.spawn(async move {
            let j = arrivals.join(&event, format!("v{i}")).await.unwrap();
            (event, seq(j))
        });
    }
    let mut places: BTreeMap<EventSlug, Vec<u64>> = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        let (event, seq) = r.unwrap();
        places.entry(event).or_default().push(seq);
    }
    for (event, n) in [(&a, 800u64), (&b, 400)] {
        let mut seqs = places.remove(event).unwrap();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "places of {event}");
        assert_eq!(room.snapshot(event).await.unwrap().tail, n);
    }
    // The point of the batcher: 1,200 joiners arriving together took far fewer calls.
    let (calls, joined) = (
        arrivals.batch_sizes.get_sample_count(),
        arrivals.batch_sizes.get_sample_sum(),
    );
    assert_eq!(joined, 1200.0);
    assert!(calls < 600, "{calls} Redis calls for 1,200 joins");

    // One after another, each joiner is placed behind the one before.
    let mut last = 800;
    for i in 0..20 {
        let s = seq(arrivals.join(&a, format!("late{i}")).await.unwrap());
        assert_eq!(s, last + 1);
        last = s;
    }
    room.purge(&a).await.unwrap();
    room.purge(&b).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_joiner_in_a_batch_gets_the_queues_answer() {
    let room = room().await;
    let closed = EventSlug::parse("closed-gig").unwrap();
    room.apply_settings(&closed, &settings(Mode::Closed))
        .await
        .unwrap();
    let unknown = EventSlug::parse("no-such-gig").unwrap();
    let arrivals = std::sync::Arc::new(Arrivals::start(room.clone()));

    let mut tasks = JoinSet::new();
    for i in 0..100 {
        let arrivals = arrivals.clone();
        let (closed, unknown) = (closed.clone(), unknown.clone());
        tasks.spawn(async move {
            if i % 2 == 0 {
                Ok(arrivals.join(&closed, format!("v{i}")).await.unwrap())
            } else {
                Err(arrivals.join(&unknown, format!("v{i}")).await.unwrap_err())
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(j) => assert_eq!(j, Joined::NotQueued(Mode::Closed)),
            Err(e) => assert!(matches!(e, EdgeError::UnknownEvent), "{e:?}"),
        }
    }
    assert_eq!(room.snapshot(&closed).await.unwrap().tail, 0);
    room.purge(&closed).await.unwrap();
}
