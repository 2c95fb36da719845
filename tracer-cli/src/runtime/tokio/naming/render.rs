//! Turns a future type as the compiler spells it (in a symbol, or in
//! `std::any::type_name`) into the name users read: `app::handle::{{closure}}`
//! (the state machine of `async fn handle`) is `app::handle`, and
//! `core::pin::Pin<alloc::boxed::Box<app::worker<u64>::{{closure}}>>` is
//! `app::worker<u64>`.
//!
//! The rules, applied to the whole type and to every generic argument in it:
//! - `Pin<Box<X>>` and `Box<X>` are `X` (Tokio boxes futures over 16 KB, and
//!   programs box their own);
//! - `alloc::alloc::Global`, the default allocator argument, is dropped;
//! - a path ending in `::{{closure}}` (an `async fn`'s or an async block's state
//!   machine: legacy symbols do not tell the two apart) ends at the function that
//!   holds it: `app::main::{{closure}}` is `app::main`;
//! - a `{{closure}}` that does not end a path is written `{closure}`;
//! - v0 symbols' `{closure#0}`, `{async_fn_env#0}` and `{async_block_env#0}` read
//!   as the legacy forms do, so both manglings give one name.
//!
//! Wrappers keep their own path, so `tracing::instrument::Instrumented<app::handle>`
//! shows both the wrapper and the code it wraps.

/// What kind of task a future type says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FutureKind {
    /// An ordinary future.
    Future,
    /// Tokio's `BlockingTask<F>`: a `spawn_blocking` closure (or a worker launcher).
    Blocking,
}

/// Tokio's wrapper of a `spawn_blocking` closure.
const BLOCKING_TASK: &str = "tokio::runtime::blocking::task::BlockingTask";

/// The user-facing name of the future type `future`, and whether it is a
/// blocking closure (named by the closure it runs).
pub fn user_name(future: &str) -> (String, FutureKind) {
    let future = canonical(future);
    let tree = parse(&future);
    if tree.path == BLOCKING_TASK
        && let [inner] = tree.args.as_slice()
    {
        return (render(inner), FutureKind::Blocking);
    }
    (render(&tree), FutureKind::Future)
}

/// A type string with manglings' differences removed: no `::<` turbofish, one
/// space after each comma, v0's numbered closures as legacy `{{closure}}`, and
/// v0's inherent-impl paths (`<app::Server>::serve`) as legacy ones
/// (`app::Server::serve`).
pub fn canonical(ty: &str) -> String {
    let mut out = ty.replace("::<", "<").replace(", ", ",").replace(',', ", ");
    out = without_inherent_brackets(&out);
    for env in ["{async_fn_env#", "{async_block_env#", "{closure#"] {
        while let Some(start) = out.find(env) {
            let Some(len) = out[start..].find('}') else {
                break;
            };
            out.replace_range(start..start + len + 1, "{{closure}}");
        }
    }
    out
}

/// `<X>::` where a path starts, `X` not a trait cast (`<X as T>::`), written `X::`.
fn without_inherent_brackets(text: &str) -> String {
    let mut out = text.to_owned();
    let mut from = 0;
    while let Some(open) = out[from..].find('<').map(|at| at + from) {
        let starts_path = open == 0 || out[..open].ends_with(['<', ' ', '(', '[', '&', '*']);
        let close = starts_path
            .then(|| {
                let mut depth = 0usize;
                for (at, c) in out[open..].char_indices() {
                    match c {
                        '<' => depth += 1,
                        '>' => {
                            depth -= 1;
                            if depth == 0 {
                                return Some(open + at);
                            }
                        }
                        _ => {}
                    }
                }
                None
            })
            .flatten();
        match close {
            Some(close)
                if out[close + 1..].starts_with("::") && !out[open..close].contains(" as ") =>
            {
                out.replace_range(close..=close, "");
                out.replace_range(open..=open, "");
                from = open;
            }
            _ => from = open + 1,
        }
    }
    out
}

/// A type as a path and its generic arguments, with what follows the arguments
/// (`app::f<u64>::{{closure}}`: path `app::f`, args `[u64]`, suffix `::{{closure}}`).
#[derive(Debug, PartialEq, Eq)]
struct TypeTree {
    path: String,
    args: Vec<TypeTree>,
    suffix: String,
}

/// Parses a canonical type string; text it cannot split stays in `path`.
fn parse(text: &str) -> TypeTree {
    let text = text.trim();
    let Some(open) = text.find('<') else {
        return TypeTree {
            path: text.to_owned(),
            args: Vec::new(),
            suffix: String::new(),
        };
    };
    let mut depth = 0usize;
    let mut args = Vec::new();
    let mut start = open + 1;
    let mut close = None;
    for (index, c) in text.char_indices().skip(open) {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    args.push(parse(&text[start..index]));
                    close = Some(index);
                    break;
                }
            }
            ',' if depth == 1 => {
                args.push(parse(&text[start..index]));
                start = index + 1;
            }
            _ => {}
        }
    }
    let Some(close) = close else {
        return TypeTree {
            path: text.to_owned(),
            args: Vec::new(),
            suffix: String::new(),
        };
    };
    TypeTree {
        path: text[..open].to_owned(),
        args,
        suffix: text[close + 1..].to_owned(),
    }
}

/// Writes a type back with the naming rules applied.
fn render(tree: &TypeTree) -> String {
    let unwrapped = matches!(
        tree.path.as_str(),
        "core::pin::Pin" | "alloc::boxed::Box" | "std::boxed::Box" | "std::pin::Pin"
    ) && tree.suffix.is_empty();
    let args: Vec<&TypeTree> = tree
        .args
        .iter()
        .filter(|arg| arg.path != "alloc::alloc::Global" || !arg.args.is_empty())
        .collect();
    if unwrapped && let [inner] = args.as_slice() {
        return render(inner);
    }
    let mut out = tree.path.clone();
    if !args.is_empty() {
        out.push('<');
        out.push_str(
            &args
                .iter()
                .map(|arg| render(arg))
                .collect::<Vec<_>>()
                .join(", "),
        );
        out.push('>');
    }
    out.push_str(&tree.suffix);
    let out = match out.strip_suffix("::{{closure}}") {
        Some(holder) if !holder.is_empty() => holder.to_owned(),
        _ => out,
    };
    out.replace("{{closure}}", "{closure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(ty: &str) -> String {
        user_name(ty).0
    }

    #[test]
    fn async_fn_and_async_block_state_machines_are_named_by_their_function() {
        assert_eq!(name("app::handle::{{closure}}"), "app::handle");
        assert_eq!(
            name("app::main::{{closure}}::{{closure}}"),
            "app::main::{closure}"
        );
        assert_eq!(
            name("app::Server::serve::{{closure}}"),
            "app::Server::serve"
        );
    }

    #[test]
    fn generics_are_kept_and_boxes_and_the_global_allocator_are_not() {
        assert_eq!(name("app::worker<u64>::{{closure}}"), "app::worker<u64>");
        assert_eq!(
            name("core::pin::Pin<alloc::boxed::Box<app::big::{{closure}},alloc::alloc::Global>>"),
            "app::big"
        );
        assert_eq!(
            name("app::pair<alloc::string::String,u8>::{{closure}}"),
            "app::pair<alloc::string::String, u8>"
        );
    }

    #[test]
    fn wrappers_stay_visible_with_the_wrapped_code_readable() {
        assert_eq!(
            name("tracing::instrument::Instrumented<app::handle::{{closure}}>"),
            "tracing::instrument::Instrumented<app::handle>"
        );
    }

    #[test]
    fn blocking_tasks_are_named_by_their_closure() {
        assert_eq!(
            user_name("tokio::runtime::blocking::task::BlockingTask<app::main::{{closure}}>"),
            ("app::main".to_owned(), FutureKind::Blocking)
        );
    }

    #[test]
    fn v0_and_legacy_spellings_give_one_name() {
        let legacy = "app::worker<u64>::{{closure}}";
        let v0 = "app::worker::<u64>::{async_fn_env#0}";
        assert_eq!(name(legacy), name(v0));
        assert_eq!(
            name("core::pin::Pin::<alloc::boxed::Box::<app::main::{async_block_env#0}>>"),
            "app::main"
        );
    }

    #[test]
    fn v0_inherent_methods_read_as_legacy_ones() {
        assert_eq!(
            name("<app::Server>::serve::{async_fn_env#0}"),
            name("app::Server::serve::{{closure}}")
        );
        assert_eq!(
            name("app::Wrap<<app::Server>::serve::{closure#0}>"),
            "app::Wrap<app::Server::serve>"
        );
        assert_eq!(
            name("<app::Server as app::Serve>::serve::{closure#0}"),
            "<app::Server as app::Serve>::serve"
        );
    }

    #[test]
    fn hand_written_futures_and_plain_types_are_themselves() {
        assert_eq!(name("app::Ticker"), "app::Ticker");
        assert_eq!(
            name("core::future::pending::Pending<()>"),
            "core::future::pending::Pending<()>"
        );
    }
}
