//! `tracer top` in a real terminal: tmux runs it (`new-session -x 120 -y 40`),
//! keys go in with `send-keys`, the screen comes out with `capture-pane -p`.
//! What the screen shows is checked against the fixture's ground truth (live)
//! or the recording's own events (timeline), never against numbers typed here.
//! Needs root, tmux, the release tracer and fixtures; fails otherwise.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tracer_tests::{
    GROUND_TRUTH_ENV, GroundTruth, Profile, expected_task_name, fixture_bin,
    go_truth::{go_fixture_bin, read_trace},
    ground_truth_future_types, require_root, temp_path, tracer_bin,
};

/// One tmux session on a server of its own (so the user's tmux is untouched),
/// killed when dropped.
struct Tmux {
    socket: String,
    exit_file: PathBuf,
}

impl Tmux {
    /// Runs `command` (a shell line) in a 120×40 terminal; its exit code is
    /// written to a file when it ends.
    fn start(tag: &str, command: &str) -> Tmux {
        let socket = format!("tracer-top-test-{}-{tag}", std::process::id());
        let exit_file = temp_path(&format!("top-exit-{tag}"));
        let _ = std::fs::remove_file(&exit_file);
        let line = format!("{command}; echo $? > {}", exit_file.display());
        let status = Command::new("tmux")
            .args(["-L", &socket, "new-session", "-d", "-x", "120", "-y", "40"])
            .args(["sh", "-c", &line])
            .status()
            .expect("tmux is installed (cargo xtask setup installs it)");
        assert!(status.success(), "tmux new-session failed");
        Tmux { socket, exit_file }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The screen now.
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p"])
    }

    /// Sends tmux key names (`Enter`, `Escape`, `Right`, or literal text).
    fn keys(&self, keys: &[&str]) {
        for key in keys {
            self.tmux(&["send-keys", key]);
        }
    }

    /// Waits until the screen satisfies `ready` and is whole: the same in two
    /// captures 50 ms apart, since a capture taken while the view redraws can mix
    /// rows of two frames. Panics with the screen if that never happens.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.screen();
            if ready(&screen) {
                std::thread::sleep(Duration::from_millis(50));
                if self.screen() == screen {
                    return screen;
                }
                continue;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The command's exit code, once it has ended.
    fn wait_exit(&self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&self.exit_file)
                && let Ok(code) = text.trim().parse()
            {
                return code;
            }
            assert!(Instant::now() < deadline, "tracer top did not exit");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_file(&self.exit_file);
    }
}

/// One row of the task table as captured: the columns split on blanks (at 120
/// columns every column is shown, and names have no blanks in these fixtures).
#[derive(Debug, Clone)]
struct ScreenRow {
    id: u64,
    name: String,
    state: String,
    polls: u64,
    trigger: String,
}

/// The task table's rows, top to bottom.
fn table(screen: &str) -> Vec<ScreenRow> {
    screen
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("ID"))
        .skip(1)
        .map_while(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            Some(ScreenRow {
                id: cells.first()?.parse().ok()?,
                name: cells.get(1)?.to_string(),
                state: cells.get(2)?.to_string(),
                polls: cells.get(3)?.parse().ok()?,
                trigger: cells.last()?.to_string(),
            })
        })
        .collect()
}

/// `tasks A alive / T total` from the header.
fn alive_total(screen: &str) -> (u64, u64) {
    let line = screen
        .lines()
        .find(|line| line.starts_with("tasks "))
        .unwrap_or_else(|| panic!("no tasks line in\n{screen}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[1].parse().unwrap(), words[4].parse().unwrap())
}

/// The ground-truth task with the most polls so far: the fixture's heartbeat.
fn busiest_task(ground_truth: &Path) -> (u64, usize) {
    let truth = GroundTruth::read(ground_truth).unwrap();
    truth
        .tasks
        .iter()
        .map(|(id, task)| (*id, task.poll_start_tids.len()))
        .max_by_key(|(_, polls)| *polls)
        .expect("ground truth has tasks")
}

fn is_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

#[test]
fn live_top_shows_the_tasks_with_growing_counts_sorts_filters_opens_and_quits_cleanly() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("long_running", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let gt_path = temp_path("top-live");
    let mut target = Command::new(&fixture)
        .args(["--seconds", "16"])
        .env(GROUND_TRUTH_ENV, &gt_path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = target.id();
    std::thread::sleep(Duration::from_secs(1));
    let top = Tmux::start("live", &format!("{} top -p {pid}", tracer.display()));

    // The heartbeat (polled every 100 ms since before the attach) appears, as
    // existing at attach (trigger `?`), and its polls and the totals grow.
    let (heartbeat, _) = busiest_task(&gt_path);
    let row_of = |screen: &str| table(screen).into_iter().find(|row| row.id == heartbeat);
    let first = top.wait_for("the heartbeat's row", |s| {
        row_of(s).is_some_and(|r| r.polls > 0)
    });
    let first_row = row_of(&first).unwrap();
    assert_eq!(first_row.trigger, "?", "existing at attach: {first_row:?}");
    // Named at first sight, from its poll site, although its spawn was not seen.
    let heartbeat_name = expected_task_name(
        &ground_truth_future_types(&std::fs::read_to_string(&gt_path).unwrap())[&heartbeat],
    );
    assert_eq!(first_row.name, heartbeat_name, "{first}");
    let (_, first_total) = alive_total(&first);
    std::thread::sleep(Duration::from_millis(2500));
    let later = top.wait_for("the heartbeat's row again", |s| row_of(s).is_some());
    let later_row = row_of(&later).unwrap();
    let (alive, later_total) = alive_total(&later);
    assert!(
        later_row.polls > first_row.polls,
        "{first_row:?} then {later_row:?}"
    );
    assert!(
        later_total > first_total,
        "{first_total} then {later_total} tasks"
    );
    assert!(alive >= 1, "the heartbeat is alive:\n{later}");
    let truth = GroundTruth::read(&gt_path).unwrap();
    let polled = truth.tasks[&heartbeat].poll_start_tids.len() as u64;
    assert!(
        later_row.polls <= polled,
        "top saw {} polls, the app made {polled}",
        later_row.polls
    );
    for row in table(&later) {
        assert!(
            truth.tasks.contains_key(&row.id),
            "task {} is not in ground truth",
            row.id
        );
    }

    // `<` sorts by polls (from busy, one column to the left), most first: the
    // heartbeat leads; `i` turns the order round.
    top.keys(&["<"]);
    let by_polls = top.wait_for("the table sorted by polls", |s| s.contains("POLLS↓"));
    let rows = table(&by_polls);
    assert_eq!(rows[0].id, heartbeat, "{by_polls}");
    assert!(
        rows.windows(2).all(|w| w[0].polls >= w[1].polls),
        "{by_polls}"
    );
    top.keys(&["i"]);
    let inverted = top.wait_for("the order inverted", |s| s.contains("POLLS↑"));
    let rows = table(&inverted);
    assert!(
        rows.windows(2).all(|w| w[0].polls <= w[1].polls),
        "{inverted}"
    );
    assert_ne!(rows[0].id, heartbeat, "{inverted}");
    top.keys(&["i"]);

    // `/` filters by name: the heartbeat's name keeps its row, and every row
    // kept has the name; a name no task has keeps none.
    top.keys(&["/", &heartbeat_name, "Enter"]);
    let filtered = top.wait_for("the filter applied", |s| {
        s.contains(&format!("match /{heartbeat_name}"))
    });
    let rows = table(&filtered);
    assert!(rows.iter().any(|row| row.id == heartbeat), "{filtered}");
    assert!(
        rows.iter().all(|row| row.name.contains(&heartbeat_name)),
        "{filtered}"
    );
    top.keys(&["/", "Escape", "/", "no-such-task", "Enter"]);
    let none = top.wait_for("the filter applied", |s| s.contains("match /no-such-task"));
    assert!(table(&none).is_empty(), "{none}");
    top.keys(&["/", "Escape"]);
    top.wait_for("the filter cleared", |s| {
        !s.contains("match /") && !table(s).is_empty()
    });

    // Enter opens the heartbeat's details (it is on the top row); Esc goes back.
    top.keys(&["Enter"]);
    let details = top.wait_for("the details", |s| s.contains("task details"));
    assert!(
        details.contains(&format!("task          #{heartbeat} (pid {pid})")),
        "{details}"
    );
    assert!(details.contains("existing when tracing began"), "{details}");
    top.keys(&["Escape"]);
    top.wait_for("the table again", |s| {
        s.contains("POLLS↓") && !table(s).is_empty()
    });

    // `t`: the heartbeat sits under the root of tasks that existed at attach;
    // the families under the root of tasks spawned outside any task.
    top.keys(&["t"]);
    let tree = top.wait_for("the tree", |s| s.contains("trigger tree"));
    assert!(tree.contains("spawned outside any task\n├─ #"), "{tree}");
    // The existing tasks' root comes last: End scrolls there.
    top.keys(&["End"]);
    let tree = top.wait_for("the end of the tree", |s| s.contains("trigger unknown"));
    // Other tasks that existed at attach may sit beside it (one first seen at its
    // free, say): the heartbeat is one of that root's children.
    let heartbeat_line = format!("#{heartbeat} ");
    let existing: Vec<&str> = tree
        .lines()
        .skip_while(|line| !line.starts_with("trigger unknown (existing when tracing began)"))
        .skip(1)
        .filter_map(|line| line.strip_prefix("├─ ").or(line.strip_prefix("└─ ")))
        .collect();
    assert!(
        existing
            .iter()
            .any(|child| child.starts_with(&heartbeat_line)),
        "the heartbeat #{heartbeat} is not under the root of existing tasks:\n{tree}"
    );
    top.keys(&["Escape"]);
    top.wait_for("the table after the tree", |s| !table(s).is_empty());

    top.keys(&["q"]);
    assert_eq!(top.wait_exit(), 0, "tracer top exit code");
    assert!(is_alive(pid), "the target must run on after q");
    let status = target.wait().unwrap();
    assert!(status.success(), "long_running exited with {status}");
    let truth = GroundTruth::read(&gt_path).unwrap();
    assert_eq!(truth.end, Some(true), "long_running did not finish cleanly");
    let _ = std::fs::remove_file(&gt_path);
}

/// What `tracer replay FILE` says happened up to `seconds` after the start:
/// (tasks seen, tasks alive), by id.
fn replayed_until(recording: &Path, seconds: f64) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let output = Command::new(tracer_bin().unwrap())
        .arg("replay")
        .arg(recording)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut seen = BTreeSet::new();
    let mut ended = BTreeSet::new();
    for line in String::from_utf8(output.stdout).unwrap().lines().skip(1) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        let (Some(time), Some(event), Some(id)) = (cells.first(), cells.get(2), cells.get(3))
        else {
            continue;
        };
        if time.parse::<f64>().unwrap() > seconds {
            break;
        }
        let id: u64 = id.parse().unwrap();
        seen.insert(id);
        if ["resolve", "destroy"].contains(event) {
            ended.insert(id);
        }
    }
    let alive = seen.difference(&ended).copied().collect();
    (seen, alive)
}

#[test]
fn top_on_a_recording_steps_to_a_point_and_shows_the_tasks_alive_then() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("long_running", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let recording = temp_path("top-recording");
    let gt_path = temp_path("top-recording-gt");
    let run = Command::new(&tracer)
        .arg("run")
        .arg("-o")
        .arg(&recording)
        .arg("--")
        .arg(&fixture)
        .args(["--seconds", "4"])
        .env(GROUND_TRUTH_ENV, &gt_path)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let top = Tmux::start(
        "recording",
        &format!("{} top {}", tracer.display(), recording.display()),
    );
    top.wait_for("the timeline", |s| s.contains("recording at 0.0s"));
    top.keys(&["Right", "Right"]);
    let at_two = top.wait_for("2 s into the recording", |s| {
        s.contains("recording at 2.0s")
    });
    let (seen, alive) = replayed_until(&recording, 2.0);
    assert!(
        !alive.is_empty() && seen.len() > alive.len(),
        "the fixture has both by then"
    );
    assert_eq!(
        alive_total(&at_two),
        (alive.len() as u64, seen.len() as u64),
        "{at_two}"
    );
    // Sorted by state (two columns left of busy), alive tasks come first.
    top.keys(&["<", "<"]);
    let by_state = top.wait_for("sorted by state", |s| s.contains("STATE↑"));
    let shown_alive: BTreeSet<u64> = table(&by_state)
        .iter()
        .take_while(|row| row.state != "done")
        .map(|row| row.id)
        .collect();
    assert_eq!(shown_alive, alive, "{by_state}");

    // Back a step: fewer tasks seen, as the recording says.
    top.keys(&["Left"]);
    let at_one = top.wait_for("1 s into the recording", |s| {
        s.contains("recording at 1.0s")
    });
    let (seen_at_one, alive_at_one) = replayed_until(&recording, 1.0);
    assert_eq!(
        alive_total(&at_one),
        (alive_at_one.len() as u64, seen_at_one.len() as u64),
        "{at_one}"
    );
    let states: BTreeMap<u64, String> = table(&at_one)
        .into_iter()
        .map(|row| (row.id, row.state))
        .collect();
    assert!(states.keys().all(|id| seen_at_one.contains(id)), "{at_one}");

    top.keys(&["q"]);
    assert_eq!(top.wait_exit(), 0);
    let _ = std::fs::remove_file(&recording);
    let _ = std::fs::remove_file(&gt_path);
}

#[test]
fn top_refuses_an_output_that_is_not_a_terminal_and_points_at_trace_and_stats() {
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let output = Command::new(&tracer)
        .args(["top", "-p", "1"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs a terminal"), "{stderr}");
    assert!(
        stderr.contains("tracer trace") && stderr.contains("tracer stats"),
        "{stderr}"
    );
}

#[test]
fn top_on_a_command_keeps_every_task_and_filters_them_by_name_as_ground_truth_types_them() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("multi_thread", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let gt_path = temp_path("top-command");
    let top = Tmux::start(
        "command",
        &format!(
            "env {GROUND_TRUTH_ENV}={} {} top --retain 1h -- {}",
            gt_path.display(),
            tracer.display(),
            fixture.display()
        ),
    );
    // The command runs to its end under the view, which then says so and keeps
    // its last state on screen.
    let ended = top.wait_for("the command's end", |s| {
        s.contains("ended: the command exited with code 0")
    });
    let truth = GroundTruth::read(&gt_path).unwrap();
    assert_eq!(truth.end, Some(true));
    assert_eq!(
        alive_total(&ended),
        (0, truth.tasks.len() as u64),
        "{ended}"
    );

    top.keys(&["/", "blocking", "Enter"]);
    let blocking = top.wait_for("the filter applied", |s| s.contains("match /blocking"));
    let shown: BTreeSet<u64> = table(&blocking).iter().map(|row| row.id).collect();
    let expected: BTreeSet<u64> = truth
        .tasks
        .iter()
        .filter(|(_, task)| task.kind.tracer_type() == "tokio.blocking")
        .map(|(id, _)| *id)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(shown, expected, "{blocking}");

    top.keys(&["q"]);
    assert_eq!(
        top.wait_exit(),
        0,
        "tracer top exits with the command's code"
    );
    let _ = std::fs::remove_file(&gt_path);
}

/// A Go program under `top`: its goroutines, filtered by start function, are
/// exactly the ones Go's own trace names so.
#[test]
fn top_on_a_go_command_shows_its_goroutines_by_start_function() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let fixture = go_fixture_bin("1.23", "default", "tree").unwrap_or_else(|e| panic!("{e}"));
    let trace_file = temp_path("top-go.trace");
    let top = Tmux::start(
        "go",
        &format!(
            "env TRACER_GO_TRACE={} {} top --retain 1h -- {}",
            trace_file.display(),
            tracer.display(),
            fixture.display()
        ),
    );
    let ended = top.wait_for("the command's end", |s| {
        s.contains("ended: the command exited with code 0")
    });
    assert!(
        ended.contains("go"),
        "the header names the runtime: {ended}"
    );
    let truth = read_trace(&trace_file).unwrap_or_else(|e| panic!("{e}"));
    top.keys(&["/", "main.leaf", "Enter"]);
    let leaves = top.wait_for("the filter applied", |s| s.contains("match /main.leaf"));
    let shown: BTreeSet<u64> = table(&leaves).iter().map(|row| row.id).collect();
    let expected: BTreeSet<u64> = truth.named("main.leaf").map(|g| g.goid).collect();
    assert!(!expected.is_empty());
    assert_eq!(shown, expected, "{leaves}");
    top.keys(&["q"]);
    assert_eq!(top.wait_exit(), 0);
    let _ = std::fs::remove_file(&trace_file);
}

#[test]
fn sigterm_restores_the_terminal_detaches_and_leaves_the_target_running() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let tracer = tracer_bin().unwrap_or_else(|e| panic!("{e}"));
    let fixture = fixture_bin("long_running", Profile::Release).unwrap_or_else(|e| panic!("{e}"));
    let gt_path = temp_path("top-sigterm");
    let mut target = Command::new(&fixture)
        .args(["--seconds", "8"])
        .env(GROUND_TRUTH_ENV, &gt_path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = target.id();
    let pid_file = temp_path("top-sigterm-pid");
    let tty_file = temp_path("top-sigterm-stty");
    let top = Tmux::start(
        "sigterm",
        &format!(
            "sh -c 'echo $$ > {}; exec {} top -p {pid} 2> {}.stderr'; stty -a > {}",
            pid_file.display(),
            tracer.display(),
            tty_file.display(),
            tty_file.display()
        ),
    );
    top.wait_for("the view", |s| {
        s.contains("tracer top") && !table(s).is_empty()
    });
    let tracer_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: sends a signal to the tracer this test started.
    assert_eq!(unsafe { libc::kill(tracer_pid, libc::SIGTERM) }, 0);
    assert_eq!(top.wait_exit(), 0, "tracer top exit code after SIGTERM");
    let stty = std::fs::read_to_string(&tty_file).unwrap();
    for mode in ["icanon", "echo", "isig"] {
        assert!(
            stty.split_whitespace().any(|word| word == mode),
            "{mode} not restored:\n{stty}"
        );
    }
    let stderr_path = format!("{}.stderr", tty_file.display());
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(stderr.contains("session ended: interrupted"), "{stderr}");
    assert!(is_alive(pid), "the target must run on after SIGTERM to top");
    assert!(target.wait().unwrap().success());
    for path in [gt_path, pid_file, tty_file, PathBuf::from(stderr_path)] {
        let _ = std::fs::remove_file(path);
    }
}
