//! Fuzzes the recording reader with the very modules `tracer` compiles: any bytes
//! must give events, reported damage or a refusal, never a panic. The first byte
//! picks what the rest is: a whole file, chunks after a valid header (to get past
//! the magic and the header checksum), or an events payload (to get past the
//! chunk checksum).

#![no_main]

#[allow(dead_code)]
#[path = "../../tracer-cli/src/target/crate_version.rs"]
mod crate_version;
#[allow(dead_code)]
#[path = "../../tracer-cli/src/model/event.rs"]
mod event;
#[allow(dead_code)]
#[path = "../../tracer-cli/src/target/mapped_file.rs"]
mod mapped_file;
#[allow(dead_code)]
#[path = "../../tracer-cli/src/sinks/output.rs"]
mod output;
#[allow(dead_code, unused_imports)]
#[path = "../../tracer-cli/src/sinks/recording/mod.rs"]
mod recording;

// Where tracer-cli keeps these modules, so their `crate::…` paths resolve.
mod model {
    pub(crate) use super::event;
}
mod sinks {
    pub(crate) use super::{output, recording};
}
mod target {
    pub(crate) use super::{crate_version, mapped_file};
}

use libfuzzer_sys::fuzz_target;
use recording::{
    format::{self, Cursor, DeltaState, FORMAT_MAJOR, FORMAT_MINOR, Header},
    reader::Reader,
};

/// Reads every event and problem of `bytes` as a recording.
fn read(bytes: &[u8]) {
    if let Ok(mut reader) = Reader::new(bytes) {
        while let Ok(Some(_)) = reader.next_event() {}
        let _ = reader.take_problems();
        let _ = reader.truncated();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => read(rest),
        1 => {
            let mut bytes = format::encode_header(&Header {
                version: (FORMAT_MAJOR, FORMAT_MINOR),
                tracer_version: "fuzz".to_owned(),
                session: output::SessionInfo {
                    pid: 1,
                    exe: "/fuzz".into(),
                    runtime: "tokio".to_owned(),
                    start_ns: 0,
                    start_unix_ns: 0,
                },
                build_id: Vec::new(),
                runtime_version: String::new(),
            });
            bytes.extend_from_slice(rest);
            read(&bytes);
        }
        _ => {
            let mut cursor = Cursor::new(rest);
            let mut state = DeltaState::default();
            while format::decode_event(&mut cursor, &mut state, 1).is_ok() {}
            let _ = format::decode_end(rest);
            let count = rest.first().copied().unwrap_or_default().into();
            let _ = format::decode_names(rest, count);
        }
    }
});
