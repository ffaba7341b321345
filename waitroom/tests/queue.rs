//! Black-box tests of the waiting room against the real Redis at `REDIS_URL`
//! (default `redis://127.0.0.1:6379`). Each test works under its own random key prefix
//! and event, so they run in parallel, and deletes its keys when it ends.

mod support;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use fred::interfaces::{HashesInterface, SortedSetsInterface};
use support::{RunningAdmitter, Scope, eventually, prequeue_opening_in, settings};
use tokio::task::JoinSet;
use waitroom::Error;
use waitroom::admission::{Admitter, Step};
use waitroom::lottery::{LotteryMismatch, Seed};
use waitroom::queue::{Claim, Joined};
use waitroom::settings::{AdmissionSettings, Mode};

const LEASE: Duration = Duration::from_millis(1500);
const TICK: Duration = Duration::from_millis(100);

/// The members of the event's active set, i.e. the sequence numbers holding a slot.
async fn active_members(scope: &Scope) -> BTreeSet<u64> {
    let members: Vec<String> = scope
        .room
        .client()
        .zrange(
            scope.room.keys(&scope.event).active(),
            0,
            -1,
            None,
            false,
            None,
            false,
        )
        .await
        .expect("zrange active");
    members
        .iter()
        .map(|m| m.parse().expect("numeric member"))
        .collect()
}

/// Arrivals counted for the dashboard (the per-minute `arrivals:` counters), summed.
async fn arrivals_counted(scope: &Scope) -> u64 {
    let counters: HashMap<String, u64> = scope
        .room
        .client()
        .hgetall(scope.room.keys(&scope.event).counters())
        .await
        .expect("counters");
    counters
        .iter()
        .filter(|(k, _)| k.starts_with("arrivals:"))
        .map(|(_, v)| v)
        .sum()
}

/// Steps an admitter (within three seconds) until the first `head` places are admitted.
async fn admit_until_head(scope: &Scope, head: u64) {
    let admitter = Admitter::new(scope.room.clone(), LEASE);
    let what = format!("{head} admissions");
    eventually(&what, Duration::from_secs(3), || async {
        admitter.step(&scope.event).await.expect("step");
        (scope.snapshot().await.head == head).then_some(())
    })
    .await;
}

// 1. ---------------------------------------------------------------------------------

/// With replicas to wait for, a join and a claim are answered after `WAIT` (here a
/// single server without replicas: each waits out its timeout, is counted as short,
/// and still answers, never failing the visitor). Claims name the place's own
/// admission id, the same on every claim.
#[tokio::test]
async fn joins_and_claims_wait_for_replicas_and_still_answer_when_they_lag() {
    let scope = Scope::with(&settings(Mode::On, 6000, 10)).await;
    let room = scope
        .waiting_for_replicas(1, Duration::from_millis(30))
        .await;
    let before = waitroom::queue::short_waits();
    let started = Instant::now();
    let joined = room.join(&scope.event, "v").await.expect("join");
    assert_eq!(joined, waitroom::queue::Joined::Queued { seq: 1 });
    assert!(
        started.elapsed() >= Duration::from_millis(30),
        "WAIT was sent"
    );
    assert!(
        waitroom::queue::short_waits() > before,
        "the short wait was counted"
    );

    admit_until_head(&scope, 1).await;
    let first = room.claim(&scope.event, 1, 60).await.expect("claim");
    let again = scope.claim(1, 60).await;
    assert_eq!(first, again);
    assert!(
        matches!(first, Claim::Granted { ref jti, .. } if *jti == room.admission_id(&scope.event, 1))
    );
    scope.cleanup().await;
}

/// The queue following inventory switches only the mode, and only from the mode it
/// saw: an operator's rate set in between survives, and a pause is not undone.
#[tokio::test]
async fn a_mode_switch_changes_nothing_else_and_only_from_what_it_saw() {
    let scope = Scope::with(&settings(Mode::On, 120, 10)).await;
    // The operator changes the rate after the inventory check read the settings.
    scope.apply(&settings(Mode::On, 600, 25)).await;
    assert!(
        scope
            .room
            .switch_mode(&scope.event, Mode::On, Mode::SoldOut)
            .await
            .unwrap()
    );
    let now = scope.room.settings(&scope.event).await.unwrap().unwrap();
    assert_eq!(
        (now.mode, now.rate_per_minute, now.max_active),
        (Mode::SoldOut, 600, 25)
    );
    // An operator paused it; a stale "seats are back" check does not resume it.
    scope.apply(&settings(Mode::Paused, 600, 25)).await;
    assert!(
        !scope
            .room
            .switch_mode(&scope.event, Mode::SoldOut, Mode::On)
            .await
            .unwrap()
    );
    let now = scope.room.settings(&scope.event).await.unwrap().unwrap();
    assert_eq!(now.mode, Mode::Paused);
    scope.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_joins_get_distinct_consecutive_seqs() {
    let scope = Scope::with(&settings(Mode::On, 600, 100_000)).await;

    let mut tasks = JoinSet::new();
    for i in 0..1000 {
        let room = scope.room.clone();
        let event = scope.event.clone();
        tasks.spawn(async move { room.join(&event, &format!("visitor-{i}")).await });
    }
    let mut seqs = Vec::with_capacity(1000);
    while let Some(r) = tasks.join_next().await {
        match r.expect("join task panicked").expect("join") {
            Joined::Queued { seq } => seqs.push(seq),
            other => panic!("expected Queued, got {other:?}"),
        }
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=1000).collect::<Vec<u64>>());

    let snap = scope.snapshot().await;
    assert_eq!((snap.tail, snap.head, snap.active), (1000, 0, 0));

    // Arrivals are also counted for the dashboard, once per join.
    assert_eq!(arrivals_counted(&scope).await, 1000);

    scope.cleanup().await;
}

/// Slots freed are counted as they happen (the waiting page's estimate uses them): a
/// line whose admitted visitors finish at once frees slots as fast as it admits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_freed_per_minute_follow_the_checkouts_that_finish() {
    let scope = Scope::with(&settings(Mode::On, 1_200, 100_000)).await;
    scope.join_many(500).await;
    let admitter = RunningAdmitter::spawn(scope.room.clone(), LEASE, TICK);
    let start = Instant::now();
    let mut finished = 0u64;
    while start.elapsed() < Duration::from_secs(4) {
        let head = scope.snapshot().await.head;
        for seq in finished + 1..=head {
            scope.room.finish(&scope.event, seq).await.unwrap();
        }
        finished = head;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    admitter.stop().await;
    let snap = scope.snapshot().await;
    assert!(snap.observed_per_min > 0.0, "{snap:?}");
    let ratio = snap.finished_per_min / snap.observed_per_min;
    assert!(
        (0.8..=1.05).contains(&ratio),
        "finished {} vs admitted {} per minute",
        snap.finished_per_min,
        snap.observed_per_min
    );
    scope.cleanup().await;
}

// 2. ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_follows_arrival_order_at_the_configured_rate() {
    let scope = Scope::with(&settings(Mode::On, 600, 100_000)).await;
    let seqs = scope.join_many(300).await;
    assert_eq!(seqs, (1..=300).collect::<Vec<u64>>());

    let probes = [1u64, 2, 10, 50, 90, 99, 100, 101, 110, 150, 299, 300];
    let start = Instant::now();
    let admitter = RunningAdmitter::spawn(scope.room.clone(), LEASE, TICK);

    let mut interval = tokio::time::interval(Duration::from_millis(100));
    let mut last_head = 0u64;
    let mut samples = 0;
    let snap = loop {
        interval.tick().await;
        let snap = scope.snapshot().await;
        let elapsed = start.elapsed();
        samples += 1;

        assert!(
            snap.head >= last_head,
            "head went back from {last_head} to {}",
            snap.head
        );
        assert!(
            snap.head <= snap.tail,
            "head {} past tail {}",
            snap.head,
            snap.tail
        );
        // Never faster than the rate (10/s) allows, whatever the scheduling.
        let allowed = (elapsed.as_secs_f64() * 10.0).floor() as u64 + 1;
        assert!(
            snap.head <= allowed,
            "head {} after {elapsed:?}, at most {allowed} allowed at 600/min",
            snap.head
        );
        // Every admitted visitor holds a slot; nobody finished, nothing expired.
        assert_eq!(snap.active, snap.head, "active set vs head");
        // No inversion: if a later arrival is admitted, every earlier one is too.
        let admitted: Vec<bool> = probes
            .iter()
            .map(|&s| snap.status_of(s).state == "admitted")
            .collect();
        for (i, &later) in admitted.iter().enumerate() {
            if later {
                assert!(
                    admitted[..i].iter().all(|&a| a),
                    "seq {} admitted before an earlier probe: {admitted:?}",
                    probes[i]
                );
            }
        }
        for &s in &probes {
            assert_eq!(
                snap.status_of(s).state == "admitted",
                s <= snap.head,
                "seq {s}"
            );
        }
        last_head = snap.head;
        if elapsed >= Duration::from_secs(10) {
            break snap;
        }
    };
    admitter.stop().await;
    assert!(samples >= 50, "only {samples} samples in 10 s");

    assert!(
        (90..=110).contains(&snap.head),
        "head {} after 10 s at 600/min, expected 100 ± 10 %",
        snap.head
    );
    assert!(
        (480.0..=720.0).contains(&snap.observed_per_min),
        "observed rate {} per minute, expected 600 ± 20 %",
        snap.observed_per_min
    );
    assert_eq!(snap.finished_per_min, 0.0, "nobody finished a checkout");
    // Exactly the first `head` arrivals hold slots.
    let active = active_members(&scope).await;
    let final_head = scope.snapshot().await.head;
    assert_eq!(active, (1..=final_head).collect::<BTreeSet<u64>>());
    let waiting = scope.snapshot().await.status_of(300);
    assert_eq!(waiting.state, "waiting");
    assert_eq!(waiting.position, Some(300 - final_head));

    scope.cleanup().await;
}

// 3. ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_active_is_never_exceeded() {
    let scope = Scope::with(&settings(Mode::On, 60_000, 5)).await;
    scope.join_many(50).await;

    let admitter = RunningAdmitter::spawn(scope.room.clone(), LEASE, TICK);
    let check = |head_cap: u64| {
        let scope = &scope;
        async move {
            let s = scope.snapshot().await;
            assert!(s.active <= 5, "{} active with max_active 5", s.active);
            assert!(s.head <= head_cap, "head {} above {head_cap}", s.head);
            s
        }
    };

    // About a second of sampling: it fills up to 5 at once and stays there.
    let start = Instant::now();
    let mut reached = None;
    while start.elapsed() < Duration::from_millis(1200) {
        let s = check(5).await;
        if s.head == 5 && reached.is_none() {
            reached = Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reached = reached.expect("head never reached 5 within 1.2 s at 60000/min");
    let s = check(5).await;
    assert_eq!((s.head, s.active), (5, 5), "reached 5 after {reached:?}");

    // Two finish: exactly two more are admitted, no more.
    scope.room.finish(&scope.event, 1).await.expect("finish 1");
    scope.room.finish(&scope.event, 2).await.expect("finish 2");
    eventually("head to reach 7", Duration::from_secs(3), || async {
        (check(7).await.head == 7).then_some(())
    })
    .await;
    // Keep watching for a few more admitter ticks: it must stay at 7.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        check(7).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    admitter.stop().await;
    let s = scope.snapshot().await;
    assert_eq!((s.head, s.active), (7, 5));
    assert_eq!(
        active_members(&scope).await,
        (3..=7).collect::<BTreeSet<u64>>()
    );

    scope.cleanup().await;
}

// 4. ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_when_the_leader_dies() {
    let scope = Scope::with(&settings(Mode::On, 600, 100_000)).await;
    scope.join_many(100).await;
    let a = Admitter::new(scope.room.clone(), LEASE);
    let b = Admitter::new(scope.second_connection().await, LEASE);
    assert_ne!(a.owner(), b.owner());

    // Both step at once: exactly one holds the lease.
    let (ra, rb) = tokio::join!(a.step(&scope.event), b.step(&scope.event));
    let (ra, rb) = (ra.expect("step a"), rb.expect("step b"));
    let leaders = [&ra, &rb]
        .iter()
        .filter(|r| !matches!(r, Step::NotLeader))
        .count();
    assert_eq!(leaders, 1, "a: {ra:?}, b: {rb:?}");
    let (leader, standby) = if ra == Step::NotLeader {
        (&b, &a)
    } else {
        (&a, &b)
    };

    // While the leader lives, the standby never gets the lease, and people are admitted.
    let mut leader_last_step = Instant::now();
    for _ in 0..6 {
        tokio::time::sleep(TICK).await;
        leader_last_step = Instant::now();
        assert!(matches!(
            leader.step(&scope.event).await.expect("leader step"),
            Step::Admitted(_)
        ));
        assert_eq!(
            standby.step(&scope.event).await.expect("standby step"),
            Step::NotLeader
        );
    }
    let head_at_death = scope.snapshot().await.head;
    assert!(head_at_death > 0, "the leader admitted nobody");

    // The leader dies (stops stepping); the standby keeps trying every tick.
    let took_over = eventually(
        "the standby to take the lease",
        Duration::from_secs(3),
        || async {
            match standby.step(&scope.event).await.expect("standby step") {
                Step::NotLeader => None,
                other => Some((other, leader_last_step.elapsed())),
            }
        },
    )
    .await;
    let (step, after) = took_over;
    assert!(matches!(step, Step::Admitted(_)), "{step:?}");
    assert!(
        after < Duration::from_secs(2),
        "the standby took over {after:?} after the leader's last step"
    );
    assert!(
        after >= Duration::from_millis(1450),
        "the standby took over after {after:?}, before the 1.5 s lease ran out"
    );

    // The old leader, back from the dead, cannot admit.
    assert_eq!(
        leader.step(&scope.event).await.expect("old leader"),
        Step::NotLeader
    );

    // Admissions resume under the new leader.
    eventually("admissions to resume", Duration::from_secs(2), || async {
        standby.step(&scope.event).await.expect("new leader step");
        (scope.snapshot().await.head > head_at_death).then_some(())
    })
    .await;

    scope.cleanup().await;
}

// 5. ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_admits_nobody_until_resumed() {
    // The admitter first ticks with the queue on and nobody waiting, so that time spent
    // paused afterwards would show up as a burst if it were banked.
    let scope = Scope::with(&settings(Mode::On, 600, 100_000)).await;
    let admitter = RunningAdmitter::spawn(scope.room.clone(), LEASE, TICK);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) {
        assert_eq!(
            scope.snapshot().await.head,
            0,
            "admitted from an empty line"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    scope.apply(&settings(Mode::Paused, 600, 100_000)).await;
    scope.join_many(20).await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        let s = scope.snapshot().await;
        assert_eq!((s.head, s.active), (0, 0), "admitted while paused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = scope.snapshot().await;
    assert_eq!(s.head, 0);
    let st = s.status_of(1);
    assert_eq!(st.state, "paused");
    assert_eq!((st.position, st.eta_seconds), (Some(1), None));

    // Resume: admissions start, at the rate, without a burst for the paused time.
    let resumed = Instant::now();
    scope.apply(&settings(Mode::On, 600, 100_000)).await;
    let head = eventually(
        "head to grow after resuming",
        Duration::from_secs(3),
        || async {
            let h = scope.snapshot().await.head;
            (h > 0).then_some(h)
        },
    )
    .await;
    let allowed = (resumed.elapsed().as_secs_f64() * 10.0).floor() as u64 + 2;
    assert!(
        head <= allowed,
        "{head} admitted right after resuming (allowed {allowed}): the pause was banked"
    );
    admitter.stop().await;
    assert_eq!(scope.snapshot().await.status_of(1).state, "admitted");

    scope.cleanup().await;
}

// 6. ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_prequeue_is_drawn_by_a_verifiable_lottery() {
    // Whole milliseconds, as Redis stores them.
    let pq = prequeue_opening_in(1500);
    let opens_at = pq.opens_at.expect("an opening time");
    let scope = Scope::with(&pq).await;

    let committed = scope
        .lottery()
        .await
        .expect("a commitment exists before the first arrival");

    let mut tasks = JoinSet::new();
    for i in 0..200 {
        let room = scope.room.clone();
        let event = scope.event.clone();
        tasks.spawn(async move {
            let visitor = format!("visitor-{i}");
            let r = room.join(&event, &visitor).await;
            (visitor, r)
        });
    }
    let mut by_index: HashMap<u64, String> = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        let (visitor, joined) = r.expect("join task panicked");
        match joined.expect("join") {
            Joined::Prequeued { index } => {
                assert!(
                    by_index.insert(index, visitor).is_none(),
                    "index {index} twice"
                );
            }
            other => panic!("expected Prequeued, got {other:?}"),
        }
    }
    assert_eq!(
        by_index.keys().copied().collect::<BTreeSet<u64>>(),
        (0..200).collect::<BTreeSet<u64>>()
    );
    assert_eq!(
        scope.snapshot().await.tail,
        0,
        "pre-queue arrivals took seqs"
    );

    // Re-applying the pre-queue settings (an operator tweak) keeps the commitment.
    scope.apply(&pq).await;
    let before = scope.lottery().await.expect("record");
    assert_eq!(before.commitment, committed.commitment);
    assert_eq!(before.commitment.len(), 64);
    assert!(before.seed.is_none(), "seed revealed before the draw");
    assert!(before.seqs.is_empty());
    assert_eq!(before.entrants.len(), 200);
    for (i, visitor) in before.entrants.iter().enumerate() {
        assert_eq!(&by_index[&(i as u64)], visitor, "entrant {i}");
    }
    assert_eq!(before.verify(), Err(LotteryMismatch::NotRevealed));
    assert_eq!(
        scope.room.drawn_seq(&scope.event, 0).await.expect("drawn"),
        None
    );
    let st = scope.snapshot().await.prequeue_status(Utc::now());
    assert_eq!(st.state, "prequeue");
    assert!(st.eta_seconds.is_some_and(|e| e <= 2), "{st:?}");

    // The admitter draws at opening, not before.
    let admitter = Admitter::new(scope.room.clone(), LEASE);
    let opened = eventually("the draw", Duration::from_secs(5), || async {
        let step = admitter.step(&scope.event).await.expect("step");
        let now = Utc::now();
        match step {
            Step::Opened(n) => Some((n, now)),
            Step::Admitted(0) => {
                tokio::time::sleep(Duration::from_millis(80)).await;
                None
            }
            other => panic!("unexpected step before the draw: {other:?}"),
        }
    })
    .await;
    assert_eq!(opened.0, 200);
    assert!(
        opened.1 >= opens_at,
        "drawn at {} before opens_at {opens_at}",
        opened.1
    );

    let s = scope.settings().await.expect("some");
    assert_eq!(s.mode, Mode::On);

    let record = scope.lottery().await.expect("record");
    assert_eq!(record.commitment, committed.commitment);
    assert!(record.seed.is_some(), "seed not revealed after the draw");
    assert_eq!(record.base, 0);
    assert_eq!(record.entrants, before.entrants);
    assert_eq!(record.verify(), Ok(()));
    let mut sorted = record.seqs.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=200).collect::<Vec<u64>>());
    assert_ne!(
        record.seqs,
        (1..=200).collect::<Vec<u64>>(),
        "arrival order kept"
    );
    for index in 0..200u64 {
        assert_eq!(
            scope
                .room
                .drawn_seq(&scope.event, index)
                .await
                .expect("drawn seq"),
            Some(record.seqs[index as usize]),
            "index {index}"
        );
    }

    // The queue is open: the next arrival comes after every pre-queue entrant.
    assert_eq!(
        scope.room.join(&scope.event, "late").await.expect("join"),
        Joined::Queued { seq: 201 }
    );

    // Tampering is detected.
    let mut swapped = record.clone();
    swapped.seqs.swap(0, 1);
    assert!(
        matches!(swapped.verify(), Err(LotteryMismatch::Order { .. })),
        "{:?}",
        swapped.verify()
    );
    let mut reseeded = record.clone();
    reseeded.seed = Some(Seed::generate().to_hex());
    assert_eq!(reseeded.verify(), Err(LotteryMismatch::Commitment));
    let mut recommitted = record.clone();
    let other = Seed::generate();
    recommitted.seed = Some(other.to_hex());
    recommitted.commitment = other.commitment();
    assert!(
        recommitted.verify().is_err(),
        "another seed reproduced the same draw"
    );
    let mut duplicated = record.clone();
    duplicated.seqs[1] = duplicated.seqs[0];
    assert_eq!(duplicated.verify(), Err(LotteryMismatch::NotAPermutation));

    scope.cleanup().await;
}

// 7. ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claiming_an_admission_is_idempotent_and_needs_a_slot() {
    let scope = Scope::with(&settings(Mode::On, 60_000, 3)).await;
    scope.join_many(5).await;

    admit_until_head(&scope, 3).await;

    let now = Utc::now().timestamp();
    let first = scope.claim(1, 60).await;
    let Claim::Granted { jti, exp } = first.clone() else {
        panic!("expected Granted, got {first:?}");
    };
    assert_eq!(jti, scope.room.admission_id(&scope.event, 1));
    assert_ne!(jti, scope.room.admission_id(&scope.event, 2));
    assert!((now + 59..=now + 61).contains(&exp), "exp {exp}, now {now}");

    // A second poll gets the same token back, not a new one.
    let again = scope.claim(1, 60).await;
    assert_eq!(again, first);
    assert_eq!(
        scope.snapshot().await.claimed,
        1,
        "a repeated claim was counted"
    );

    // Not admitted (seq > head): no admission.
    assert_eq!(scope.claim(4, 60).await, Claim::Expired);
    assert_eq!(scope.claim(99, 60).await, Claim::Expired);

    // An admission that has run out is not handed out again.
    let zero = scope.claim(2, 0).await;
    assert!(
        matches!(zero, Claim::Granted { ref jti, .. } if *jti == scope.room.admission_id(&scope.event, 2)),
        "{zero:?}"
    );
    eventually(
        "the zero-TTL admission to lapse",
        Duration::from_secs(3),
        || async {
            let c = scope.claim(2, 60).await;
            (c == Claim::Expired).then_some(())
        },
    )
    .await;

    // A finished slot cannot be claimed afresh either.
    scope.room.finish(&scope.event, 3).await.expect("finish");
    assert_eq!(scope.claim(3, 60).await, Claim::Expired);
    assert_eq!(scope.snapshot().await.claimed, 2);

    scope.cleanup().await;
}

// 8. ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_closed_sold_out_and_off_events_queue_nobody() {
    let scope = Scope::new().await;
    assert!(
        matches!(
            scope.room.join(&scope.event, "v").await,
            Err(Error::UnknownEvent)
        ),
        "join on an event without settings"
    );
    assert!(matches!(
        scope.room.snapshot(&scope.event).await,
        Err(Error::UnknownEvent)
    ));
    assert!(scope.settings().await.is_none());

    scope.apply(&settings(Mode::On, 600, 100)).await;
    assert_eq!(scope.join_many(3).await, vec![1, 2, 3]);

    for (mode, state) in [
        (Mode::Closed, "closed"),
        (Mode::SoldOut, "sold_out"),
        (Mode::Off, "open"),
    ] {
        scope.apply(&settings(mode, 600, 100)).await;
        for i in 0..3 {
            assert_eq!(
                scope
                    .room
                    .join(&scope.event, &format!("late-{i}"))
                    .await
                    .expect("join"),
                Joined::NotQueued(mode),
                "{mode}"
            );
        }
        let s = scope.snapshot().await;
        assert_eq!(s.tail, 3, "{mode} moved the tail");
        assert_eq!(s.status_of(2).state, state);
    }

    // Back on: the line continues where it was.
    scope.apply(&settings(Mode::On, 600, 100)).await;
    assert_eq!(
        scope.room.join(&scope.event, "again").await.expect("join"),
        Joined::Queued { seq: 4 }
    );

    scope.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_settings_are_refused_and_change_nothing() {
    let good = settings(Mode::On, 600, 100);
    let scope = Scope::with(&good).await;
    let bad = [
        AdmissionSettings {
            admission_ttl_seconds: 29,
            ..good.clone()
        },
        AdmissionSettings {
            max_active: 0,
            ..good.clone()
        },
        AdmissionSettings {
            rate_per_minute: 1_000_001,
            ..good.clone()
        },
        AdmissionSettings {
            mode: Mode::Prequeue,
            opens_at: None,
            ..good.clone()
        },
    ];
    for s in &bad {
        assert!(
            matches!(
                scope.room.apply_settings(&scope.event, s).await,
                Err(Error::InvalidSettings(_))
            ),
            "{s:?} accepted"
        );
    }
    assert_eq!(scope.settings().await, Some(good));
    assert!(
        scope.lottery().await.is_none(),
        "a refused pre-queue committed a seed"
    );
    let registered: HashSet<String> = scope
        .room
        .events()
        .await
        .expect("events")
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(registered, HashSet::from([scope.event.to_string()]));

    scope.cleanup().await;
}

#[tokio::test]
async fn a_steady_stream_of_arrivals_cannot_postpone_the_draw() {
    let pq = prequeue_opening_in(300);
    let scope = Scope::with(&pq).await;
    for i in 0..500 {
        scope
            .room
            .join(&scope.event, &format!("early-{i}"))
            .await
            .unwrap();
    }
    // Arrivals keep coming, as they do at an opening, while the admitter tries to draw.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickle = {
        let (room, event, stop) = (scope.room.clone(), scope.event.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                room.join(&event, &format!("late-{i}")).await.unwrap();
                i += 1;
            }
        })
    };
    let admitter = Admitter::new(scope.room.clone(), Duration::from_millis(1500));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Step::Opened(n) = admitter.step(&scope.event).await.unwrap() {
            assert!(n >= 500, "{n}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "arrivals kept postponing the draw"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    trickle.await.unwrap();

    let record = scope.lottery().await.unwrap();
    record
        .verify()
        .expect("the draw verifies, late arrivals queued behind it");
    assert!(record.drawn >= 500);
    // A second pre-queue would reuse the revealed seed: refused, nothing changed.
    let again = scope
        .room
        .apply_settings(&scope.event, &prequeue_opening_in(60_000))
        .await;
    assert!(matches!(again, Err(Error::InvalidSettings(_))), "{again:?}");
    assert_eq!(scope.settings().await.unwrap().mode, Mode::On);
    scope.cleanup().await;
}

// ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_batch_of_joins_takes_consecutive_places_in_the_order_given() {
    let scope = Scope::with(&settings(Mode::On, 600, 100_000)).await;
    scope.join_many(1).await;
    let visitors: Vec<String> = (0..5).map(|i| format!("batch-{i}")).collect();
    let joined = scope
        .room
        .join_many(&scope.event, visitors.clone())
        .await
        .expect("batch join");
    assert_eq!(
        joined,
        (2..=6)
            .map(|seq| Joined::Queued { seq })
            .collect::<Vec<_>>()
    );
    assert_eq!(
        arrivals_counted(&scope).await,
        6,
        "one arrival counted per visitor"
    );

    // An empty or oversized batch is refused and takes no place.
    for n in [0, waitroom::queue::JOIN_BATCH_MAX + 1] {
        let many: Vec<String> = (0..n).map(|i| format!("x-{i}")).collect();
        let r = scope.room.join_many(&scope.event, many).await;
        assert!(matches!(r, Err(Error::Protocol(_))), "{n}: {r:?}");
    }
    assert_eq!(scope.snapshot().await.tail, 6);

    // Closed: every visitor of the batch is told so, nobody gets a place.
    scope.apply(&settings(Mode::Closed, 600, 100_000)).await;
    let joined = scope
        .room
        .join_many(&scope.event, visitors.clone())
        .await
        .unwrap();
    assert_eq!(joined, vec![Joined::NotQueued(Mode::Closed); 5]);
    assert_eq!(scope.snapshot().await.tail, 6);
    scope.cleanup().await;
}

#[tokio::test]
async fn a_batch_of_prequeue_arrivals_enters_the_draw_in_the_order_given() {
    let scope = Scope::with(&prequeue_opening_in(60_000)).await;
    scope.room.join(&scope.event, "first").await.unwrap();
    let visitors: Vec<String> = (0..4).map(|i| format!("batch-{i}")).collect();
    let joined = scope
        .room
        .join_many(&scope.event, visitors.clone())
        .await
        .unwrap();
    assert_eq!(
        joined,
        (1..=4)
            .map(|index| Joined::Prequeued { index })
            .collect::<Vec<_>>()
    );
    let record = scope.lottery().await.unwrap();
    let mut expected = vec!["first".to_owned()];
    expected.extend(visitors);
    assert_eq!(record.entrants, expected);
    assert_eq!(scope.snapshot().await.tail, 0);
    scope.cleanup().await;
}

/// A pre-queue of `n` entrants (joined in batches) whose opening time has just passed.
async fn prequeue_past_its_opening(n: usize) -> Scope {
    let scope = Scope::with(&AdmissionSettings {
        opens_at: Some(Utc::now() + chrono::Duration::seconds(60)),
        ..settings(Mode::Prequeue, 600, 100_000)
    })
    .await;
    for batch in 0..n.div_ceil(waitroom::queue::JOIN_BATCH_MAX) {
        let from = batch * waitroom::queue::JOIN_BATCH_MAX;
        let to = (from + waitroom::queue::JOIN_BATCH_MAX).min(n);
        let visitors: Vec<String> = (from..to).map(|i| format!("v{i}")).collect();
        scope.room.join_many(&scope.event, visitors).await.unwrap();
    }
    scope
        .apply(&AdmissionSettings {
            opens_at: Some(Utc::now() - chrono::Duration::seconds(1)),
            ..settings(Mode::Prequeue, 600, 100_000)
        })
        .await;
    scope
}

/// Steps `admitter` until it draws the pre-queue and opens the queue: the entrants.
async fn draw(scope: &Scope, admitter: &Admitter, within: Duration) -> u64 {
    eventually("the draw", within, || async {
        match admitter.step(&scope.event).await.expect("step") {
            Step::Opened(n) => Some(n),
            _ => None,
        }
    })
    .await
}

/// A draw outlasts the lease it started under (a million entrants take seconds; the
/// lease is 1.5 s): each chunk renews it, so the draw finishes instead of starting
/// over at every step. Here the lease is a millisecond, shorter than any draw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draw_longer_than_the_lease_still_opens_the_queue() {
    const N: usize = 30_000;
    let scope = prequeue_past_its_opening(N).await;
    let admitter = Admitter::new(scope.room.clone(), Duration::from_millis(1));
    let opened = draw(&scope, &admitter, Duration::from_secs(20)).await;
    assert_eq!(opened, N as u64);
    scope
        .lottery()
        .await
        .unwrap()
        .verify()
        .expect("the draw verifies");
    scope.cleanup().await;
}

/// A pre-queue larger than one chunk of the draw opens with every entrant's number
/// drawn exactly once (a permutation of the places after the base), the chunks
/// together equal to the one-step draw anyone can recompute from the seed, and a late
/// arrival numbered after the drawn ones without being written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_prequeue_is_drawn_in_chunks_into_one_permutation() {
    const N: usize = 25_000;
    let scope = prequeue_past_its_opening(N).await;
    let admitter = Admitter::new(scope.room.clone(), LEASE);
    let opened = draw(&scope, &admitter, Duration::from_secs(30)).await;
    assert_eq!(opened, N as u64);
    let late = scope.room.join(&scope.event, "late").await.unwrap();
    let record = scope
        .room
        .lottery_record(&scope.event)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.drawn, N as u64);
    let mut seqs = record.seqs[..N].to_vec();
    let seed = Seed::from_hex(record.seed.as_deref().unwrap()).unwrap();
    let order = waitroom::lottery::shuffle(&seed, N);
    for (position, &index) in order.iter().enumerate() {
        assert_eq!(record.seqs[index], record.base + position as u64 + 1);
    }
    seqs.sort_unstable();
    assert!(
        seqs.iter()
            .copied()
            .eq(record.base + 1..=record.base + N as u64)
    );
    let Joined::Queued { seq } = late else {
        panic!("after opening a newcomer queues: {late:?}");
    };
    assert_eq!(seq, record.base + N as u64 + 1);
    assert_eq!(
        scope.room.drawn_seq(&scope.event, 7).await.unwrap(),
        Some(record.seqs[7])
    );
    scope.cleanup().await;
}

/// An operator's change to an event that already has settings is made, and said to
/// be made, while the event registry's shard is away (on a cluster the registry is
/// another slot, failing over for a second or two); a new event is refused, since it
/// could not be registered and no admitter would step it. The registry's shard is
/// played by a Redis user that may not write the registry (issue 17: a pause failed
/// with "nothing was changed" while another shard was stopped, after changing it).
#[tokio::test]
async fn a_change_is_made_and_reported_when_only_the_registry_is_unreachable() {
    use fred::prelude::*;
    use fred::types::CustomCommand;
    let scope = Scope::with(&settings(Mode::On, 60, 100)).await;
    let prefix = scope.room.prefix().to_owned();
    let user = format!("noreg-{}", uuid::Uuid::new_v4().simple());
    let acl = |args: Vec<String>| {
        let client = scope.room.client().clone();
        async move {
            client
                .custom::<Value, _>(CustomCommand::new_static("ACL", None::<u16>, false), args)
                .await
                .expect("ACL")
        }
    };
    // Everything, but only reading the registry.
    acl(vec![
        "SETUSER".into(),
        user.clone(),
        "on".into(),
        ">pw-0123456789".into(),
        "+@all".into(),
        format!("~{prefix}:{{*"),
        format!("%R~{prefix}:events"),
    ])
    .await;
    let url =
        support::redis_url().replacen("redis://", &format!("redis://{user}:pw-0123456789@"), 1);
    let cut_off = waitroom::queue::Waitroom::connect(&waitroom::config::RedisConfig {
        url,
        prefix: prefix.clone(),
        ..waitroom::config::RedisConfig::default()
    })
    .await
    .unwrap();

    cut_off
        .apply_settings(&scope.event, &settings(Mode::Paused, 60, 100))
        .await
        .expect("the existing event's change is made");
    assert_eq!(scope.settings().await.unwrap().mode, Mode::Paused);
    let new = waitroom::EventSlug::parse("brand-new").unwrap();
    assert!(
        cut_off
            .apply_settings(&new, &settings(Mode::On, 60, 100))
            .await
            .is_err(),
        "an event that cannot be registered is refused"
    );

    acl(vec!["DELUSER".into(), user]).await;
    scope.room.purge(&new).await.unwrap();
    scope.cleanup().await;
}
