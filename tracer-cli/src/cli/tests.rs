//! The command line as users type it: what parses and what is refused.

use clap::Parser as _;

use super::{Cli, Command};

#[test]
fn top_watches_exactly_one_of_a_pid_a_recording_or_a_command() {
    for args in [
        &["tracer", "top", "-p", "42"][..],
        &["tracer", "top", "session.trace", "--step", "500ms"],
        &[
            "tracer", "top", "--retain", "1m", "--", "./app", "--port", "1",
        ],
    ] {
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(matches!(cli.command, Command::Top(_)), "{args:?}");
    }
    for args in [
        &["tracer", "top"][..],
        &["tracer", "top", "-p", "42", "session.trace"],
        &["tracer", "top", "-p", "42", "--", "./app"],
        &["tracer", "top", "session.trace", "--", "./app"],
        &["tracer", "top", "-p", "0"],
        &["tracer", "top", "-p", "42", "--retain", "soon"],
    ] {
        let error = Cli::try_parse_from(args)
            .err()
            .unwrap_or_else(|| panic!("{args:?} parsed"));
        assert_eq!(error.exit_code(), 2, "{args:?}");
    }
}

#[test]
fn a_command_keeps_its_own_flags() {
    let cli = Cli::try_parse_from(["tracer", "top", "--", "./app", "-p", "7"]).unwrap();
    let Command::Top(args) = cli.command else {
        panic!("not top");
    };
    assert_eq!(args.command, ["./app", "-p", "7"]);
    assert_eq!(args.pid, None);
}
