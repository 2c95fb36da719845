//! Snapshot tests of rendered frames (ratatui's `TestBackend`): the layout at
//! 80×24 and wider, and what sorting, filtering and the details screen do to it.
//! Expected rows come from the state's own data, not from lists typed here,
//! except for the two whole-frame snapshots, which pin the layout.

use std::time::Duration;

use ratatui::{Terminal, backend::TestBackend, buffer::Buffer, style::Color};

use super::*;
use crate::{
    model::event::{HookEvent, HookKind, ResourceType},
    sinks::analysis::{
        DEFAULT_BLOCKING_THRESHOLD,
        test_events::{info, init, poll, session},
    },
    sinks::output::LiveStatus,
    top::state::StateOptions,
};

/// [`session`] plus a blocking task #20 that ran one 40 ms poll.
fn state() -> TopState {
    let mut state = TopState::new(
        info(),
        StateOptions {
            blocking_threshold: DEFAULT_BLOCKING_THRESHOLD,
            many_polls: 1000,
            retain: Duration::from_secs(10),
            retain_max: 1000,
        },
    );
    let blocking = HookEvent {
        kind: HookKind::Init {
            resource_type: ResourceType::TOKIO_BLOCKING,
            trigger_id: Some(1),
            existing: false,
            name: None,
            location: None,
        },
        ..init(20, 1, 2, 11)
    };
    let mut events = session();
    events.push(blocking);
    events.extend(poll(20, 32, 72, 13));
    for event in &events {
        state.apply(event);
    }
    state.tick(info().start_ns + 1_000_000_000);
    state
}

/// The frame as text, one line a row, trailing blanks cut.
fn text(buffer: &Buffer) -> String {
    let width = usize::from(buffer.area.width);
    buffer
        .content
        .chunks(width)
        .map(|row| {
            let line: String = row.iter().map(|cell| cell.symbol()).collect();
            line.trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn render(view: &mut View, state: &TopState, width: u16, height: u16, color: bool) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| view.draw(frame, state, None, Styles::new(color)))
        .unwrap();
    terminal.backend().buffer().clone()
}

fn frame(view: &mut View, state: &TopState, width: u16, height: u16) -> String {
    text(&render(view, state, width, height, false))
}

/// Task ids of the table's rows, top to bottom.
fn table_ids(frame: &str) -> Vec<u64> {
    frame
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("ID"))
        .skip(1)
        .map_while(|line| line.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The task table at the smallest supported size: the columns that do not fit
/// (sched p99, wakes, self-wakes, location) are dropped, the keys wrap onto two
/// lines.
const TASKS_80X24: &str = r#"tracer top  app (pid 1)  tokio  uptime 1.0s
tasks 3 alive / 6 total  polls/s 7  wakes/s -  events/s 26  drops 0
 6 tasks ───────────────────────────────────────────────────────────────────────
     ID NAME                     STATE        POLLS     BUSY↓      IDLE  TRIGGER
     20 tokio.blocking           idle             1   40.00ms  958.00ms        1
      2 tokio.task               done             2   17.00ms    5.00ms        1
      1 tokio.task               done             2    3.00ms   28.00ms        -
      4 tokio.task               done             1    1.00ms   16.00ms        2
      9 tokio.task               idle             1    1.00ms  999.00ms        ?
      3 tokio.task               idle             0       0ns  998.00ms        1












↑↓ select  Enter details  <> sort column  i invert  / filter  t tree  w warnings
n by name  p pause  q quit"#;

/// Wider: every column.
const TASKS_140X16: &str = r#"tracer top  app (pid 1)  tokio  uptime 1.0s
tasks 3 alive / 6 total  polls/s 7  wakes/s -  events/s 26  drops 0
 6 tasks ───────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────
     ID NAME                                 STATE        POLLS     BUSY↓      IDLE SCHED p99   WAKES   SELF LOCATION                TRIGGER
     20 tokio.blocking                       idle             1   40.00ms  958.00ms         -       -      - -                             1
      2 tokio.task                           done             2   17.00ms    5.00ms         -       -      - -                             1
      1 tokio.task                           done             2    3.00ms   28.00ms         -       -      - -                             -
      4 tokio.task                           done             1    1.00ms   16.00ms         -       -      - -                             2
      9 tokio.task                           idle             1    1.00ms  999.00ms         -       -      - -                             ?
      3 tokio.task                           idle             0       0ns  998.00ms         -       -      - -                             1





↑↓ select  Enter details  <> sort column  i invert  / filter  t tree  w warnings  n by name  p pause  q quit"#;

#[test]
fn the_task_table_at_80x24_keeps_the_main_columns_and_every_key() {
    assert_eq!(frame(&mut View::default(), &state(), 80, 24), TASKS_80X24);
}

#[test]
fn a_wider_terminal_shows_every_column() {
    let shown = frame(&mut View::default(), &state(), 140, 16);
    assert_eq!(shown, TASKS_140X16);
    for column in Column::ALL {
        assert!(shown.contains(column.title()), "{} missing", column.title());
    }
}

fn press(view: &mut View, state: &TopState, actions: &[Action]) {
    for action in actions {
        view.handle(*action, state);
    }
}

#[test]
fn the_table_sorts_by_the_chosen_column_and_inverts() {
    let state = state();
    let mut view = View::default();
    let mut rows = state.rows();
    rows.sort_by(|a, b| b.busy_ns.cmp(&a.busy_ns).then(a.key.cmp(&b.key)));
    let busiest: Vec<u64> = rows.iter().map(|row| row.key.1).collect();
    assert_eq!(table_ids(&frame(&mut view, &state, 80, 24)), busiest);

    // Busy → Polls is one column to the left.
    press(&mut view, &state, &[Action::SortLeft]);
    assert_eq!(view.sort, Column::Polls);
    rows.sort_by(|a, b| b.polls.cmp(&a.polls).then(a.key.cmp(&b.key)));
    let most_polled: Vec<u64> = rows.iter().map(|row| row.key.1).collect();
    let shown = frame(&mut view, &state, 80, 24);
    assert_eq!(table_ids(&shown), most_polled);
    assert!(shown.contains("POLLS↓"), "{shown}");

    press(&mut view, &state, &[Action::SortInvert]);
    rows.sort_by(|a, b| a.polls.cmp(&b.polls).then(a.key.cmp(&b.key)));
    let least_polled: Vec<u64> = rows.iter().map(|row| row.key.1).collect();
    assert_eq!(table_ids(&frame(&mut view, &state, 80, 24)), least_polled);
    assert_ne!(
        most_polled, least_polled,
        "the data must tell the orders apart"
    );

    // Sorting by id goes smallest first.
    press(
        &mut view,
        &state,
        &[Action::SortLeft, Action::SortLeft, Action::SortLeft],
    );
    assert_eq!(view.sort, Column::Id);
    let mut ids: Vec<u64> = state.rows().iter().map(|row| row.key.1).collect();
    ids.sort();
    assert_eq!(table_ids(&frame(&mut view, &state, 80, 24)), ids);
}

#[test]
fn a_name_filter_keeps_only_the_matching_tasks() {
    let state = state();
    let mut view = View::default();
    press(&mut view, &state, &[Action::StartFilter]);
    for c in "BLOCK".chars() {
        press(&mut view, &state, &[Action::FilterChar(c)]);
    }
    let expected: Vec<u64> = state
        .rows()
        .iter()
        .filter(|row| row.name.to_lowercase().contains("block"))
        .map(|row| row.key.1)
        .collect();
    assert_eq!(expected, [20]);
    let shown = frame(&mut view, &state, 80, 24);
    assert_eq!(table_ids(&shown), expected);
    assert!(shown.contains("1 of 6 tasks match /BLOCK_"), "{shown}");
    assert!(shown.contains("Enter keep  Esc clear"), "{shown}");

    press(&mut view, &state, &[Action::FilterCancel]);
    assert_eq!(
        table_ids(&frame(&mut view, &state, 80, 24)).len(),
        state.rows().len()
    );
}

#[test]
fn enter_opens_the_task_under_the_cursor_and_esc_goes_back() {
    let state = state();
    let mut view = View::default();
    let before = frame(&mut view, &state, 80, 24);
    let second = table_ids(&before)[1];
    press(&mut view, &state, &[Action::Down, Action::Open]);
    assert_eq!(view.screen, Screen::Task((1, second)));
    let shown = frame(&mut view, &state, 80, 24);
    assert!(
        shown.contains(&format!("task          #{second} (pid 1)")),
        "{shown}"
    );
    let chain: Vec<String> = std::iter::once((1, second))
        .chain(state.trigger_chain(&(1, second)))
        .map(|key| format!("#{} {}", key.1, state.name_of(&key).unwrap()))
        .collect();
    assert!(
        shown.contains(&format!(
            "trigger chain {} ← (outside any task)",
            chain.join(" ← ")
        )),
        "{shown}"
    );
    let (_, extras) = state.task(&(1, second)).unwrap();
    let polls = extras.unwrap().poll_times.total();
    assert!(
        shown.contains(&format!("poll times ({polls} polls)")),
        "{shown}"
    );
    for warning in state.warnings_for(&(1, second), &state.analysis()) {
        assert!(shown.contains(&warning), "{warning} missing from\n{shown}");
    }
    assert!(shown.contains("Esc back"), "{shown}");

    press(&mut view, &state, &[Action::Back]);
    assert_eq!(frame(&mut view, &state, 80, 24), before);
}

#[test]
fn the_cursor_follows_its_task_once_moved() {
    let state = state();
    let mut view = View::default();
    let ids = table_ids(&frame(&mut view, &state, 80, 24));
    press(&mut view, &state, &[Action::Down]);
    let chosen = view.selected();
    assert_eq!(chosen, Some((1, ids[1])));
    press(&mut view, &state, &[Action::SortInvert]);
    frame(&mut view, &state, 80, 24);
    assert_eq!(view.selected(), chosen);
}

#[test]
fn the_tree_shows_every_task_under_its_trigger() {
    let state = state();
    let mut view = View::default();
    press(&mut view, &state, &[Action::Tree]);
    let shown = frame(&mut view, &state, 80, 24);
    assert!(
        shown.contains("spawned outside any task\n└─ #1 tokio.task"),
        "{shown}"
    );
    assert!(shown.contains("\n   ├─ #2 tokio.task"), "{shown}");
    assert!(shown.contains("\n   │  └─ #4 tokio.task"), "{shown}");
    assert!(
        shown.contains("trigger unknown (existing when tracing began)\n└─ #9"),
        "{shown}"
    );
    for row in state.rows() {
        assert!(
            shown.contains(&format!("#{} ", row.key.1)),
            "#{} missing",
            row.key.1
        );
    }
}

#[test]
fn the_warnings_are_those_of_stats() {
    let state = state();
    let mut view = View::default();
    press(&mut view, &state, &[Action::Warnings]);
    let shown = frame(&mut view, &state, 100, 30);
    let warnings = crate::sinks::analysis::warnings::check_all(&state.analysis(), 1000);
    assert!(!warnings.is_empty());
    for warning in warnings {
        assert!(
            shown.contains(&format!("warning: {}", warning.summary)),
            "{shown}"
        );
        for task in warning.tasks {
            assert!(shown.contains(&task), "{task} missing from\n{shown}");
        }
    }
}

#[test]
fn drops_are_red_and_no_color_means_no_colour() {
    let mut state = state();
    state.set_status(LiveStatus {
        probe_sites: 14,
        runtime_version: Some("1.54.1".to_owned()),
        delivered: 10,
        dropped: 3,
    });
    let buffer = render(&mut View::default(), &state, 120, 20, true);
    let shown = text(&buffer);
    assert!(shown.contains("tokio 1.54.1"), "{shown}");
    assert!(shown.contains("drops 3  probe sites 14"), "{shown}");
    let line = shown.lines().position(|l| l.contains("drops 3")).unwrap();
    let column = shown.lines().nth(line).unwrap().find("drops 3").unwrap() + "drops ".len();
    assert_eq!(buffer[(column as u16, line as u16)].fg, Color::Red);

    let plain = render(&mut View::default(), &state, 120, 20, false);
    assert!(plain.content.iter().all(|cell| cell.fg == Color::Reset));
    assert_eq!(text(&plain), shown, "the same text without colour");
}
