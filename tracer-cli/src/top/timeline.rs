//! `tracer top FILE`: a recording looked at as it was live, at a position on its
//! timeline. The state holds what had happened up to the position: forward,
//! the next events are applied; back, the recording is read again from the
//! start (a recording reads at millions of events a second, and memory stays
//! that of one chunk).

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use super::{
    app::Feed,
    input::Action,
    state::{StateOptions, TopState},
    view::Timeline,
};
use crate::{
    model::event::HookEvent,
    sinks::output::{SessionEnd, SessionInfo},
    sinks::recording::reader::Reader,
    sinks::recording::source::{Events, open_events},
};

/// What a first pass over the file finds: where it ends, and what its header
/// and end chunk say.
struct Scan {
    last_ns: u64,
    end: Option<SessionEnd>,
    runtime_version: Option<String>,
}

fn scan(path: &Path, info: &SessionInfo) -> anyhow::Result<Scan> {
    if let Ok(mut reader) = Reader::open(path) {
        let mut last_ns = info.start_ns;
        while let Some(event) = reader.next_event()? {
            last_ns = last_ns.max(event.ts_ns);
        }
        reader.take_problems();
        return Ok(Scan {
            last_ns,
            end: reader.end().cloned(),
            runtime_version: Some(reader.header().runtime_version.clone()),
        });
    }
    let (_, events) = open_events(path)?;
    let mut last_ns = info.start_ns;
    for event in events {
        last_ns = last_ns.max(event?.ts_ns);
    }
    Ok(Scan {
        last_ns,
        end: None,
        runtime_version: None,
    })
}

/// A recording and the position shown.
pub struct Recording {
    path: PathBuf,
    info: SessionInfo,
    options: StateOptions,
    scan: Scan,
    events: Events,
    /// The first event after the position, read but not applied.
    next: Option<HookEvent>,
    timeline: Timeline,
    /// When playing: the wall-clock instant the position last moved.
    played_at: Instant,
}

impl Recording {
    /// Opens `path` and gives the state at its start.
    pub fn open(
        path: PathBuf,
        options: StateOptions,
        step_ns: u64,
    ) -> anyhow::Result<(Self, TopState)> {
        let (info, events) = open_events(&path)?;
        let scan = scan(&path, &info)?;
        let timeline = Timeline {
            position_ns: 0,
            length_ns: scan.last_ns.saturating_sub(info.start_ns),
            playing: false,
            step_ns: step_ns.max(1),
        };
        let recording = Self {
            path,
            info,
            options,
            scan,
            events,
            next: None,
            timeline,
            played_at: Instant::now(),
        };
        let state = recording.fresh_state();
        Ok((recording, state))
    }

    fn fresh_state(&self) -> TopState {
        let mut state = TopState::new(self.info.clone(), self.options);
        state.set_runtime_version(self.scan.runtime_version.clone());
        state
    }

    /// Moves to `position_ns` after the start (clamped to the recording).
    pub fn seek(&mut self, state: &mut TopState, position_ns: u64) -> anyhow::Result<()> {
        let position_ns = position_ns.min(self.timeline.length_ns);
        if position_ns < self.timeline.position_ns {
            let (_, events) = open_events(&self.path)?;
            self.events = events;
            self.next = None;
            *state = self.fresh_state();
        }
        self.timeline.position_ns = position_ns;
        let until = self.info.start_ns + position_ns;
        loop {
            let event = match self.next.take() {
                Some(event) => event,
                None => match self.events.next() {
                    Some(event) => event?,
                    None => break,
                },
            };
            if event.ts_ns > until {
                self.next = Some(event);
                break;
            }
            state.apply(&event);
        }
        state.tick(until);
        let at_end = position_ns == self.timeline.length_ns;
        state.set_end(at_end.then(|| self.scan.end.clone()).flatten());
        if at_end {
            self.timeline.playing = false;
        }
        Ok(())
    }
}

impl Feed for Recording {
    fn pump(&mut self, state: &mut TopState) -> anyhow::Result<bool> {
        if self.timeline.playing {
            let elapsed = self.played_at.elapsed();
            if elapsed >= std::time::Duration::from_millis(100) {
                self.played_at = Instant::now();
                let position = self.timeline.position_ns + elapsed.as_nanos() as u64;
                self.seek(state, position)?;
            }
        }
        Ok(false)
    }

    fn now_ns(&self, _: &TopState) -> u64 {
        self.info.start_ns + self.timeline.position_ns
    }

    fn timeline(&self) -> Option<Timeline> {
        Some(self.timeline)
    }

    fn handle(&mut self, action: Action, state: &mut TopState) -> anyhow::Result<bool> {
        let position = self.timeline.position_ns;
        match action {
            Action::StepBack => self.seek(state, position.saturating_sub(self.timeline.step_ns))?,
            Action::StepForward => {
                self.seek(state, position.saturating_add(self.timeline.step_ns))?
            }
            Action::PlayPause => {
                self.timeline.playing = !self.timeline.playing;
                if self.timeline.playing && position == self.timeline.length_ns {
                    self.seek(state, 0)?;
                    self.timeline.playing = true;
                }
                self.played_at = Instant::now();
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}
