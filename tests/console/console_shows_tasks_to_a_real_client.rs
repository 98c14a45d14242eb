//! A real tokio-console protocol client (console-api's `InstrumentClient` over tonic)
//! attached to the agent's console address sees the app's tasks as tokio-console shows them:
//! spawn location file:line, poll counts that rise between updates, busy time, completed
//! tasks reported dropped, and a task that blocked its worker for 300 ms with at least that
//! much busy time; a task blocking right now shows as running (its poll started, not ended)
//! while it blocks. Also: the state stream follows pause and resume, and a task's detail
//! stream names the task. Hooked mode only (attach mode has no task hooks).
#![cfg(all(feature = "console", tokio_unstable))]

use crate::support;

use std::time::Duration;

use console_api::instrument::{
    PauseRequest, ResumeRequest, StateRequest, TaskDetailsRequest, Temporality,
};
use support::console::{self, View};

const BLOCK: Duration = Duration::from_millis(300);

#[test]
fn console_shows_tasks_to_a_real_client() {
    let _serial = support::serial();
    let (rt, agent) = support::runtime_with(
        pollwatch::Agent::builder()
            .stall_threshold(Duration::from_millis(100))
            .console_addr("127.0.0.1:0".parse().unwrap()),
    );
    let addr = agent.console_addr().expect("console serves");
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");

    // Long-lived: wakes every 5 ms for the whole test.
    let ticker_line = line!() + 1;
    let ticker = rt.spawn(async {
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    // Finished: three tasks that end at once.
    let short_line = line!() + 2;
    for _ in 0..3 {
        let done = rt.spawn(async { tokio::task::yield_now().await });
        rt.block_on(done).unwrap();
    }
    // Blocks its worker for longer than the stall threshold, in one poll.
    let blocker_line = line!() + 1;
    let blocker = rt.spawn(async { std::thread::sleep(BLOCK) });
    rt.block_on(blocker).unwrap();

    let handle = rt.handle().clone();
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    client_rt.block_on(async {
        let mut client = console::connect(addr, Duration::from_secs(10)).await;
        let mut stream = console::updates(&mut client).await;
        let mut view = View::default();
        let file = file!();
        let seen_all = console::watch_until(&mut stream, &mut view, Duration::from_secs(10), |v| {
            !v.spawned_at(file, ticker_line).is_empty()
                && v.spawned_at(file, short_line).len() == 3
                && v.spawned_at(file, blocker_line).len() == 1
        })
        .await;
        assert!(seen_all, "the test's tasks at their spawn lines: {:#?}", view.tasks);

        // Metadata carries the same location; the task carries its tokio id as a field.
        let ticker_id = view.spawned_at(file, ticker_line)[0];
        let task = &view.tasks[&ticker_id];
        let meta = &view.metas[&task.metadata.unwrap().id];
        assert_eq!(meta.location.as_ref().unwrap().line, Some(ticker_line));
        assert!(
            task.fields.iter().any(|f| matches!(
                (&f.name, &f.value),
                (Some(console_api::field::Name::StrName(n)), Some(console_api::field::Value::U64Val(_))) if n == "task.id"
            )),
            "{task:#?}"
        );

        // Poll counts rise between updates; busy time accumulates.
        let first = view.polls(ticker_id);
        let rose = console::watch_until(&mut stream, &mut view, Duration::from_secs(10), |v| {
            v.polls(ticker_id) >= first + 10
        })
        .await;
        assert!(rose, "polls {} then {}", first, view.polls(ticker_id));
        assert!(view.busy(ticker_id) > Duration::ZERO);
        assert!(!view.completed(ticker_id));

        for id in view.spawned_at(file, short_line) {
            assert!(view.completed(id), "finished task {id} is dropped: {:#?}", view.stats[&id]);
            assert!(view.polls(id) >= 2, "yield_now takes two polls");
            let dropped: std::time::SystemTime =
                view.stats[&id].dropped_at.unwrap().try_into().unwrap();
            assert!(dropped >= view.created_at(id));
        }

        let blocker_id = view.spawned_at(file, blocker_line)[0];
        assert!(view.completed(blocker_id));
        assert_eq!(view.polls(blocker_id), 1);
        assert!(
            view.busy(blocker_id) >= BLOCK,
            "busy {:?} covers the {BLOCK:?} block",
            view.busy(blocker_id)
        );
        assert_eq!(view.dropped_events, 0, "no event lost at this load");

        // A poll blocking its worker right now shows as running while it blocks.
        let blocking_now = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = blocking_now.clone();
        let hang_line = line!() + 1;
        let hang = handle.spawn(async move {
            std::thread::sleep(Duration::from_millis(1500));
            flag.store(false, std::sync::atomic::Ordering::SeqCst);
        });
        let running = console::watch_until(&mut stream, &mut view, Duration::from_secs(10), |v| {
            v.spawned_at(file, hang_line).first().is_some_and(|id| {
                let p = v.stats[id].poll_stats.as_ref().unwrap();
                p.last_poll_started.is_some() && p.last_poll_ended.is_none()
            })
        })
        .await;
        assert!(running, "the blocking task is seen running");
        assert!(
            blocking_now.load(std::sync::atomic::Ordering::SeqCst),
            "seen while it still blocked"
        );
        hang.await.unwrap();

        // The state stream starts live, follows pause and resume.
        let mut states = client.watch_state(StateRequest {}).await.unwrap().into_inner();
        let next_state = |s: Option<console_api::instrument::State>| {
            Temporality::try_from(s.expect("a state").temporality).unwrap()
        };
        assert_eq!(next_state(states.message().await.unwrap()), Temporality::Live);
        client.pause(PauseRequest {}).await.unwrap();
        assert_eq!(next_state(states.message().await.unwrap()), Temporality::Paused);
        client.resume(ResumeRequest {}).await.unwrap();
        assert_eq!(next_state(states.message().await.unwrap()), Temporality::Live);

        // A live task's detail stream names it; an unknown task is NOT_FOUND.
        let mut details = client
            .watch_task_details(TaskDetailsRequest {
                id: Some(console_api::Id { id: ticker_id }),
            })
            .await
            .unwrap()
            .into_inner();
        let d = tokio::time::timeout(Duration::from_secs(10), details.message())
            .await
            .expect("details within the deadline")
            .unwrap()
            .expect("one details message");
        assert_eq!(d.task_id.unwrap().id, ticker_id);
        let missing = client
            .watch_task_details(TaskDetailsRequest {
                id: Some(console_api::Id { id: u64::MAX >> 8 }),
            })
            .await;
        let status = match missing {
            Ok(r) => r.into_inner().message().await.expect_err("no such task"),
            Err(s) => s,
        };
        assert_eq!(status.code(), tonic::Code::NotFound, "{status}");

        // A second console gets everything in its first update (a snapshot).
        let mut late = console::updates(&mut client).await;
        let mut late_view = View::default();
        let got = console::watch_until(&mut late, &mut late_view, Duration::from_secs(10), |v| {
            v.updates >= 1
        })
        .await;
        assert!(got);
        assert!(late_view.tasks.contains_key(&ticker_id));
        assert!(late_view.tasks.contains_key(&blocker_id));
    });
    ticker.abort();
    drop(agent);
}
