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
    let arrivals = std::sync::Arc::new(Arrivals::start(room.clone(), None));

    // More joiners than one batch holds, the two events interleaved.
    let mut tasks = JoinSet::new();
    for i in 0..1200 {
        let arrivals = arrivals.clone();
        let event = if i % 3 == 0 { b.clone() } else { a.clone() };
        tasks.spawn(async move {
            let j = arrivals.join(&event, format!("v{i}"), None).await.unwrap();
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
        let s = seq(arrivals.join(&a, format!("late{i}"), None).await.unwrap());
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
    let arrivals = std::sync::Arc::new(Arrivals::start(room.clone(), None));

    let mut tasks = JoinSet::new();
    for i in 0..100 {
        let arrivals = arrivals.clone();
        let (closed, unknown) = (closed.clone(), unknown.clone());
        tasks.spawn(async move {
            if i % 2 == 0 {
                Ok(arrivals.join(&closed, format!("v{i}"), None).await.unwrap())
            } else {
                Err(arrivals
                    .join(&unknown, format!("v{i}"), None)
                    .await
                    .unwrap_err())
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

/// The join limit is counted in the event's shard, so two gateways (two batchers on
/// one Redis) behind a round-robin balancer give one client the limit once, not
/// twice (issue 17); other clients and allow-listed ones are not touched, and the
/// places handed out stay consecutive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_charge_one_join_limit_per_client() {
    let room = room().await;
    let event = EventSlug::parse("limited-gig").unwrap();
    room.apply_settings(&event, &settings(Mode::On))
        .await
        .unwrap();
    let per_min = std::num::NonZeroU32::new(10);
    let gateways = [
        std::sync::Arc::new(Arrivals::start(room.clone(), per_min)),
        std::sync::Arc::new(Arrivals::start(room.clone(), per_min)),
    ];

    let mut tasks = JoinSet::new();
    for i in 0..100usize {
        let gateway = gateways[i % 2].clone();
        let event = event.clone();
        let client = match i % 5 {
            0..=2 => Some("198.51.100.7".to_owned()),
            3 => Some("203.0.113.9".to_owned()),
            _ => None,
        };
        tasks.spawn(async move {
            let who = client.clone().unwrap_or_default();
            (
                who,
                gateway.join(&event, format!("v{i}"), client).await.unwrap(),
            )
        });
    }
    let mut seated: BTreeMap<String, usize> = BTreeMap::new();
    let mut seqs = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            (who, Joined::Queued { seq }) => {
                *seated.entry(who).or_default() += 1;
                seqs.push(seq);
            }
            (_, Joined::Limited { retry_after_secs }) => {
                assert!((1..=60).contains(&retry_after_secs), "{retry_after_secs}");
            }
            (_, other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seated["198.51.100.7"], 10, "{seated:?}");
    assert_eq!(seated["203.0.113.9"], 10, "{seated:?}");
    assert_eq!(seated[""], 20, "{seated:?}");
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    assert_eq!(room.snapshot(&event).await.unwrap().tail, 40);
    room.purge(&event).await.unwrap();
}
