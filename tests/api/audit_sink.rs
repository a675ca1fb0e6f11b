//! The audit trail's writer stores a success's change events with its
//! record (see `store::audit_sink`): a lone write's in one command where the
//! server has `bulkWrite`, a batch's (or any write's elsewhere) in two, and
//! never an event whose record was refused.

use std::sync::{Arc, Mutex};

use mongodb::bson::{doc, DateTime, Document};
use mongodb::event::command::CommandEvent;
use mongodb::event::EventHandler;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use secret_manager::store::audit::AuditRecord;
use secret_manager::store::audit_sink::{AuditSink, BulkWrites};
use secret_manager::store::events::{EventDoc, NumberReserve};

use crate::helpers::{mongo_uri, stored_events};

/// A database on its own client, with the name of every command it starts.
async fn monitored(name: &str) -> (Database, Arc<Mutex<Vec<String>>>) {
    let started = Arc::new(Mutex::new(Vec::new()));
    let seen = started.clone();
    let mut options = ClientOptions::parse(mongo_uri()).await.expect("uri");
    options.command_event_handler = Some(EventHandler::callback(move |e: CommandEvent| {
        if let CommandEvent::Started(s) = e {
            seen.lock().expect("lock").push(s.command_name);
        }
    }));
    let client = Client::with_options(options).expect("client");
    (client.database(name), started)
}

fn record(id: &str) -> AuditRecord {
    AuditRecord {
        id: Some(id.to_string()),
        ts: DateTime::now(),
        action: "create".into(),
        outcome: "success".into(),
        channel: "http".into(),
        actor: Some("tester".into()),
        secret_id: None,
        project: Some("ops".into()),
        path: Some(id.to_string()),
        version: Some(1),
        target: None,
        client_ip: None,
        user_agent: None,
        request_id: None,
        error_code: None,
        count: None,
        alert: None,
    }
}

fn event(path: &str) -> EventDoc {
    EventDoc {
        seq: 0,
        kind: "secret_created".into(),
        project: "ops".into(),
        path: path.to_string(),
        version: Some(1),
        ts: DateTime::now(),
        actor: "tester".into(),
    }
}

/// Waits (up to 10 s) until an event is stored at `seq`.
async fn wait_for_event(db: &Database, seq: i64) {
    let events = db.collection::<Document>("events");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while events
        .find_one(doc! { "_id": seq })
        .await
        .expect("find")
        .is_none()
    {
        assert!(std::time::Instant::now() < deadline, "nothing at {seq}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn records_with_path(db: &Database, path: &str) -> u64 {
    db.collection::<Document>("audit_logs")
        .count_documents(doc! { "path": path })
        .await
        .expect("count")
}

#[tokio::test]
async fn a_record_and_its_events_share_one_command_and_a_refused_record_stores_no_event() {
    for (mode, commands) in [
        // The events' numbers come from the counter (`findAndModify`, `$inc`).
        (BulkWrites::Auto, vec!["findAndModify", "bulkWrite"]),
        (BulkWrites::Never, vec!["insert", "findAndModify", "insert"]),
    ] {
        let name = format!("audit-sink-{}", uuid::Uuid::new_v4().simple());
        let (db, started) = monitored(&name).await;
        let sink = AuditSink::spawn_with(&db, mode);
        // The first batch also asks the server what it has and where the sequence is.
        let first = sink
            .write_with_events(record("first"), vec![event("first")])
            .await;
        assert!(
            first.record.is_ok() && first.events.is_ok(),
            "{mode:?}: {first:?}"
        );

        started.lock().expect("lock").clear();
        let second = sink
            .write_with_events(record("second"), vec![event("second"), event("second")])
            .await;
        assert!(
            second.record.is_ok() && second.events.is_ok(),
            "{mode:?}: {second:?}"
        );
        assert_eq!(*started.lock().expect("lock"), commands, "{mode:?}");

        // A record the trail refuses (its id is taken), between two it keeps, in one batch.
        started.lock().expect("lock").clear();
        // (Three records and one event: at most 4 documents, one command.)
        let (kept, refused, kept2) = tokio::join!(
            sink.write_with_events(record("kept"), vec![]),
            sink.write_with_events(record("first"), vec![event("refused")]),
            sink.write_with_events(record("kept2"), vec![]),
        );
        assert!(
            refused.record.is_err(),
            "{mode:?}: a duplicate record id is refused"
        );
        assert!(
            refused.events.is_err(),
            "{mode:?}: its event is not stored either"
        );
        for w in [&kept, &kept2] {
            assert!(w.record.is_ok() && w.events.is_ok(), "{mode:?}: {w:?}");
        }
        let one_batch: &[&str] = match mode {
            // The event numbered; stopped at the refused record; the rest
            // (the third record, the refused one's placeholder) again.
            BulkWrites::Auto => &["findAndModify", "bulkWrite", "bulkWrite"],
            // Records unordered; the refused one's event never numbered.
            BulkWrites::Never => &["insert"],
        };
        assert_eq!(*started.lock().expect("lock"), one_batch, "{mode:?}");

        // A number reserved while the operation ran, whose record is refused:
        // a placeholder holds it. One reserved and dropped (a cancelled
        // request): filled too.
        let reserve = NumberReserve::spawn(&db);
        let held = reserve.reserve().await.expect("reserve").claim();
        let mut late = event("refused-reserved");
        late.seq = held;
        let refused = sink.write_with_events(record("first"), vec![late]).await;
        assert!(
            refused.record.is_err() && refused.events.is_err(),
            "{mode:?}"
        );
        let dropped = reserve.reserve().await.expect("reserve");
        let dropped_seq = dropped.seq();
        drop(dropped);
        wait_for_event(&db, dropped_seq).await;

        // A bigger batch: records in one insert, then their events, numbered, in another.
        started.lock().expect("lock").clear();
        let many = futures_util::future::join_all((0..6).map(|i| {
            let path = format!("many-{i}");
            sink.write_with_events(record(&path), vec![event(&path)])
        }))
        .await;
        assert!(many.iter().all(|w| w.record.is_ok() && w.events.is_ok()));
        assert_eq!(
            *started.lock().expect("lock"),
            ["insert", "findAndModify", "insert"],
            "{mode:?}"
        );

        // A record alone, and events alone (an operation audited apart).
        assert!(sink.write(record("alone")).await.is_ok());
        assert!(sink.write_events(vec![event("apart")]).await.is_ok());

        let mut paths = vec!["first", "second", "second"];
        if mode == BulkWrites::Auto {
            // Numbered before the command: the refused record's number holds a
            // placeholder, so no reader waits for it.
            paths.push("lost");
        }
        // The reserved number of the refused record, and the dropped one.
        paths.extend(["lost", "lost"]);
        paths.extend([
            "many-0", "many-1", "many-2", "many-3", "many-4", "many-5", "apart",
        ]);
        assert_eq!(
            stored_events(&db).await,
            paths
                .iter()
                .zip(1..)
                .map(|(p, n)| (n, p.to_string()))
                .collect::<Vec<_>>(),
            "{mode:?}: numbered in order, without a gap, nothing of the refused one",
        );
        for path in ["first", "second", "kept", "kept2", "alone"] {
            assert_eq!(records_with_path(&db, path).await, 1, "{mode:?}: {path}");
        }
        db.drop().await.expect("drop");
    }
}
