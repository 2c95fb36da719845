//! The view's loop, on its own thread: bring the state up to date from its feed,
//! draw about once a second (and at once after a key), read keys. It is the
//! same for a live session and a recording; only the [`Feed`] differs.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use ratatui::crossterm::event::{self, Event};

use super::{
    cpu::CpuMeter,
    input::{self, Action},
    state::TopState,
    term::Screen,
    view::{Styles, Timeline, View},
};

/// How often the screen is redrawn when no key is pressed.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Longest wait for a key: the feed is pumped at least this often.
const KEY_WAIT: Duration = Duration::from_millis(50);

/// Where the state's events come from.
pub trait Feed {
    /// Brings `state` up to date with what has arrived; `true` when more is
    /// waiting (the turn's time ran out), so the loop comes back at once.
    fn pump(&mut self, state: &mut TopState) -> anyhow::Result<bool>;
    /// The clock to measure alive tasks against at a refresh.
    fn now_ns(&self, state: &TopState) -> u64;
    /// The timeline, for a recording.
    fn timeline(&self) -> Option<Timeline>;
    /// A key the view does not handle (the timeline's); whether it changed anything.
    fn handle(&mut self, action: Action, state: &mut TopState) -> anyhow::Result<bool>;
}

/// Runs the view on `screen` until `q` / Ctrl-C, or until `terminate` is set
/// (SIGTERM).
pub fn run(
    screen: &mut Screen,
    mut state: TopState,
    feed: &mut dyn Feed,
    terminate: &AtomicBool,
    styles: Styles,
) -> anyhow::Result<()> {
    let mut view = View::default();
    let mut frozen: Option<TopState> = None;
    let mut cpu = CpuMeter::new();
    let mut last_refresh: Option<Instant> = None;
    let mut dirty = true;
    while !terminate.load(Ordering::Relaxed) {
        let backlog = feed.pump(&mut state)?;
        let due = last_refresh.is_none_or(|at| at.elapsed() >= REFRESH);
        if due {
            state.tick(feed.now_ns(&state));
            if let Some(percent) = cpu.sample() {
                state.set_own_cpu(Some(percent));
            }
            last_refresh = Some(Instant::now());
        }
        if due || dirty {
            let shown = frozen.as_ref().unwrap_or(&state);
            let timeline = feed.timeline();
            screen
                .terminal
                .draw(|frame| view.draw(frame, shown, timeline.as_ref(), styles))?;
            dirty = false;
        }
        let wait = if backlog { Duration::ZERO } else { KEY_WAIT };
        if !event::poll(wait)? {
            continue;
        }
        match event::read()? {
            Event::Key(key) => {
                let Some(action) = input::action(key, view.typing_filter) else {
                    continue;
                };
                if action == Action::Quit {
                    break;
                }
                if view.handle(action, frozen.as_ref().unwrap_or(&state)) {
                    if action == Action::Pause {
                        frozen = view.paused.then(|| state.clone());
                    }
                    dirty = true;
                } else if feed.handle(action, &mut state)? {
                    dirty = true;
                }
            }
            Event::Resize(..) => dirty = true,
            _ => {}
        }
    }
    Ok(())
}
