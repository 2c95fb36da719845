//! Tests on real Go binaries: `testdata/starts.go` built with every supported
//! Go release, default, `-buildmode=pie`, `-ldflags=-w` (no DWARF) and
//! `-ldflags='-s -w'` (stripped). Start-function names and locations are
//! checked against Go's own execution tracer: the program reports each
//! goroutine's id and start PC and writes a `runtime/trace`, which Go 1.23's
//! `go tool trace -d=1` dumps (it reads the traces of every release).
//!
//! Go is required: a missing toolchain fails the test, naming `cargo xtask setup`.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

use object::{Object as _, ObjectSymbol as _};

use super::{
    functions::{self, GoFunctions},
    image::{GoImage, SUPPORTED_MINORS},
    layout::{self, LayoutSource},
    wait_reasons::{self, MaskSource},
};
use crate::{runtime::tokio::naming::drop_glue, target::image::Image};

/// The fixture's source.
const SOURCE: &str = include_str!("testdata/starts.go");
/// Its `getg`.
const GETG: &str = include_str!("testdata/starts_amd64.s");

/// How a fixture is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Variant {
    Default,
    Pie,
    NoDwarf,
    Stripped,
}

const VARIANTS: [Variant; 4] = [
    Variant::Default,
    Variant::Pie,
    Variant::NoDwarf,
    Variant::Stripped,
];

impl Variant {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Variant::Default => &[],
            Variant::Pie => &["-buildmode=pie"],
            Variant::NoDwarf => &["-ldflags=-w"],
            Variant::Stripped => &["-ldflags=-s -w"],
        }
    }
}

/// `go` of Go 1.`minor`, or a failure saying how to install it.
fn go_tool(minor: u32) -> PathBuf {
    let path = PathBuf::from(format!("/usr/lib/go-1.{minor}/bin/go"));
    assert!(
        path.exists(),
        "Go 1.{minor} is not installed ({} is missing): run `cargo xtask setup`, which installs the Go toolchains the tests need \
         (Debian: golang-1.19-go from main, golang-1.21-go, golang-1.22-go and golang-1.23-go from bookworm-backports)",
        path.display()
    );
    path
}

/// Where the fixtures are built: beside the test binary (`target/debug/`), so
/// they and Go's build cache survive between runs.
fn work_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let target = exe.parent().and_then(Path::parent).expect("target/debug");
    target.join("go-image-tests")
}

/// Environment for a `go` command that reaches nothing outside.
fn go_command(minor: u32, dir: &Path) -> Command {
    let work = work_dir();
    let mut command = Command::new(go_tool(minor));
    command
        .current_dir(dir)
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", work.join("cache"))
        .env("GOPATH", work.join("gopath"));
    command
}

/// Runs `command` (`what`, in messages), failing with its stderr unless it succeeds.
fn run(command: &mut Command, what: &str) -> std::process::Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Builds (once, and again only when the source changes) the fixture with Go
/// 1.`minor` in `variant`, returning the binary's path.
fn fixture(minor: u32, variant: Variant) -> PathBuf {
    static BUILT: Mutex<BTreeMap<(u32, Variant), PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = built.get(&(minor, variant)) {
        return path.clone();
    }
    let dir = work_dir().join(format!("go1.{minor}-{variant:?}"));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join("starts");
    let stamp = dir.join("sources.stamp");
    let sources = format!("{SOURCE}{GETG}");
    let fresh = std::fs::read_to_string(&stamp).is_ok_and(|old| old == sources) && binary.exists();
    if !fresh {
        std::fs::write(dir.join("main.go"), SOURCE).unwrap();
        std::fs::write(dir.join("starts_amd64.s"), GETG).unwrap();
        std::fs::write(dir.join("go.mod"), "module example.com/starts\n\ngo 1.19\n").unwrap();
        run(
            go_command(minor, &dir)
                .arg("build")
                .args(variant.flags())
                .args(["-o", "starts", "."]),
            &format!("go1.{minor} build {variant:?}"),
        );
        std::fs::write(&stamp, sources).unwrap();
    }
    built.insert((minor, variant), binary.clone());
    binary
}

/// Runs `f` on the parsed fixture.
fn with_fixture<T>(
    minor: u32,
    variant: Variant,
    f: impl FnOnce(&Path, &object::File<'_>) -> T,
) -> T {
    let path = fixture(minor, variant);
    let data = std::fs::read(&path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    f(&path, &file)
}

/// The line of `SOURCE` that starts with `prefix` (1-based).
fn source_line(prefix: &str) -> u32 {
    let index = SOURCE
        .lines()
        .position(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starts with {prefix:?}"));
    u32::try_from(index + 1).unwrap()
}

/// The address of the function `name` in the symbol table.
fn symbol_address(file: &object::File<'_>, name: &str) -> u64 {
    file.symbols()
        .find(|s| s.name() == Ok(name))
        .unwrap_or_else(|| panic!("no symbol {name}"))
        .address()
}

#[test]
fn every_build_is_recognised_and_stripped_ones_refused() {
    for minor in SUPPORTED_MINORS {
        for variant in VARIANTS {
            with_fixture(minor, variant, |path, file| {
                let result = GoImage::inspect(file, path);
                if variant == Variant::Stripped {
                    let error = format!("{:#}", result.unwrap_err());
                    assert!(
                        error.contains("is stripped: tracer finds Go's runtime functions by name in the symbol table")
                            && error.contains("drop `-s` from -ldflags"),
                        "go1.{minor}: {error}"
                    );
                    return;
                }
                let image = result.unwrap();
                assert_eq!(image.version.minor, minor, "{}", image.version.text);
                assert!(image.version.text.starts_with(&format!("go1.{minor}.")));
                assert_eq!(
                    image.position_independent,
                    variant == Variant::Pie,
                    "go1.{minor} {variant:?}"
                );
                assert_eq!(
                    image.has_dwarf,
                    variant != Variant::NoDwarf,
                    "go1.{minor} {variant:?}"
                );
                assert!(image.has_symtab);
            });
        }
    }
}

#[test]
fn a_rust_binary_is_not_a_go_binary() {
    let exe = std::env::current_exe().unwrap();
    let data = std::fs::read(&exe).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let error = GoImage::inspect(&file, &exe).unwrap_err().to_string();
    assert!(error.contains("is not a Go binary"), "{error}");
}

#[test]
fn layouts_from_dwarf_equal_the_tables_and_the_tables_serve_without_dwarf() {
    for minor in SUPPORTED_MINORS {
        for variant in [Variant::Default, Variant::Pie, Variant::NoDwarf] {
            with_fixture(minor, variant, |path, file| {
                let image = GoImage::inspect(file, path).unwrap();
                let resolved = layout::resolve(&image, file).unwrap();
                let expected = if variant == Variant::NoDwarf {
                    LayoutSource::Table
                } else {
                    LayoutSource::Dwarf
                };
                assert_eq!(resolved.source, expected, "go1.{minor} {variant:?}");
                assert_eq!(resolved.mismatches, vec![], "go1.{minor} {variant:?}");
                assert_eq!(
                    Some(resolved.layout),
                    layout::table(minor),
                    "go1.{minor} {variant:?}"
                );
            });
        }
    }
}

#[test]
fn an_unknown_release_without_dwarf_is_refused_by_name() {
    with_fixture(23, Variant::NoDwarf, |path, file| {
        let mut image = GoImage::inspect(file, path).unwrap();
        image.version = super::image::GoVersion::parse("go1.20.14").unwrap();
        let error = layout::resolve(&image, file).unwrap_err().to_string();
        assert!(
            error.contains("go1.20.14") && error.contains("Go 1.19, 1.21, 1.22 and 1.23"),
            "{error}"
        );
    });
}

#[test]
fn wait_reason_masks_read_from_the_binary_equal_the_tables() {
    for minor in SUPPORTED_MINORS {
        for variant in [Variant::Default, Variant::Pie] {
            with_fixture(minor, variant, |_, file| {
                let image = Image::new(file);
                let strings = wait_reasons::reason_strings(file, &image).unwrap();
                assert_eq!(strings[0], "", "go1.{minor}");
                assert_eq!(strings[1], "GC assist marking", "go1.{minor}");
                let reasons = wait_reasons::wait_reasons(file, &image, minor).unwrap();
                assert_eq!(reasons.source, MaskSource::Binary);
                assert_eq!(
                    Some(reasons.round_trip_mask),
                    wait_reasons::table(minor),
                    "go1.{minor} {variant:?}: {strings:?}"
                );
                assert_eq!(reasons.set_before_cas, minor >= 21);
            });
        }
    }
}

#[test]
fn probe_sites_are_found_with_their_file_offsets() {
    for minor in SUPPORTED_MINORS {
        for variant in [Variant::Default, Variant::Pie] {
            let path = fixture(minor, variant);
            let data = std::fs::read(&path).unwrap();
            let file = object::File::parse(&*data).unwrap();
            let image = Image::new(&file);
            let sites = functions::probe_symbols(&file).unwrap();
            for site in [
                &sites.casgstatus,
                &sites.newproc1,
                &sites.runqput,
                &sites.preempt_park,
            ] {
                assert_eq!(site.address, symbol_address(&file, site.name));
                let at_offset = &data[usize::try_from(site.file_offset).unwrap()..][..16];
                assert_eq!(
                    Some(at_offset),
                    image.bytes(site.address, 16),
                    "go1.{minor} {}",
                    site.name
                );
            }
            // The fixture does not use iter.Pull, so the linker leaves coroswitch_m out.
            assert_eq!(sites.coroswitch_m, None);
        }
    }
}

#[test]
fn locations_from_dwarf_equal_the_function_tables() {
    for minor in SUPPORTED_MINORS {
        with_fixture(minor, Variant::Default, |_, file| {
            let image = Image::new(file);
            let functions = GoFunctions::new(file, &image).unwrap();
            let declarations = functions::declarations(file);
            let mut compared = 0;
            for func in functions
                .pclntab()
                .funcs()
                .filter(|f| f.name.starts_with("main."))
            {
                let Some(dwarf) = declarations.get(&func.entry) else {
                    continue;
                };
                assert_eq!(
                    Some(dwarf),
                    functions.pclntab().entry_location(&func).as_ref(),
                    "go1.{minor} {}",
                    func.name
                );
                compared += 1;
            }
            assert!(
                compared >= 10,
                "go1.{minor}: only {compared} functions compared"
            );
            let handle = functions
                .start_function(symbol_address(file, "main.handle"))
                .unwrap();
            let (source_file, line) = handle.location.unwrap();
            assert!(source_file.ends_with("/main.go"), "{source_file}");
            assert_eq!(line, source_line("func handle("));
            assert!(!handle.runtime_internal && handle.wrapper.is_none());
        });
    }
}

/// Each goroutine of a run of the fixture under `runtime/trace`: its id, its
/// `g.startpc` (a file virtual address) and Go's tracer's name and file:line
/// for it.
fn traced_goroutines(minor: u32, variant: Variant) -> Vec<(u64, u64, String, (String, u32))> {
    let binary = fixture(minor, variant);
    let dir = binary.parent().unwrap().to_owned();
    let trace = dir.join("run.trace");
    let startpc = layout::table(minor).unwrap().g_startpc;
    let ran = run(
        Command::new(&binary).arg(&trace).arg(startpc.to_string()),
        &format!("{}", binary.display()),
    );
    let dump = run(
        go_command(23, &dir)
            .args(["tool", "trace", "-d=1"])
            .arg(&trace),
        "go tool trace -d=1",
    );
    let names = trace_names(&String::from_utf8_lossy(&dump.stdout));
    let data = std::fs::read(&binary).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let mut bias = 0;
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&ran.stdout).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
        match fields.as_slice() {
            ["anchor", address] => bias = hex(address) - symbol_address(&file, "main.main"),
            ["start", goid, pc] => {
                let goid: u64 = goid.parse().unwrap();
                let (name, location) = names
                    .get(&goid)
                    .cloned()
                    .unwrap_or_else(|| panic!("goroutine {goid} not in the trace"));
                found.push((goid, hex(pc) - bias, name, location));
            }
            _ => panic!("unexpected output {line:?}"),
        }
    }
    found
}

/// Goroutine id → the start function and file:line of its creation event in
/// `go tool trace -d=1` output.
fn trace_names(dump: &str) -> HashMap<u64, (String, (String, u32))> {
    let lines: Vec<&str> = dump.lines().collect();
    let mut names = HashMap::new();
    for (index, line) in lines.iter().enumerate() {
        if !line.contains("NotExist->Runnable") {
            continue;
        }
        let goid = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("GoID="))
            .and_then(|id| id.parse().ok());
        let (Some(goid), Some(frame), Some(place)) =
            (goid, lines.get(index + 2), lines.get(index + 3))
        else {
            continue;
        };
        let name = frame
            .trim()
            .split(" @ ")
            .next()
            .unwrap_or_default()
            .to_owned();
        let Some((path, line)) = place.trim().rsplit_once(':') else {
            continue;
        };
        names.insert(
            goid,
            (name, (path.to_owned(), line.parse().unwrap_or_default())),
        );
    }
    names
}

#[test]
fn start_functions_are_named_as_gos_tracer_names_them() {
    go_tool(23);
    let mut total = 0;
    for minor in SUPPORTED_MINORS {
        for variant in [Variant::Default, Variant::Pie, Variant::NoDwarf] {
            let goroutines = traced_goroutines(minor, variant);
            assert_eq!(
                goroutines.len(),
                10,
                "go1.{minor} {variant:?}: {goroutines:?}"
            );
            let data = std::fs::read(fixture(minor, variant)).unwrap();
            let file = object::File::parse(&*data).unwrap();
            let image = Image::new(&file);
            let functions = GoFunctions::new(&file, &image).unwrap();
            assert_eq!(functions.has_dwarf_locations(), variant != Variant::NoDwarf);
            for (goid, pc, name, location) in goroutines {
                let start = functions.start_function(pc).unwrap();
                assert_eq!(
                    (&start.name, start.location.as_ref()),
                    (&name, Some(&location)),
                    "go1.{minor} {variant:?} goroutine {goid}: {start:?}"
                );
                assert!(!start.runtime_internal);
                total += 1;
            }
        }
    }
    eprintln!(
        "start functions: {total} of {total} goroutines named and located as Go's tracer does"
    );
}

/// Runtime functions compiled code calls on its own (stack growth, defers,
/// write barriers, panics, allocation): not what a wrapper wraps.
const COMPILER_HELPERS: [&str; 8] = [
    "runtime.morestack",
    "runtime.deferreturn",
    "runtime.deferproc",
    "runtime.gcWriteBarrier",
    "runtime.panic",
    "runtime.wb",
    "runtime.newobject",
    "runtime.typedmemmove",
];

/// Measures the alternative to `FUNCDATA_WrapInfo`: naming a wrapper by the one
/// function it calls directly (decoded with iced-x86).
#[test]
fn wrapinfo_names_wrappers_that_decoding_calls_would_not() {
    for minor in SUPPORTED_MINORS {
        with_fixture(minor, Variant::Default, |_, file| {
            let image = Image::new(file);
            let functions = GoFunctions::new(file, &image).unwrap();
            let table = functions.pclntab();
            // (all wrappers, of which decoding agrees), for the whole binary and for main.
            let mut counts = [(0, 0); 2];
            for func in table.funcs() {
                let Some(wrapped) = table.wrapped(&func) else {
                    continue;
                };
                let calls: Vec<u64> = drop_glue::direct_calls(&image, func.entry)
                    .into_iter()
                    .filter(|target| {
                        table.func_at(*target).is_some_and(|f| {
                            !COMPILER_HELPERS.iter().any(|h| f.name.starts_with(h))
                        })
                    })
                    .collect();
                let agrees = usize::from(calls == [wrapped]);
                for (index, count) in counts.iter_mut().enumerate() {
                    if index == 0 || func.name.starts_with("main.") {
                        *count = (count.0 + 1, count.1 + agrees);
                    }
                }
                let target = table.func_at(wrapped).unwrap();
                assert!(
                    table.wrapped(&target).is_none(),
                    "{} wraps a wrapper",
                    func.name
                );
            }
            let [(wrappers, agree), (main_wrappers, main_agree)] = counts;
            eprintln!(
                "go1.{minor}: decoding the one direct call names {agree} of {wrappers} wrappers right ({main_agree} of {main_wrappers} in package main)"
            );
            assert!(wrappers > 0, "go1.{minor}: no wrapper found");
        });
    }
}
