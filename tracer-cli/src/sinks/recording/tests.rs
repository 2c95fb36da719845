//! The recording format's promises: round trips, truncation, damage, versions,
//! file safety.

use std::{borrow::Cow, os::unix::fs::PermissionsExt as _, path::PathBuf};

use proptest::prelude::*;

use super::{
    Recorder, create_file,
    format::{self, FORMAT_MAJOR, FORMAT_MINOR, FRAME_HEADER, SYNC},
    reader::{Problem, Reader, Refusal},
};
use crate::{
    model::event::{HookEvent, HookKind, ResourceType},
    sinks::output::{SessionEnd, SessionInfo, Sink},
};

fn session() -> SessionInfo {
    SessionInfo {
        pid: 77,
        exe: PathBuf::from("/nonexistent/app"),
        runtime: "tokio".to_owned(),
        start_ns: 5_000,
        start_unix_ns: 1_700_000_000_000_000_000,
    }
}

fn end() -> SessionEnd {
    SessionEnd {
        end_ns: 9_000,
        ending: "process 77 exited".to_owned(),
        delivered: 12,
        dropped: 3,
        emitted: Some(15),
        problems: vec![(2, "task headers unreadable".to_owned())],
    }
}

#[test]
fn end_chunk_of_format_1_0_reads_without_emitted_and_1_0_readers_skip_it() {
    let with_emitted = format::encode_end(&end());
    let without = format::encode_end(&SessionEnd {
        emitted: None,
        ..end()
    });
    // 1.1 only appends: the 1.0 fields are the same bytes, so a 1.0 reader, which
    // ignores what follows them, reads a 1.1 end chunk.
    assert!(with_emitted.starts_with(&without));
    assert_eq!(format::decode_end(&without).unwrap().emitted, None);
    assert_eq!(format::decode_end(&with_emitted).unwrap(), end());
}

/// One level of an await chain, any kind, forks (with branches that may
/// fork again) included.
fn await_frame() -> impl Strategy<Value = crate::model::event::AwaitFrame> {
    use crate::model::event::{AwaitBranch, AwaitFrame};
    let text = "[a-z:./0-9<>!]{0,12}";
    let leaf = prop_oneof![
        (text, text).prop_map(|(function, at)| AwaitFrame::Await { function, at }),
        (text, "[a-z]{1,9}").prop_map(|(function, state)| AwaitFrame::State {
            function,
            state: state.into()
        }),
        text.prop_map(|future| AwaitFrame::Future { future }),
        text.prop_map(|unknown| AwaitFrame::Unknown { unknown }),
    ];
    leaf.prop_recursive(3, 24, 3, move |inner| {
        let branch = (0..64usize, proptest::collection::vec(inner, 0..3))
            .prop_map(|(branch, awaiting)| AwaitBranch { branch, awaiting });
        (text, proptest::collection::vec(branch, 0..3))
            .prop_map(|(future, branches)| AwaitFrame::Fork { future, branches })
    })
}

/// A busy stream: `tasks` tasks, each init / before / after / resolve / destroy.
fn workload(tasks: u64) -> Vec<HookEvent> {
    let mut events = Vec::new();
    for id in 1..=tasks {
        let kinds = [
            HookKind::Init {
                resource_type: ResourceType::TOKIO_TASK,
                trigger_id: Some(id / 2),
                existing: false,
                name: None,
                location: None,
            },
            HookKind::Before {
                sched_ns: Some(id * 1000),
            },
            HookKind::Wake {
                waker_id: Some(id / 2),
                self_wake: id % 3 == 0,
            },
            HookKind::After {
                completed: true,
                awaiting: None,
            },
            HookKind::Resolve,
            HookKind::Destroy,
        ];
        for kind in kinds {
            events.push(HookEvent {
                kind,
                async_id: id,
                ts_ns: 10_000 + events.len() as u64 * 3_000,
                pid: 77,
                tid: 100 + (id % 3) as u32,
            });
        }
    }
    events
}

fn record(events: &[HookEvent], end: Option<&SessionEnd>) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut recorder = Recorder::new(&mut bytes);
    recorder.begin(&session()).unwrap();
    for event in events {
        recorder.event(event).unwrap();
    }
    recorder.flush().unwrap();
    if let Some(end) = end {
        recorder.end(end).unwrap();
    }
    drop(recorder);
    bytes
}

/// Everything a reader gets from `bytes`: events, problems, end, truncation.
fn read_all(bytes: &[u8]) -> (Vec<HookEvent>, Vec<Problem>, Option<SessionEnd>, bool) {
    let mut reader = Reader::new(bytes).unwrap();
    let mut events = Vec::new();
    while let Some(event) = reader.next_event().unwrap() {
        events.push(event);
    }
    (
        events,
        reader.take_problems(),
        reader.end().cloned(),
        reader.truncated(),
    )
}

/// `workload(tasks)` with a name on every init and a location on most.
fn named_workload(tasks: u64) -> Vec<HookEvent> {
    let mut events = workload(tasks);
    for event in &mut events {
        if let HookKind::Init { name, location, .. } = &mut event.kind {
            *name = Some(format!("app::worker<u{}>", 8 << (event.async_id % 4)));
            *location =
                (event.async_id % 5 != 0).then(|| format!("src/main.rs:{}:9", event.async_id % 7));
        }
    }
    events
}

/// `events` as a reader that knows no names chunks (format 1.1) reads them.
fn without_names(events: &[HookEvent]) -> Vec<HookEvent> {
    let mut events = events.to_vec();
    for event in &mut events {
        if let HookKind::Init { name, location, .. } = &mut event.kind {
            (*name, *location) = (None, None);
        }
    }
    events
}

/// The recording without its names chunks, as a 1.1 reader sees it (it skips
/// chunk kinds it does not know).
fn strip_names_chunks(bytes: &[u8]) -> Vec<u8> {
    let frames = frame_offsets(bytes);
    let mut out = bytes[..frames[0]].to_vec();
    for (i, &at) in frames.iter().enumerate() {
        let end = frames.get(i + 1).copied().unwrap_or(bytes.len());
        if bytes[at + 4] != format::ChunkKind::Names as u8 {
            out.extend_from_slice(&bytes[at..end]);
        }
    }
    out
}

#[test]
fn names_and_locations_round_trip_in_their_own_chunks() {
    let events = named_workload(20_000);
    let bytes = record(&events, Some(&end()));
    let (back, problems, end_read, truncated) = read_all(&bytes);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(back == events, "names or locations changed on the way");
    assert_eq!((end_read, truncated), (Some(end()), false));
    // Only names chunks were added: without them the file is what 1.1 wrote,
    // so a 1.1 reader (which skips chunk kinds it does not know) reads every event.
    let stripped = strip_names_chunks(&bytes);
    assert!(stripped.len() < bytes.len());
    assert_eq!(stripped, record(&without_names(&events), Some(&end())));
    // Repeated names cost little: each text is stored once per chunk.
    let per_event = bytes.len() as f64 / events.len() as f64;
    assert!(per_event <= 8.0, "{per_event:.2} bytes per event");
}

#[test]
fn a_format_1_1_file_without_names_still_reads() {
    let events = workload(50);
    let mut bytes = record(&events, Some(&end()));
    assert!(
        frame_offsets(&bytes)
            .iter()
            .all(|&at| bytes[at + 4] != format::ChunkKind::Names as u8),
        "a session without names writes no names chunk"
    );
    bytes[10..12].copy_from_slice(&1u16.to_le_bytes());
    let reader = Reader::new(&bytes[..]).unwrap();
    assert_eq!(reader.header().version, (1, 1));
    let (back, problems, end_read, _) = read_all(&bytes);
    assert_eq!((back, problems, end_read), (events, vec![], Some(end())));
}

#[test]
fn names_never_attach_to_another_chunk_when_theirs_is_lost() {
    let events = named_workload(20_000);
    let mut bytes = record(&events, Some(&end()));
    let frames = frame_offsets(&bytes);
    // Frames: names, events, names, events, …: damage the second events chunk.
    let kind = |at: usize| bytes[at + 4];
    let events_chunks: Vec<usize> = frames
        .iter()
        .copied()
        .filter(|&at| kind(at) == format::ChunkKind::Events as u8)
        .collect();
    let second = events_chunks[1];
    let its_names = frames[frames.iter().position(|&at| at == second).unwrap() - 1];
    assert_eq!(kind(its_names), format::ChunkKind::Names as u8);
    bytes[second + FRAME_HEADER + 10] ^= 0xff;
    let (back, problems, _, _) = read_all(&bytes);
    assert_eq!(
        problems,
        vec![
            Problem::CorruptChunk {
                offset: second as u64,
                reason: "checksum mismatch"
            },
            Problem::NamesLost {
                offset: its_names as u64,
                reason: "the events chunk they name is missing"
            }
        ]
    );
    // Every event that reads keeps its own name: none took the lost chunk's.
    let kept = back.iter().zip(&events).take_while(|(a, b)| a == b).count();
    let after = back.len() - kept;
    assert!(kept > 0 && after > 0);
    assert!(back[kept..] == events[events.len() - after..]);
}

/// Offsets of the chunk frames in a recording (for cutting and damaging it).
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    memchr::memmem::find_iter(bytes, &SYNC).collect()
}

fn any_event() -> impl Strategy<Value = HookEvent> {
    let kind = prop_oneof![
        (
            prop_oneof![
                Just(ResourceType::TOKIO_TASK),
                Just(ResourceType::TOKIO_BLOCKING),
                Just(ResourceType::TOKIO_LOCAL),
                "[a-zA-Z.]{0,12}".prop_map(|name| ResourceType::named(Cow::Owned(name))),
            ],
            any::<Option<u64>>(),
            any::<bool>(),
            proptest::option::of("[a-z:<>{} ]{0,16}"),
            proptest::option::of("src/[a-z]{1,6}\\.rs:[0-9]{1,3}:[0-9]{1,2}"),
        )
            .prop_map(|(resource_type, trigger_id, existing, name, location)| {
                HookKind::Init {
                    resource_type,
                    trigger_id,
                    existing,
                    name,
                    location,
                }
            }),
        any::<Option<u64>>().prop_map(|sched_ns| HookKind::Before { sched_ns }),
        (any::<Option<u64>>(), any::<bool>()).prop_map(|(waker_id, self_wake)| HookKind::Wake {
            waker_id,
            self_wake
        }),
        (
            any::<bool>(),
            proptest::option::of(proptest::collection::vec(await_frame(), 0..4))
        )
            .prop_map(|(completed, awaiting)| HookKind::After {
                completed,
                awaiting
            }),
        Just(HookKind::Resolve),
        Just(HookKind::Destroy),
    ];
    (
        kind,
        any::<u64>(),
        any::<u64>(),
        prop_oneof![Just(77u32), any::<u32>()],
        any::<u32>(),
    )
        .prop_map(|(kind, async_id, ts_ns, pid, tid)| HookEvent {
            kind,
            async_id,
            ts_ns,
            pid,
            tid,
        })
}

proptest! {
    #[test]
    fn any_event_stream_round_trips(events in prop::collection::vec(any_event(), 0..300)) {
        let (back, problems, end_read, truncated) = read_all(&record(&events, Some(&end())));
        prop_assert_eq!(back, events);
        prop_assert!(problems.is_empty());
        prop_assert_eq!(end_read, Some(end()));
        prop_assert!(!truncated);
    }

    #[test]
    fn damaged_bytes_never_panic_the_reader(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = record(&workload(50), Some(&end()));
        for (at, value) in flips {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        if let Ok(mut reader) = Reader::new(&bytes[..]) {
            while let Ok(Some(_)) = reader.next_event() {}
        }
    }
}

#[test]
fn header_keeps_the_session_info_live_sinks_saw() {
    let bytes = record(&[], Some(&end()));
    let reader = Reader::new(&bytes[..]).unwrap();
    assert_eq!(reader.header().session, session());
    assert_eq!(reader.header().version.0, FORMAT_MAJOR);
    assert_eq!(reader.header().tracer_version, env!("CARGO_PKG_VERSION"));
}

#[test]
fn busy_workload_takes_under_eight_bytes_per_event() {
    let events = workload(20_000);
    let bytes = record(&events, Some(&end()));
    assert!(frame_offsets(&bytes).len() > 2, "expected several chunks");
    let per_event = bytes.len() as f64 / events.len() as f64;
    assert!(per_event <= 8.0, "{per_event:.2} bytes per event");
    assert_eq!(read_all(&bytes).0, events);
}

#[test]
fn a_file_cut_anywhere_reads_back_its_complete_chunks_and_says_truncated() {
    let events = workload(20_000);
    let bytes = record(&events, Some(&end()));
    let frames = frame_offsets(&bytes);
    // Each events chunk: where it ends and how many events it holds.
    let chunks: Vec<(usize, usize)> = frames
        .windows(2)
        .map(|pair| {
            let count = u32::from_le_bytes(bytes[pair[0] + 9..pair[0] + 13].try_into().unwrap());
            (pair[1], count as usize)
        })
        .collect();
    let mut cuts = Vec::new();
    for &frame in &frames {
        cuts.extend([
            frame,
            frame + 1,
            frame + FRAME_HEADER,
            frame + FRAME_HEADER + 100,
        ]);
    }
    for cut in cuts.into_iter().filter(|&cut| cut < bytes.len()) {
        let complete: usize = chunks
            .iter()
            .filter(|(end, _)| *end <= cut)
            .map(|(_, count)| count)
            .sum();
        let (back, problems, end_read, truncated) = read_all(&bytes[..cut]);
        assert!(truncated && end_read.is_none(), "cut at {cut}");
        assert!(problems.is_empty(), "cut at {cut}: {problems:?}");
        assert_eq!(back[..], events[..complete], "cut at {cut}");
    }
}

#[test]
fn a_corrupt_chunk_is_reported_and_skipped_and_the_rest_reads() {
    let events = workload(20_000);
    let mut bytes = record(&events, Some(&end()));
    let frames = frame_offsets(&bytes);
    let second = frames[1];
    bytes[second + FRAME_HEADER + 10] ^= 0xff;
    let (back, problems, end_read, truncated) = read_all(&bytes);
    assert_eq!(
        problems,
        vec![Problem::CorruptChunk {
            offset: second as u64,
            reason: "checksum mismatch"
        }]
    );
    assert_eq!(end_read, Some(end()));
    assert!(!truncated);
    // Only the second chunk's events are missing: the first and later ones read.
    let kept = back.iter().zip(&events).take_while(|(a, b)| a == b).count();
    assert!(kept > 0 && kept < events.len());
    let after = back.len() - kept;
    assert!(after > 0);
    assert_eq!(back[kept..], events[events.len() - after..]);
}

#[test]
fn a_corrupt_chunk_length_does_not_hide_the_chunks_after_it() {
    let events = workload(20_000);
    let mut bytes = record(&events, Some(&end()));
    let second = frame_offsets(&bytes)[1];
    bytes[second + 7] = 0x7f;
    let (back, problems, end_read, _) = read_all(&bytes);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(end_read, Some(end()));
    assert_eq!(back.last(), events.last());
}

#[test]
fn a_newer_major_version_is_refused_naming_both_versions() {
    let mut bytes = record(&workload(3), Some(&end()));
    bytes[8..10].copy_from_slice(&(FORMAT_MAJOR + 1).to_le_bytes());
    let refusal = Reader::new(&bytes[..]).err().unwrap();
    assert!(matches!(refusal, Refusal::NewerVersion { .. }));
    let message = refusal.to_string();
    assert!(
        message.contains(&format!(
            "format version {}.{FORMAT_MINOR}",
            FORMAT_MAJOR + 1
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!("reads format version {FORMAT_MAJOR}.")),
        "{message}"
    );
}

#[test]
fn a_file_that_is_not_a_recording_is_named_so() {
    let refusal = Reader::new(&b"{\"event\":\"init\"}\n"[..]).err().unwrap();
    assert!(
        refusal.to_string().starts_with("not a tracer recording"),
        "{refusal}"
    );
    let refusal = Reader::new(&b""[..]).err().unwrap();
    assert!(refusal.to_string().contains("empty"), "{refusal}");
}

#[test]
fn chunks_close_on_flush_once_half_a_second_old() {
    let mut bytes = Vec::new();
    let mut recorder = Recorder::new(&mut bytes);
    recorder.begin(&session()).unwrap();
    recorder.event(&workload(1)[0]).unwrap();
    recorder.flush().unwrap();
    drop(recorder);
    assert!(frame_offsets(&bytes).is_empty(), "a fresh chunk stays open");

    let mut bytes = Vec::new();
    let mut recorder = Recorder::new(&mut bytes);
    recorder.begin(&session()).unwrap();
    recorder.event(&workload(1)[0]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    recorder.flush().unwrap();
    drop(recorder);
    let (back, _, _, truncated) = read_all(&bytes);
    assert_eq!(back.len(), 1);
    assert!(truncated);
}

fn temp_file(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tracer-unit-{tag}-{}", std::process::id()))
}

#[test]
fn recordings_are_private_and_never_overwritten_without_force() {
    let path = temp_file("private");
    let _ = std::fs::remove_file(&path);
    drop(create_file(&path, false).unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let error = create_file(&path, false).err().unwrap().to_string();
    assert!(
        error.contains("already exists") && error.contains("--force"),
        "{error}"
    );

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&path, b"old").unwrap();
    drop(create_file(&path, true).unwrap());
    let metadata = std::fs::metadata(&path).unwrap();
    assert_eq!(metadata.len(), 0);
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn events_of_a_1_1_file_read_as_before_and_1_3_wakes_and_waits_round_trip() {
    // A 1.1 `before` (tag 1: no flags), then a 1.1 `after` on the same thread.
    let old = [1u8, 10, 14, 6, 2 | (1 << 3), 4, 0];
    let mut cursor = format::Cursor::new(&old);
    let mut state = format::DeltaState::default();
    let before = format::decode_event(&mut cursor, &mut state, 9).unwrap();
    assert_eq!(before.kind, HookKind::Before { sched_ns: None });
    assert_eq!((before.ts_ns, before.async_id, before.tid), (5, 7, 3));
    let after = format::decode_event(&mut cursor, &mut state, 9).unwrap();
    assert_eq!(
        after.kind,
        HookKind::After {
            completed: false,
            awaiting: None
        }
    );
    assert_eq!(cursor.len(), 0);

    let new = [
        HookKind::Before {
            sched_ns: Some(12_345),
        },
        HookKind::Wake {
            waker_id: Some(0),
            self_wake: true,
        },
        HookKind::Wake {
            waker_id: None,
            self_wake: false,
        },
    ];
    let mut bytes = Vec::new();
    let mut state = format::DeltaState::default();
    for kind in &new {
        let event = HookEvent {
            kind: kind.clone(),
            async_id: 4,
            ts_ns: 100,
            pid: 9,
            tid: 2,
        };
        format::encode_event(&mut bytes, &mut state, 9, &event);
    }
    let mut cursor = format::Cursor::new(&bytes);
    let mut state = format::DeltaState::default();
    for kind in &new {
        let event = format::decode_event(&mut cursor, &mut state, 9).unwrap();
        assert_eq!(&event.kind, kind);
    }
}

#[test]
fn init_flags_on_other_kinds_are_still_refused() {
    // `after` (2) with bit 6; `before` (1) with bit 5.
    for tag in [2u8 | (1 << 6), 1 | (1 << 5)] {
        let bytes = [tag, 0, 0, 0, 0];
        let mut cursor = format::Cursor::new(&bytes);
        let mut state = format::DeltaState::default();
        assert!(
            format::decode_event(&mut cursor, &mut state, 9).is_err(),
            "{tag:#x}"
        );
    }
}

#[test]
fn a_format_1_4_chains_chunk_reads_as_before_and_1_5_fork_trees_round_trip() {
    use crate::model::event::{AwaitBranch, AwaitFrame};
    let chain = vec![
        AwaitFrame::Await {
            function: "a::f".into(),
            at: "src/x.rs:1".into(),
        },
        AwaitFrame::Future { future: "S".into() },
    ];
    // A 1.4 chunk, byte by byte: the events chunk's CRC, three texts, then
    // the `after` at index 2: two frames (await, future) and their texts.
    let mut v14 = vec![1, 2, 3, 4, 3];
    for text in ["a::f", "src/x.rs:1", "S"] {
        v14.push(text.len() as u8);
        v14.extend_from_slice(text.as_bytes());
    }
    v14.extend_from_slice(&[2, 2, 0, 1, 2, 2, 3, 0]);
    let flat = format::Chains {
        events_crc: 0x0403_0201,
        afters: vec![(2, chain.clone())],
    };
    assert_eq!(format::decode_chains(&v14, 1).unwrap(), flat);
    assert_eq!(
        format::encode_chains(&flat),
        v14,
        "1.5 writes chains as 1.4 did"
    );

    let tree = format::Chains {
        events_crc: 7,
        afters: vec![(
            0,
            vec![
                chain[0].clone(),
                AwaitFrame::Fork {
                    future: "tokio::join!".into(),
                    branches: vec![
                        AwaitBranch {
                            branch: 1,
                            awaiting: chain.clone(),
                        },
                        AwaitBranch {
                            branch: 2,
                            awaiting: vec![AwaitFrame::Fork {
                                future: "tokio::select!".into(),
                                branches: vec![AwaitBranch {
                                    branch: 0,
                                    awaiting: chain.clone(),
                                }],
                            }],
                        },
                    ],
                },
            ],
        )],
    };
    let bytes = format::encode_chains(&tree);
    assert_eq!(format::decode_chains(&bytes, 1).unwrap(), tree);
}

#[test]
fn forks_nested_deeper_than_any_walk_are_corruption() {
    use crate::model::event::{AwaitBranch, AwaitFrame};
    let mut frames = vec![AwaitFrame::Future { future: "S".into() }];
    for _ in 0..20 {
        frames = vec![AwaitFrame::Fork {
            future: "tokio::join!".into(),
            branches: vec![AwaitBranch {
                branch: 0,
                awaiting: frames,
            }],
        }];
    }
    let bytes = format::encode_chains(&format::Chains {
        events_crc: 0,
        afters: vec![(0, frames)],
    });
    assert_eq!(
        format::decode_chains(&bytes, 1),
        Err(format::Malformed("forks nested too deep"))
    );
}
