//! `loadtest lottery` recomputes a real draw made by the admitter in the real Redis,
//! and refuses a doctored one.

use std::process::Command;
use std::time::{Duration, Instant};

use waitroom::EventSlug;
use waitroom::admission::{Admitter, Step};
use waitroom::settings::{AdmissionSettings, Mode};

fn verify(path: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["lottery", "--event", "draw", "--file"])
        .arg(path)
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_published_draw_is_reproduced_from_the_revealed_seed() {
    let room = waitroom::testing::fresh_room().await;
    let event = EventSlug::parse("draw").unwrap();
    room.apply_settings(
        &event,
        &AdmissionSettings {
            mode: Mode::Prequeue,
            opens_at: Some(chrono::Utc::now() + chrono::Duration::milliseconds(300)),
            ..AdmissionSettings::default()
        },
    )
    .await
    .unwrap();
    for i in 0..50 {
        room.join(&event, &format!("visitor-{i}")).await.unwrap();
    }
    let admitter = Admitter::new(room.clone(), Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !matches!(admitter.step(&event).await.unwrap(), Step::Opened(50)) {
        assert!(Instant::now() < deadline, "the pre-queue was never drawn");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let record = room.lottery_record(&event).await.unwrap().unwrap();
    let dir = std::env::temp_dir().join(format!("lottery-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("record.json");
    std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
    let ok = verify(&path);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let mut doctored = record.clone();
    doctored.seqs.swap(0, 1);
    std::fs::write(&path, serde_json::to_vec(&doctored).unwrap()).unwrap();
    let refused = verify(&path);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("entrant"));

    std::fs::remove_dir_all(&dir).unwrap();
    room.purge(&event).await.unwrap();
}
