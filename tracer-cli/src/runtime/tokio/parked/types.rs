//! The type DWARF an await chain is walked by, read once into an owned model:
//! every structure, enum-like structure (a `DW_TAG_variant_part`) and pointer
//! type of the file, by its `.debug_info` offset, and structures by their full
//! name (namespaces and enclosing types joined by `::`). Only the types of units
//! built with full debug info exist here (`debug = 2`; line tables carry none).

use std::collections::{BTreeSet, HashMap};

use crate::target::dwarf::{DwarfSource, Reader};

/// A type's place in `.debug_info`, unique in the file.
pub type TypeRef = u64;

/// One member of a structure or of a variant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    /// Its name (`__awaitee`, `Suspend0`, `__0`).
    pub name: String,
    /// Byte offset in the enclosing structure.
    pub offset: u64,
    /// Its type, when DWARF gives one.
    pub ty: Option<TypeRef>,
    /// `file:line` of its declaration (a suspend variant's is its `.await`).
    pub declared_at: Option<String>,
}

/// A `DW_TAG_variant_part`: the discriminant and each variant's member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Variants {
    /// Name of the discriminant member (`__state` for a state machine).
    pub discr_name: String,
    /// Its offset in the structure.
    pub discr_offset: u64,
    /// Its size in bytes.
    pub discr_size: u64,
    /// (discriminant value, member): `None` for the default variant.
    pub variants: Vec<(Option<u64>, Member)>,
}

/// What a type is, as far as await chains care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A structure (or union), its direct members, and its variant part if it
    /// is an enum or a state machine.
    Struct {
        /// Members outside any variant.
        members: Vec<Member>,
        /// The variant part, if any.
        variants: Option<Variants>,
        /// Generic type parameters (`T` of `Cell<T, S>`).
        params: Vec<(String, Option<TypeRef>)>,
    },
    /// A pointer (`*const T`, `&T`, and `Box<T>`, which DWARF spells as one).
    Pointer(Option<TypeRef>),
    /// Anything else (base types, arrays, enumerations, subroutines).
    Other,
}

/// One type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Type {
    /// Its full name (`tokio::time::sleep::Sleep`).
    pub name: String,
    /// Its size in bytes (0 when DWARF does not say).
    pub size: u64,
    /// Its shape.
    pub kind: Kind,
}

/// Every type of a file's DWARF.
#[derive(Debug, Default)]
pub struct Types {
    /// By `.debug_info` offset.
    types: HashMap<TypeRef, Type>,
    /// Structure names, each to its first definition.
    by_name: HashMap<String, TypeRef>,
    /// Where the `__awaitee` locals of each awaited type are declared.
    awaited_at: HashMap<TypeRef, BTreeSet<String>>,
    /// Each variant part's structure and discriminant type, to size once
    /// every unit is read.
    discriminants: Vec<(TypeRef, TypeRef)>,
}

impl Types {
    /// Reads the types of `file`'s DWARF (none when it has no `.debug_info`).
    pub fn read(source: DwarfSource<'_, '_>) -> Self {
        let mut types = Self::default();
        source.for_each_unit(&mut |dwarf, unit, base| read_unit(dwarf, unit, base, &mut types));
        types.size_discriminants();
        types
    }

    /// Sets each variant part's discriminant size from its type, once every
    /// unit is read: the type may be in a later unit (fat LTO's units refer to
    /// each other's base types, `DW_FORM_ref_addr`).
    fn size_discriminants(&mut self) {
        for (owner, discr_ty) in std::mem::take(&mut self.discriminants) {
            let size = self.get(discr_ty).map_or(0, |t| t.size);
            if let Some(Type {
                kind:
                    Kind::Struct {
                        variants: Some(variants),
                        ..
                    },
                ..
            }) = self.types.get_mut(&owner)
            {
                variants.discr_size = size;
            }
        }
    }

    /// The type at `at`.
    pub fn get(&self, at: TypeRef) -> Option<&Type> {
        self.types.get(&at)
    }

    /// The structure named `name` (its first definition).
    pub fn by_name(&self, name: &str) -> Option<TypeRef> {
        self.by_name.get(name).copied()
    }

    /// Every structure whose name satisfies `wanted`.
    pub fn named(&self, wanted: impl Fn(&str) -> bool) -> impl Iterator<Item = (&str, TypeRef)> {
        self.by_name
            .iter()
            .filter(move |(name, _)| wanted(name))
            .map(|(name, at)| (name.as_str(), *at))
    }

    /// The member `name` of the structure `ty` (outside its variants).
    pub fn member(&self, ty: TypeRef, name: &str) -> Option<&Member> {
        match &self.get(ty)?.kind {
            Kind::Struct { members, .. } => members.iter().find(|m| m.name == name),
            _ => None,
        }
    }

    /// The offset and type at the end of a path of member names from `ty`;
    /// a name may also be a variant's member (`Running` of `Stage<T>`).
    pub fn path(&self, ty: TypeRef, names: &[&str]) -> Option<(u64, TypeRef)> {
        let mut offset = 0;
        let mut at = ty;
        for name in names {
            let member = self.member(at, name).or_else(|| self.variant(at, name))?;
            offset += member.offset;
            at = member.ty?;
        }
        Some((offset, at))
    }

    /// The offset of the first member named `name` anywhere inside `ty`
    /// (depth first, outside variants, at most `depth` structures down), and its type.
    pub fn find(&self, ty: TypeRef, name: &str, depth: usize) -> Option<(u64, TypeRef)> {
        let Kind::Struct { members, .. } = &self.get(ty)?.kind else {
            return None;
        };
        if let Some(m) = members.iter().find(|m| m.name == name) {
            return Some((m.offset, m.ty?));
        }
        if depth == 0 {
            return None;
        }
        members.iter().find_map(|m| {
            let (offset, found) = self.find(m.ty?, name, depth - 1)?;
            Some((m.offset + offset, found))
        })
    }

    /// The variant member `name` of the structure `ty`.
    pub fn variant(&self, ty: TypeRef, name: &str) -> Option<&Member> {
        match &self.get(ty)?.kind {
            Kind::Struct {
                variants: Some(v), ..
            } => v.variants.iter().map(|(_, m)| m).find(|m| m.name == name),
            _ => None,
        }
    }

    /// Where the `__awaitee` local of type `awaitee` is declared, when it is
    /// declared at one place only.
    pub fn awaitee_local_at(&self, awaitee: TypeRef) -> Option<&str> {
        self.awaited_at
            .get(&awaitee)
            .filter(|places| places.len() == 1)
            .and_then(|places| places.first())
            .map(String::as_str)
    }

    /// Records that an `__awaitee` local of type `awaitee` is declared at `at`
    /// (for tests and for [`read_unit`]).
    pub fn insert_awaitee_local(&mut self, awaitee: TypeRef, at: String) {
        self.awaited_at.entry(awaitee).or_default().insert(at);
    }

    /// Inserts a type (for tests and for [`read_unit`]).
    pub fn insert(&mut self, at: TypeRef, ty: Type) {
        if matches!(ty.kind, Kind::Struct { .. }) {
            self.by_name.entry(ty.name.clone()).or_insert(at);
        }
        self.types.insert(at, ty);
    }
}

/// The last `::` segment of a type's path, outside generic arguments
/// (`{async_fn_env#0}` of `app::f::{async_fn_env#0}<u8>`).
pub fn last_segment(name: &str) -> &str {
    let mut depth = 0usize;
    let mut start = 0;
    let bytes = name.as_bytes();
    let mut end = name.len();
    for (i, c) in name.char_indices() {
        match c {
            '<' => {
                if depth == 0 {
                    end = i;
                }
                depth += 1
            }
            '>' => depth = depth.saturating_sub(1),
            ':' if depth == 0 && bytes.get(i + 1) == Some(&b':') => {
                start = i + 2;
                end = name.len();
            }
            _ => {}
        }
    }
    &name[start..end.max(start)]
}

/// Variant parts being read, by their structure: the discriminant's DIE and
/// each variant's (value, member).
type Parts = HashMap<TypeRef, (Option<TypeRef>, Vec<(Option<u64>, Member)>)>;

/// A DIE being read: its offset and what is known of it so far.
struct Open {
    /// Depth in the unit's tree.
    depth: isize,
    /// The type it will become (`None` for namespaces and skipped DIEs).
    at: Option<TypeRef>,
    /// Its name segment, for the names of the types inside it.
    segment: Option<String>,
    /// A variant part being read: its discriminant's DIE offset.
    variant_part: Option<Option<TypeRef>>,
    /// A variant being read: its discriminant value.
    variant: Option<Option<u64>>,
}

/// Adds the types of `unit` to `types`, their offsets made unique with
/// `base` (0 but in a DWARF package).
fn read_unit(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &gimli::Unit<Reader<'_>>,
    base: u64,
    types: &mut Types,
) -> gimli::Result<()> {
    let files = FileNames::new(dwarf, unit);
    let mut stack: Vec<Open> = Vec::new();
    // Variant parts of the structures being read: (structure, discr DIE, variants).
    let mut parts: Parts = HashMap::new();
    let mut loose: HashMap<TypeRef, Member> = HashMap::new();
    let mut depth = 0isize;
    let mut entries = unit.entries();
    while let Some((delta, entry)) = entries.next_dfs()? {
        depth += delta;
        while stack.last().is_some_and(|open| open.depth >= depth) {
            stack.pop();
        }
        let at = global(unit, base, entry.offset());
        let name = match entry.attr_value(gimli::DW_AT_name)? {
            Some(value) => Some(
                dwarf
                    .attr_string(unit, value)?
                    .to_string_lossy()
                    .into_owned(),
            ),
            None => None,
        };
        let mut open = Open {
            depth,
            at: None,
            segment: None,
            variant_part: None,
            variant: None,
        };
        match entry.tag() {
            gimli::DW_TAG_namespace => open.segment = name,
            gimli::DW_TAG_structure_type
            | gimli::DW_TAG_union_type
            | gimli::DW_TAG_pointer_type
            | gimli::DW_TAG_reference_type
            | gimli::DW_TAG_base_type
            | gimli::DW_TAG_array_type
            | gimli::DW_TAG_enumeration_type => {
                open.at = type_entry(unit, base, entry, &stack, at, name.clone(), types)?;
                open.segment = name;
            }
            gimli::DW_TAG_template_type_parameter => {
                let ty = type_ref(unit, base, entry.attr_value(gimli::DW_AT_type)?);
                if let Some(Type {
                    kind: Kind::Struct { params, .. },
                    ..
                }) = stack
                    .last()
                    .and_then(|open| open.at)
                    .and_then(|owner| types.types.get_mut(&owner))
                {
                    params.push((name.unwrap_or_default(), ty));
                }
            }
            gimli::DW_TAG_variable if name.as_deref() == Some("__awaitee") => {
                let ty = type_ref(unit, base, entry.attr_value(gimli::DW_AT_type)?);
                if let (Some(ty), Some(at)) = (ty, files.declared_at(entry)?) {
                    types.insert_awaitee_local(ty, at);
                }
            }
            gimli::DW_TAG_variant_part => {
                let discr = type_ref(unit, base, entry.attr_value(gimli::DW_AT_discr)?);
                open.variant_part = Some(discr);
            }
            gimli::DW_TAG_variant => {
                let value = udata(entry.attr_value(gimli::DW_AT_discr_value)?);
                open.variant = Some(value);
            }
            gimli::DW_TAG_member => {
                let member = Member {
                    name: name.unwrap_or_default(),
                    offset: udata(entry.attr_value(gimli::DW_AT_data_member_location)?)
                        .unwrap_or(0),
                    ty: type_ref(unit, base, entry.attr_value(gimli::DW_AT_type)?),
                    declared_at: files.declared_at(entry)?,
                };
                add_member(&stack, at, member, types, &mut parts, &mut loose);
            }
            _ => {}
        }
        stack.push(open);
    }
    finish_parts(parts, &mut loose, types);
    Ok(())
}

/// Adds the type DIE `entry` (at `at`, named `name`, inside `stack`) to
/// `types`; `Some(at)` when it is a structure whose members follow.
fn type_entry(
    unit: &gimli::Unit<Reader<'_>>,
    base: u64,
    entry: &gimli::DebuggingInformationEntry<'_, '_, Reader<'_>>,
    stack: &[Open],
    at: TypeRef,
    name: Option<String>,
    types: &mut Types,
) -> gimli::Result<Option<TypeRef>> {
    let size = udata(entry.attr_value(gimli::DW_AT_byte_size)?).unwrap_or(0);
    match entry.tag() {
        gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type => {
            if entry.attr_value(gimli::DW_AT_declaration)?.is_some() {
                return Ok(None);
            }
            let kind = Kind::Struct {
                members: Vec::new(),
                variants: None,
                params: Vec::new(),
            };
            let name = full_name(stack, name.as_deref().unwrap_or("{anon}"));
            types.insert(at, Type { name, size, kind });
            Ok(Some(at))
        }
        gimli::DW_TAG_pointer_type | gimli::DW_TAG_reference_type => {
            let target = type_ref(unit, base, entry.attr_value(gimli::DW_AT_type)?);
            let name = name.unwrap_or_default();
            types.types.insert(
                at,
                Type {
                    name,
                    size: 8,
                    kind: Kind::Pointer(target),
                },
            );
            Ok(None)
        }
        _ => {
            let name = name.unwrap_or_default();
            types.types.insert(
                at,
                Type {
                    name,
                    size,
                    kind: Kind::Other,
                },
            );
            Ok(None)
        }
    }
}

/// Files a member where it belongs: in its structure, in the variant part being
/// read (a discriminant, kept `loose` until its part is finished), or in a variant.
fn add_member(
    stack: &[Open],
    at: TypeRef,
    member: Member,
    types: &mut Types,
    parts: &mut Parts,
    loose: &mut HashMap<TypeRef, Member>,
) {
    let Some(parent) = stack.last() else { return };
    if let Some(owner) = parent.at {
        if let Some(Type {
            kind: Kind::Struct { members, .. },
            ..
        }) = types.types.get_mut(&owner)
        {
            members.push(member);
        }
        return;
    }
    let owner = |depth_from_top: usize| {
        stack
            .len()
            .checked_sub(depth_from_top)
            .and_then(|i| stack.get(i))
            .and_then(|open| open.at)
    };
    if let Some(discr) = parent.variant_part {
        // The discriminant member sits directly in the variant part.
        if let Some(owner) = owner(2) {
            parts.entry(owner).or_insert((discr, Vec::new()));
        }
        loose.insert(at, member);
    } else if let Some(value) = parent.variant
        && let Some(Open {
            variant_part: Some(discr),
            ..
        }) = stack.len().checked_sub(2).and_then(|i| stack.get(i))
        && let Some(owner) = owner(3)
    {
        parts
            .entry(owner)
            .or_insert((*discr, Vec::new()))
            .1
            .push((value, member));
    }
}

/// Puts each finished variant part in its structure (its discriminant sized
/// later: [`Types::size_discriminants`]).
fn finish_parts(parts: Parts, loose: &mut HashMap<TypeRef, Member>, types: &mut Types) {
    for (owner, (discr, variants)) in parts {
        let discr_member = discr.and_then(|d| loose.remove(&d));
        let (discr_name, discr_offset) = match &discr_member {
            Some(m) => {
                types.discriminants.extend(m.ty.map(|ty| (owner, ty)));
                (m.name.clone(), m.offset)
            }
            None => (String::new(), 0),
        };
        if let Some(Type {
            kind: Kind::Struct { variants: v, .. },
            ..
        }) = types.types.get_mut(&owner)
        {
            *v = Some(Variants {
                discr_name,
                discr_offset,
                discr_size: 0,
                variants,
            });
        }
    }
}

/// The full name of a type named `name` inside the DIEs of `stack`.
fn full_name(stack: &[Open], name: &str) -> String {
    let mut parts: Vec<&str> = stack.iter().filter_map(|o| o.segment.as_deref()).collect();
    parts.push(name);
    parts.join("::")
}

/// A unit-relative offset as a `.debug_info` offset, made unique with `base`
/// (see [`DwarfSource::for_each_unit`]).
fn global(unit: &gimli::Unit<Reader<'_>>, base: u64, offset: gimli::UnitOffset) -> TypeRef {
    base | match offset.to_unit_section_offset(unit) {
        gimli::UnitSectionOffset::DebugInfoOffset(o) => o.0 as u64,
        gimli::UnitSectionOffset::DebugTypesOffset(o) => o.0 as u64 | 1 << 63,
    }
}

/// The type a `DW_AT_type` (or `DW_AT_discr`) value refers to.
fn type_ref(
    unit: &gimli::Unit<Reader<'_>>,
    base: u64,
    value: Option<gimli::AttributeValue<Reader<'_>>>,
) -> Option<TypeRef> {
    match value? {
        gimli::AttributeValue::UnitRef(offset) => Some(global(unit, base, offset)),
        gimli::AttributeValue::DebugInfoRef(offset) => Some(base | offset.0 as u64),
        _ => None,
    }
}

/// An unsigned constant attribute value.
fn udata(value: Option<gimli::AttributeValue<Reader<'_>>>) -> Option<u64> {
    match value? {
        gimli::AttributeValue::Udata(v) => Some(v),
        gimli::AttributeValue::Data1(v) => Some(v.into()),
        gimli::AttributeValue::Data2(v) => Some(v.into()),
        gimli::AttributeValue::Data4(v) => Some(v.into()),
        gimli::AttributeValue::Data8(v) => Some(v),
        gimli::AttributeValue::Sdata(v) => u64::try_from(v).ok(),
        _ => None,
    }
}

/// The file names of one unit's line program, as sources name them.
struct FileNames {
    /// By file index: the path, relative to the unit's directory when inside it.
    names: HashMap<u64, String>,
}

impl FileNames {
    /// The file table of `unit`.
    fn new(dwarf: &gimli::Dwarf<Reader<'_>>, unit: &gimli::Unit<Reader<'_>>) -> Self {
        let mut names = HashMap::new();
        let comp_dir = unit
            .comp_dir
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(program) = &unit.line_program {
            let header = program.header();
            let first = if header.version() >= 5 { 0 } else { 1 };
            for (i, file) in header.file_names().iter().enumerate() {
                let name = dwarf
                    .attr_string(unit, file.path_name())
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let dir = file
                    .directory(header)
                    .and_then(|d| dwarf.attr_string(unit, d).ok())
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                names.insert(i as u64 + first, source_path(&comp_dir, &dir, &name));
            }
        }
        Self { names }
    }

    /// `file:line` of `entry`'s declaration.
    fn declared_at(
        &self,
        entry: &gimli::DebuggingInformationEntry<'_, '_, Reader<'_>>,
    ) -> gimli::Result<Option<String>> {
        let file = match entry.attr_value(gimli::DW_AT_decl_file)? {
            Some(gimli::AttributeValue::FileIndex(index)) => Some(index),
            other => udata(other),
        };
        let line = udata(entry.attr_value(gimli::DW_AT_decl_line)?);
        Ok(match (file.and_then(|f| self.names.get(&f)), line) {
            (Some(file), Some(line)) => Some(format!("{file}:{line}")),
            _ => None,
        })
    }
}

/// A source path as `file!()` spells it: relative to the unit's directory when
/// inside it (`src/main.rs`), else whole.
pub fn source_path(comp_dir: &str, dir: &str, name: &str) -> String {
    let joined = if name.starts_with('/') || dir.is_empty() {
        name.to_owned()
    } else {
        format!("{}/{name}", dir.trim_end_matches('/'))
    };
    match joined.strip_prefix(comp_dir) {
        Some(rest) if !comp_dir.is_empty() && rest.starts_with('/') => rest[1..].to_owned(),
        _ => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_paths_read_relative_to_the_crate_as_file_macro_spells_them() {
        assert_eq!(
            source_path("/w/app", "/w/app", "src/main.rs"),
            "src/main.rs"
        );
        assert_eq!(source_path("/w/app", "src", "main.rs"), "src/main.rs");
        assert_eq!(
            source_path("/w/app", "/w/app/src/bin", "x.rs"),
            "src/bin/x.rs"
        );
        assert_eq!(
            source_path("/w/app", "/cargo/tokio-1.54.1/src", "lib.rs"),
            "/cargo/tokio-1.54.1/src/lib.rs"
        );
    }
}
