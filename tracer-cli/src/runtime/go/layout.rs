//! Where the Go probes find what they read in the runtime's structures: a
//! goroutine's id, status, wait reason, parent and start PC in `runtime.g`,
//! the thread's running goroutine in `runtime.m`, the code pointer of a
//! `runtime.funcval`. These move between Go releases (`g.goid` is at 152 in Go
//! 1.19 and 160 in 1.23), so reading them at fixed offsets would decode
//! garbage on the wrong release.
//!
//! DWARF says where each field is when the binary has it; without it
//! (`-ldflags=-w`) a table per supported release gives them, filled from the
//! DWARF of binaries built here with each release (Go 1.19.8, 1.21.13, 1.22.12,
//! 1.23.5; the tests check the table against DWARF on every run). When both
//! exist DWARF wins, and any field where the table disagrees is reported: a
//! release tracer was not checked on that changed the runtime.

use std::collections::HashMap;

use anyhow::bail;

use super::image::{GoImage, supported_list};
use crate::target::dwarf::{self, Reader};

/// Byte offsets of the runtime fields the Go probes read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoLayout {
    /// `g.goid`: the goroutine id users see (`async_id`).
    pub g_goid: u64,
    /// `g.m`: the thread (M) the goroutine runs on; with [`Self::m_curg`] it
    /// finds the running goroutine from R14 (the current g, g0 on the system stack).
    pub g_m: u64,
    /// `g.atomicstatus`: the goroutine's status (`_Grunning`, `_Gwaiting`, …).
    pub g_atomicstatus: u64,
    /// `g.waitreason`: why a waiting goroutine waits (one byte).
    pub g_waitreason: u64,
    /// `g.parentGoid` (Go 1.21+): the creating goroutine's id; `None` before,
    /// where the parent is read from `newproc1`'s `callergp` argument.
    pub g_parent_goid: Option<u64>,
    /// `g.startpc`: the PC of the goroutine's start function, which names it.
    pub g_startpc: u64,
    /// `m.curg`: the user goroutine running on the thread.
    pub m_curg: u64,
    /// `funcval.fn`: the code pointer of the closure `newproc1` receives.
    pub funcval_fn: u64,
    /// `m.p`: the P the thread holds; a syscall that ends on another P (or on
    /// its own, taken and given back) ended the goroutine's run.
    pub m_p: u64,
    /// `m.syscalltick` (a u32): with [`Self::p_syscalltick`], tells whether the
    /// P was taken during the syscall.
    pub m_syscalltick: u64,
    /// `p.syscalltick` (a u32).
    pub p_syscalltick: u64,
}

/// Where a layout came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutSource {
    /// The binary's own DWARF.
    Dwarf,
    /// The table of its Go release ([`table`]).
    Table,
}

/// A field where the binary's DWARF and the release's table disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The field, as Go names it ("g.goid").
    pub field: &'static str,
    /// Its offset in the binary's DWARF (`None`: DWARF has no such field).
    pub dwarf: Option<u64>,
    /// Its offset in the table (`None`: the table has no such field).
    pub table: Option<u64>,
}

/// The layout tracer uses for a binary, and how far its sources agree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedLayout {
    /// The offsets to give the BPF programs.
    pub layout: GoLayout,
    /// Where they came from.
    pub source: LayoutSource,
    /// Fields where DWARF and the table disagree (DWARF was used): worth a
    /// warning, since the release's runtime is not the one tracer was checked on.
    pub mismatches: Vec<Mismatch>,
}

/// The layout of Go 1.`minor`, measured on this machine's builds of each
/// release; `None` for a release not in [`super::image::SUPPORTED_MINORS`].
pub fn table(minor: u32) -> Option<GoLayout> {
    let base = GoLayout {
        g_goid: 152,
        g_m: 48,
        g_atomicstatus: 144,
        g_waitreason: 176,
        g_parent_goid: Some(272),
        g_startpc: 296,
        m_curg: 192,
        funcval_fn: 0,
        m_p: 208,
        m_syscalltick: 664,
        p_syscalltick: 20,
    };
    match minor {
        19 => Some(GoLayout {
            g_parent_goid: None,
            g_startpc: 312,
            m_syscalltick: 668,
            ..base
        }),
        21 => Some(base),
        22 => Some(GoLayout {
            m_syscalltick: 952,
            ..base
        }),
        // Go 1.23 added `g.syscallbp` before `atomicstatus`.
        23 => Some(GoLayout {
            g_goid: 160,
            g_atomicstatus: 152,
            g_waitreason: 184,
            g_parent_goid: Some(280),
            g_startpc: 304,
            m_syscalltick: 740,
            ..base
        }),
        _ => None,
    }
}

/// The layout for `image` (parsed from `file`): DWARF's when it has the fields,
/// checked against the table; the table's otherwise. A release without a table
/// whose DWARF lacks a field is refused by name.
pub fn resolve(image: &GoImage, file: &object::File<'_>) -> anyhow::Result<ResolvedLayout> {
    let table = table(image.version.minor);
    let from_dwarf = if image.has_dwarf {
        from_dwarf(file)
    } else {
        None
    };
    match (from_dwarf, table) {
        (Some(layout), table) => Ok(ResolvedLayout {
            mismatches: table.map(|t| mismatches(&layout, &t)).unwrap_or_default(),
            layout,
            source: LayoutSource::Dwarf,
        }),
        (None, Some(layout)) => Ok(ResolvedLayout {
            layout,
            source: LayoutSource::Table,
            mismatches: Vec::new(),
        }),
        (None, None) => bail!(
            "tracer does not know where {}'s runtime keeps a goroutine's id and status, and the binary has no DWARF that says: it knows {}. Rebuild with one of those, or without -ldflags=-w",
            image.version.text,
            supported_list()
        ),
    }
}

/// The fields that differ between `dwarf` and `table`.
fn mismatches(dwarf: &GoLayout, table: &GoLayout) -> Vec<Mismatch> {
    let fields = |l: &GoLayout| {
        [
            ("g.goid", Some(l.g_goid)),
            ("g.m", Some(l.g_m)),
            ("g.atomicstatus", Some(l.g_atomicstatus)),
            ("g.waitreason", Some(l.g_waitreason)),
            ("g.parentGoid", l.g_parent_goid),
            ("g.startpc", Some(l.g_startpc)),
            ("m.curg", Some(l.m_curg)),
            ("funcval.fn", Some(l.funcval_fn)),
            ("m.p", Some(l.m_p)),
            ("m.syscalltick", Some(l.m_syscalltick)),
            ("p.syscalltick", Some(l.p_syscalltick)),
        ]
    };
    fields(dwarf)
        .into_iter()
        .zip(fields(table))
        .filter(|((_, d), (_, t))| d != t)
        .map(|((field, dwarf), (_, table))| Mismatch {
            field,
            dwarf,
            table,
        })
        .collect()
}

/// The layout DWARF gives, if it has every field (`g.parentGoid` may be
/// missing: Go 1.19 has none).
pub fn from_dwarf(file: &object::File<'_>) -> Option<GoLayout> {
    let members = struct_members(
        file,
        &["runtime.g", "runtime.m", "runtime.p", "runtime.funcval"],
    );
    let field = |structure: &str, name: &str| members.get(structure)?.get(name).copied();
    Some(GoLayout {
        g_goid: field("runtime.g", "goid")?,
        g_m: field("runtime.g", "m")?,
        g_atomicstatus: field("runtime.g", "atomicstatus")?,
        g_waitreason: field("runtime.g", "waitreason")?,
        g_parent_goid: field("runtime.g", "parentGoid"),
        g_startpc: field("runtime.g", "startpc")?,
        m_curg: field("runtime.m", "curg")?,
        funcval_fn: field("runtime.funcval", "fn")?,
        m_p: field("runtime.m", "p")?,
        m_syscalltick: field("runtime.m", "syscalltick")?,
        p_syscalltick: field("runtime.p", "syscalltick")?,
    })
}

/// Member offsets (name → `DW_AT_data_member_location`) of the structure types
/// named `wanted`, the first definition of each.
pub fn struct_members(
    file: &object::File<'_>,
    wanted: &[&str],
) -> HashMap<String, HashMap<String, u64>> {
    let mut found = HashMap::new();
    dwarf::for_each_unit(file, &mut |dwarf, unit| {
        unit_structs(dwarf, unit, wanted, &mut found)?;
        Ok(found.len() < wanted.len())
    });
    found
}

/// Adds `unit`'s definitions of the `wanted` structures to `found`.
fn unit_structs(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &gimli::Unit<Reader<'_>>,
    wanted: &[&str],
    found: &mut HashMap<String, HashMap<String, u64>>,
) -> gimli::Result<()> {
    let mut entries = unit.entries();
    let mut depth = 0isize;
    // The structure being read and the depth of its members.
    let mut current: Option<(String, isize)> = None;
    while let Some((delta, entry)) = entries.next_dfs()? {
        depth += delta;
        if current
            .as_ref()
            .is_some_and(|(_, members)| depth < *members)
        {
            current = None;
        }
        let name = match entry.attr_value(gimli::DW_AT_name)? {
            Some(value) => dwarf
                .attr_string(unit, value)?
                .to_string_lossy()
                .into_owned(),
            None => continue,
        };
        match entry.tag() {
            gimli::DW_TAG_structure_type
                if wanted.contains(&name.as_str()) && !found.contains_key(&name) =>
            {
                found.insert(name.clone(), HashMap::new());
                current = Some((name, depth + 1));
            }
            gimli::DW_TAG_member => {
                let Some((structure, members)) = &current else {
                    continue;
                };
                if depth != *members {
                    continue;
                }
                if let Some(offset) = entry
                    .attr_value(gimli::DW_AT_data_member_location)?
                    .and_then(|value| value.udata_value())
                    && let Some(fields) = found.get_mut(structure)
                {
                    fields.insert(name, offset);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_exist_for_the_supported_releases_only() {
        for minor in super::super::image::SUPPORTED_MINORS {
            assert!(table(minor).is_some(), "Go 1.{minor}");
        }
        assert_eq!(table(20), None);
        assert_eq!(table(19).unwrap().g_parent_goid, None);
        assert_eq!(table(23).unwrap().g_goid, 160);
    }

    #[test]
    fn mismatches_name_the_fields_that_differ() {
        let table = table(23).unwrap();
        let dwarf = GoLayout {
            g_goid: 168,
            g_parent_goid: None,
            ..table
        };
        assert_eq!(
            mismatches(&dwarf, &table),
            vec![
                Mismatch {
                    field: "g.goid",
                    dwarf: Some(168),
                    table: Some(160)
                },
                Mismatch {
                    field: "g.parentGoid",
                    dwarf: None,
                    table: Some(280)
                },
            ]
        );
    }
}
