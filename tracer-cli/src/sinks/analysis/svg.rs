//! A self-contained SVG timeline: one lane per thread, one bar per poll coloured
//! by task (hover for its id and times), and an arrow from where a task was
//! spawned to its first poll. Opens in any browser, no script, no server. With
//! several processes (`--follow-forks`) the lanes are grouped by process and
//! named `PID/TID`.
//!
//! Every poll is a bar, so the file grows with the polls: fine for a demo or a
//! few seconds of a server, heavy for minutes of a busy one (use Perfetto then).

use std::{collections::BTreeMap, fmt::Write as _, io::Write};

use super::{Analysis, Collector, Poll, human_duration};
use crate::{
    model::TaskKey,
    model::event::{HookEvent, HookKind, ResourceType},
    sinks::output::SessionInfo,
};

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 110.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const LANE: f64 = 26.0;
const BAR: f64 = 16.0;
const AXIS: f64 = 40.0;
/// Width of a label character at font size 10, roughly.
const LABEL_CHAR_WIDTH: f64 = 6.0;
/// A bar shows its task's name only if this many characters fit.
const MIN_LABEL_CHARS: usize = 4;

/// The last path segments of a name, for a label on a narrow bar:
/// `app::handle` of `my_crate::server::app::handle`, generics kept.
fn short_name(name: &str) -> &str {
    let head = name.split('<').next().unwrap_or(name);
    let mut cut = 0;
    let mut segments = head
        .match_indices("::")
        .map(|(at, _)| at)
        .collect::<Vec<_>>();
    if segments.len() >= 2 {
        segments.truncate(segments.len() - 1);
        cut = segments.last().map_or(0, |at| at + 2);
    }
    &name[cut..]
}

/// What the picture shows, for the status line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SvgCounts {
    /// Threads (lanes).
    pub lanes: usize,
    /// Poll bars.
    pub bars: usize,
    /// Trigger arrows.
    pub arrows: usize,
}

/// A spawn by a task, to draw once the child's first poll is known.
struct Arrow {
    from_ns: u64,
    from_tid: u32,
    to: Option<Poll>,
}

/// A task's colour: hues spread by the golden angle so neighbours differ.
fn colour(async_id: u64) -> String {
    format!("hsl({:.0},65%,50%)", (async_id as f64 * 137.508) % 360.0)
}

/// Escapes text for SVG content and attributes.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Reads `events` and writes the timeline to `out`.
pub fn write(
    mut out: impl Write,
    info: &SessionInfo,
    events: impl Iterator<Item = anyhow::Result<HookEvent>>,
) -> anyhow::Result<SvgCounts> {
    let timeline = Timeline::collect(info, events)?;
    let mut svg = String::new();
    timeline.write_header(&mut svg)?;
    timeline.write_lanes(&mut svg)?;
    timeline.write_axis(&mut svg)?;
    timeline.write_bars(&mut svg)?;
    let drawn = timeline.write_arrows(&mut svg)?;
    svg.push_str("</svg>\n");
    out.write_all(svg.as_bytes())?;
    out.flush()?;
    Ok(SvgCounts {
        lanes: timeline.lanes.len(),
        bars: timeline.polls.len(),
        arrows: drawn,
    })
}

/// Everything the picture is drawn from, gathered in one pass over the events,
/// and the scale that maps its times to x: the drawing steps below share it.
struct Timeline {
    analysis: Analysis,
    polls: Vec<Poll>,
    arrows: BTreeMap<TaskKey, Arrow>,
    /// (pid, tid), grouped by process, in order of first poll within one.
    lanes: Vec<(u32, u32)>,
    span_ns: u64,
    /// Pixels per nanosecond.
    scale: f64,
}

impl Timeline {
    /// Pairs the polls, notes each spawn by a task with the child's first poll,
    /// and orders the lanes.
    fn collect(
        info: &SessionInfo,
        events: impl Iterator<Item = anyhow::Result<HookEvent>>,
    ) -> anyhow::Result<Self> {
        let mut collector = Collector::new(super::DEFAULT_BLOCKING_THRESHOLD);
        let mut polls = Vec::new();
        let mut arrows: BTreeMap<TaskKey, Arrow> = BTreeMap::new();
        // (pid, tid), in order of first poll.
        let mut lanes: Vec<(u32, u32)> = Vec::new();
        for event in events {
            let event = event?;
            if let HookKind::Init {
                trigger_id: Some(trigger),
                ..
            } = event.kind
                && trigger != 0
            {
                arrows.insert(
                    (event.pid, event.async_id),
                    Arrow {
                        from_ns: event.ts_ns,
                        from_tid: event.tid,
                        to: None,
                    },
                );
            }
            if let Some(poll) = collector.record(&event) {
                if !lanes.contains(&(poll.pid, poll.tid)) {
                    lanes.push((poll.pid, poll.tid));
                }
                if let Some(arrow) = arrows.get_mut(&(poll.pid, poll.async_id))
                    && arrow.to.is_none()
                {
                    arrow.to = Some(poll);
                }
                polls.push(poll);
            }
        }
        let analysis = collector.finish(info);
        lanes.sort_by_key(|(pid, _)| *pid);
        let span_ns = analysis.end_ns.saturating_sub(analysis.start_ns).max(1);
        let scale = (WIDTH - LEFT - RIGHT) / span_ns as f64;
        Ok(Self {
            analysis,
            polls,
            arrows,
            lanes,
            span_ns,
            scale,
        })
    }

    /// Where time `ns` falls on the x axis.
    fn x(&self, ns: u64) -> f64 {
        LEFT + ns.saturating_sub(self.analysis.start_ns) as f64 * self.scale
    }

    /// The lane of a thread, if it ran a poll.
    fn lane_of(&self, pid: u32, tid: u32) -> Option<usize> {
        self.lanes.iter().position(|lane| *lane == (pid, tid))
    }

    /// The top of lane `index`.
    fn lane_y(index: usize) -> f64 {
        TOP + index as f64 * LANE
    }

    /// The root element, the arrow head, the background and the title line.
    fn write_header(&self, svg: &mut String) -> std::fmt::Result {
        let analysis = &self.analysis;
        let height = TOP + self.lanes.len() as f64 * LANE + AXIS;
        writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
        )?;
        svg.push_str(r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker></defs>"##);
        writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#)?;
        let processes = match analysis.pids.len() {
            0 | 1 => String::new(),
            n => format!(" and {} other process(es), lanes PID/TID", n - 1),
        };
        writeln!(
            svg,
            r#"<text x="10" y="22" font-size="15" font-weight="bold">{} (pid {}{processes}): {} tasks, {} polls over {}</text>"#,
            escape(&analysis.exe),
            analysis.pid,
            analysis.tasks.len(),
            self.polls.len(),
            human_duration(self.span_ns)
        )
    }

    /// A striped band per thread, named on the left.
    fn write_lanes(&self, svg: &mut String) -> std::fmt::Result {
        for (index, (pid, tid)) in self.lanes.iter().enumerate() {
            let y = Self::lane_y(index);
            let name = if self.analysis.several_processes() {
                format!("{pid}/{tid}")
            } else {
                format!("thread {tid}")
            };
            let fill = if index % 2 == 0 { "#f3f3f3" } else { "#fafafa" };
            writeln!(
                svg,
                r#"<rect x="{LEFT}" y="{y}" width="{}" height="{LANE}" fill="{fill}"/><text x="8" y="{}">{name}</text>"#,
                WIDTH - LEFT - RIGHT,
                y + LANE / 2.0 + 4.0
            )?;
        }
        Ok(())
    }

    /// Eleven ticks across the session, in seconds since its start.
    fn write_axis(&self, svg: &mut String) -> std::fmt::Result {
        let analysis = &self.analysis;
        let axis_y = TOP + self.lanes.len() as f64 * LANE;
        for tick in 0..=10 {
            let ns = analysis.start_ns + self.span_ns * tick / 10;
            let tx = self.x(ns);
            writeln!(
                svg,
                r##"<line x1="{tx:.1}" y1="{TOP}" x2="{tx:.1}" y2="{}" stroke="#ccc"/><text x="{tx:.1}" y="{}" text-anchor="middle" fill="#555">{:.3}s</text>"##,
                axis_y + 4.0,
                axis_y + 18.0,
                analysis.relative_s(ns)
            )?;
        }
        Ok(())
    }

    /// A bar per poll. Polls nest (a runtime worker runs inside its blocking
    /// task's poll): the longest are drawn first, faded, so what runs inside them
    /// stays visible.
    fn write_bars(&self, svg: &mut String) -> std::fmt::Result {
        let mut by_length: Vec<&Poll> = self.polls.iter().collect();
        by_length.sort_by_key(|poll| std::cmp::Reverse(poll.duration_ns()));
        for poll in by_length {
            if let Some(index) = self.lane_of(poll.pid, poll.tid) {
                self.write_bar(svg, poll, index)?;
            }
        }
        Ok(())
    }

    /// One poll's bar in lane `index`, with its task and times on hover and, if
    /// the bar is wide enough, the task's name (as much as fits).
    fn write_bar(&self, svg: &mut String, poll: &Poll, index: usize) -> std::fmt::Result {
        let analysis = &self.analysis;
        let task = analysis.tasks.get(&(poll.pid, poll.async_id));
        let resource = task.map_or("task", |task| task.resource_type.as_str());
        let title = task.map_or_else(|| format!("task {}", poll.async_id), |task| task.title());
        let opacity = if resource == ResourceType::TOKIO_BLOCKING.as_str() {
            0.3
        } else {
            1.0
        };
        let width = (poll.duration_ns() as f64 * self.scale).max(1.0);
        let bar_y = Self::lane_y(index) + (LANE - BAR) / 2.0;
        writeln!(
            svg,
            r#"<rect x="{:.2}" y="{bar_y:.1}" width="{width:.2}" height="{BAR}" fill="{}" fill-opacity="{opacity}"><title>{}: {:.6}s, {}</title></rect>"#,
            self.x(poll.start_ns),
            colour(poll.async_id),
            escape(&title),
            analysis.relative_s(poll.start_ns),
            human_duration(poll.duration_ns())
        )?;
        if let Some(name) = task.and_then(|task| task.name.as_deref()) {
            let fits = (width / LABEL_CHAR_WIDTH) as usize;
            if fits >= MIN_LABEL_CHARS {
                let shown: String = short_name(name).chars().take(fits).collect();
                writeln!(
                    svg,
                    r#"<text x="{:.2}" y="{:.1}" font-size="10" fill="white" pointer-events="none">{}</text>"#,
                    self.x(poll.start_ns) + 2.0,
                    bar_y + BAR - 3.0,
                    escape(&shown)
                )?;
            }
        }
        Ok(())
    }

    /// An arrow per spawn whose child ran, from the spawn to the child's first
    /// poll; returns how many were drawn.
    fn write_arrows(&self, svg: &mut String) -> Result<usize, std::fmt::Error> {
        let mut drawn = 0;
        for ((pid, child), arrow) in &self.arrows {
            let (Some(to), Some(from_lane)) = (arrow.to, self.lane_of(*pid, arrow.from_tid)) else {
                continue;
            };
            let Some(to_lane) = self.lane_of(*pid, to.tid) else {
                continue;
            };
            let (y1, y2) = (
                Self::lane_y(from_lane) + LANE / 2.0,
                Self::lane_y(to_lane) + (LANE - BAR) / 2.0,
            );
            let (x1, x2) = (self.x(arrow.from_ns), self.x(to.start_ns));
            let bend = if from_lane == to_lane { -14.0 } else { 0.0 };
            writeln!(
                svg,
                r##"<path d="M{x1:.2},{y1:.1} C{x1:.2},{:.1} {x2:.2},{:.1} {x2:.2},{y2:.1}" fill="none" stroke="#333" stroke-width="1" marker-end="url(#arrow)"><title>spawned {}</title></path>"##,
                y1 + bend,
                y2 + bend,
                escape(
                    &self
                        .analysis
                        .tasks
                        .get(&(*pid, *child))
                        .map_or_else(|| format!("task {child}"), |task| task.title())
                )
            )?;
            drawn += 1;
        }
        Ok(drawn)
    }
}

#[cfg(test)]
mod tests {
    use super::{super::test_events::*, *};

    /// The picture of `events` and its counts.
    fn draw(events: Vec<HookEvent>) -> (String, SvgCounts) {
        let mut out = Vec::new();
        let counts = write(&mut out, &info(), events.into_iter().map(Ok)).unwrap();
        (String::from_utf8(out).unwrap(), counts)
    }

    #[test]
    fn draws_a_lane_per_thread_a_bar_per_poll_and_an_arrow_per_spawn() {
        let (svg, counts) = draw(session());
        assert_eq!(
            counts,
            SvgCounts {
                lanes: 2,
                bars: 6,
                arrows: 2
            }
        );
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<title>tokio.task ").count(), 6);
        assert!(svg.contains(">thread 11</text>"));
    }

    #[test]
    fn lanes_are_grouped_by_process() {
        let (svg, counts) = draw(two_processes());
        assert_eq!(
            counts,
            SvgCounts {
                lanes: 4,
                bars: 12,
                arrows: 4
            }
        );
        assert!(svg.contains("(pid 1 and 1 other process(es), lanes PID/TID): 10 tasks"));
        let at = |lane: &str| {
            svg.find(&format!(">{lane}</text>"))
                .unwrap_or_else(|| panic!("no lane {lane}: {svg}"))
        };
        // Thread 21 ran a poll before thread 12 did, but process 1 comes first.
        assert!(at("1/11") < at("1/12") && at("1/12") < at("2/21") && at("2/21") < at("2/22"));
    }

    #[test]
    fn names_are_escaped() {
        assert_eq!(escape("a<b>&\"c\""), "a&lt;b&gt;&amp;&quot;c&quot;");
    }
}
