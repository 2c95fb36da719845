use super::{tasks::RowState, *};
use crate::sinks::analysis::{
    DEFAULT_BLOCKING_THRESHOLD,
    test_events::{info, init, poll, session},
};

const MS: u64 = 1_000_000;

fn options(retain: Duration) -> StateOptions {
    StateOptions {
        blocking_threshold: DEFAULT_BLOCKING_THRESHOLD,
        many_polls: 1000,
        retain,
        retain_max: 1000,
    }
}

fn state_of(events: &[HookEvent], retain: Duration) -> TopState {
    let mut state = TopState::new(info(), options(retain));
    for event in events {
        state.apply(event);
    }
    state
}

fn row(state: &TopState, id: u64) -> TaskRow {
    state
        .rows()
        .into_iter()
        .find(|row| row.key == (1, id))
        .unwrap_or_else(|| panic!("no row for task {id}"))
}

#[test]
fn rows_agree_with_the_analysis_of_the_same_events() {
    let events = session();
    let state = state_of(&events, Duration::from_secs(10));
    let analysis = Analysis::from_events(
        &info(),
        events.iter().cloned().map(Ok),
        DEFAULT_BLOCKING_THRESHOLD,
    )
    .unwrap();
    let rows = state.rows();
    assert_eq!(rows.len(), analysis.tasks.len());
    for row in &rows {
        let task = &analysis.tasks[&row.key];
        assert_eq!(
            (row.polls, row.busy_ns, row.trigger_id),
            (task.polls, task.busy_ns, task.trigger_id),
            "{row:?}"
        );
        let (_, extras) = state.task(&row.key).unwrap();
        assert_eq!(extras.map_or(0, |e| e.poll_times.total()), task.polls);
    }
    assert_eq!(state.events(), events.len() as u64);
    assert_eq!(state.polls(), rows.iter().map(|row| row.polls).sum::<u64>());
    assert_eq!(row(&state, 9).state, RowState::Idle);
    assert_eq!(row(&state, 2).state, RowState::Done);
    assert_eq!(row(&state, 2).name, "tokio.task");
    assert_eq!(state.alive(), 2, "3 and 9 never end");
}

#[test]
fn unmeasured_columns_are_none_not_zero() {
    let state = state_of(&session(), Duration::from_secs(10));
    let row = row(&state, 1);
    assert_eq!(
        (row.wakes, row.self_wakes, row.sched_p99_ns),
        (None, None, None)
    );
    assert_eq!(row.location, None);
}

#[test]
fn a_running_poll_shows_as_running() {
    let [before, _after] = poll(5, 40, 50, 11);
    let state = state_of(&[init(5, 0, 39, 10), before], Duration::from_secs(10));
    assert_eq!(row(&state, 5).state, RowState::Running);
}

#[test]
fn done_tasks_are_forgotten_after_retain_and_alive_ones_kept() {
    let mut state = state_of(&session(), Duration::from_millis(80));
    let seen = state.tasks_seen();
    assert_eq!(seen, 5);
    // The session's last event is at 31 ms: 2 and 4 ended at 24 and 22 ms.
    state.tick(info().start_ns + 110 * MS);
    let ids: Vec<u64> = state.rows().iter().map(|row| row.key.1).collect();
    assert_eq!(ids, [1, 3, 9], "1 ended at 31 ms, within 80 ms");
    state.tick(info().start_ns + 200 * MS);
    let ids: Vec<u64> = state.rows().iter().map(|row| row.key.1).collect();
    assert_eq!(ids, [3, 9]);
    assert_eq!(
        state.tasks_seen(),
        seen,
        "forgotten tasks still count as seen"
    );
}

#[test]
fn a_destroy_after_the_task_was_forgotten_does_not_bring_it_back() {
    let resolve = HookEvent {
        kind: HookKind::Resolve,
        ..init(5, 0, 1, 10)
    };
    let destroy = HookEvent {
        kind: HookKind::Destroy,
        ts_ns: info().start_ns + 500 * MS,
        ..resolve.clone()
    };
    let mut state = state_of(&[init(5, 0, 0, 10), resolve], Duration::from_millis(10));
    state.tick(info().start_ns + 100 * MS);
    assert!(state.rows().is_empty());
    state.apply(&destroy);
    assert!(state.rows().is_empty(), "{:?}", state.rows());
    assert_eq!(state.tasks_seen(), 1);
}

#[test]
fn trigger_chains_and_children_follow_the_triggers() {
    let state = state_of(&session(), Duration::from_secs(10));
    assert_eq!(state.trigger_chain(&(1, 4)), [(1, 2), (1, 1)]);
    assert_eq!(state.trigger_chain(&(1, 1)), []);
    assert_eq!(state.children(&(1, 1)), [(1, 2), (1, 3)]);
    assert_eq!(state.children(&(1, 3)), []);
}

#[test]
fn a_trigger_cycle_in_bad_input_ends_the_chain() {
    let state = state_of(
        &[init(5, 6, 0, 10), init(6, 5, 1, 10)],
        Duration::from_secs(1),
    );
    assert_eq!(state.trigger_chain(&(1, 5)), [(1, 6)]);
}

#[test]
fn rates_are_measured_between_ticks() {
    let mut state = state_of(&session(), Duration::from_secs(10));
    state.tick(info().start_ns + 1000 * MS);
    let (events_per_s, polls_per_s) = state.rates();
    assert_eq!(events_per_s, session().len() as f64);
    assert_eq!(polls_per_s, state.polls() as f64);
}

#[test]
fn aggregating_by_name_sums_every_task_of_the_name() {
    let state = state_of(&session(), Duration::from_secs(10));
    let rows = state.by_name();
    assert_eq!(rows.len(), 1);
    let all = state.rows();
    assert_eq!(rows[0].tasks, all.len() as u64);
    assert_eq!(rows[0].polls, all.iter().map(|row| row.polls).sum::<u64>());
    assert_eq!(rows[0].alive, state.alive());
}

#[test]
fn per_task_warnings_use_the_stats_rules() {
    let state = state_of(&session(), Duration::from_secs(10));
    let analysis = state.analysis();
    let blocking = state.warnings_for(&(1, 2), &analysis);
    assert_eq!(blocking, ["#2: 1 poll(s) over 10.00ms, longest 16.00ms"]);
    let never = state.warnings_for(&(1, 3), &analysis);
    assert!(
        never.iter().any(|w| w.contains("never polled")),
        "{never:?}"
    );
}

#[test]
fn at_most_retain_max_done_tasks_are_kept_the_oldest_going_first() {
    let mut state = TopState::new(
        info(),
        StateOptions {
            retain_max: 2,
            ..options(Duration::from_secs(60))
        },
    );
    for event in session() {
        state.apply(&event);
    }
    state.tick(info().start_ns + 40 * MS);
    // Done in order: 4 (22 ms), 2 (24 ms), 1 (31 ms); 3 and 9 are alive.
    let ids: Vec<u64> = state.rows().iter().map(|row| row.key.1).collect();
    assert_eq!(ids, [1, 2, 3, 9]);
    assert_eq!(state.tasks_seen(), 5);
}

#[test]
fn wakes_and_scheduling_delays_fill_their_columns_as_stats_counts_them() {
    use crate::sinks::analysis::test_events::wake_session;
    let events = wake_session();
    let state = state_of(&events, Duration::from_secs(10));
    let analysis = Analysis::from_events(
        &info(),
        events.iter().cloned().map(Ok),
        DEFAULT_BLOCKING_THRESHOLD,
    )
    .unwrap();
    for id in [5, 6] {
        let task = &analysis.tasks[&(1, id)];
        let row = row(&state, id);
        assert_eq!(
            (row.wakes, row.self_wakes),
            (Some(task.wakes), Some(task.self_wakes)),
            "task {id}"
        );
        assert!(row.sched_p99_ns.is_some(), "task {id} has waits");
    }
    // Task 6's last wake has no poll after it: it waits for a worker.
    assert_eq!(row(&state, 6).state, RowState::Scheduled);
    assert!(state.wakes_per_s().is_some());
}
