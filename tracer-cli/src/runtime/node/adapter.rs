//! The Node adapter: which of Node's native functions to probe (by their
//! Itanium-mangled names), the offsets its programs read and the provider
//! names (from the binary's code, [`super::code`]), and the mapping of its
//! records ([`super::events`]).

use std::path::Path;

use anyhow::{Context as _, bail};
use iced_x86::MemorySize;
use object::{Object as _, ObjectSymbol as _};
use tracer_common::node::layout;

use super::{
    TYPE_PREFIX,
    code::{self, ScopeClose, WrapFields},
    events::{JS_TYPE_BASE, NodeEvents, provider_address},
    js::{JsLayout, JsResources, JsType},
};
use crate::{
    model::{
        event::ResourceType,
        names::{AddressNamer, LocationSource, NameTable, SiteName},
    },
    runtime::{
        BpfGlobals, Prepared, Probe, RuntimeAdapter,
        names::SessionNames,
        sites::{Site, TargetObject},
    },
    target::{as_seen, image::Image, mapped_file, symbols},
};

/// Node.js 18 and 20: native async resources, through `AsyncWrap` and
/// `InternalCallbackScope`.
pub struct Node;

/// The Node majors tracer was checked on (and the releases it was checked on).
const SUPPORTED: &[(u32, &str)] = &[(18, "18.20.4"), (20, "20.20.2")];

/// `node::AsyncWrap::AsyncReset(v8::Local<v8::Object>, double, bool)`.
const ASYNC_RESET: &str = "_ZN4node9AsyncWrap10AsyncResetEN2v85LocalINS1_6ObjectEEEdb";
/// `node::InternalCallbackScope::Close()`.
const SCOPE_CLOSE: &str = "_ZN4node21InternalCallbackScope5CloseEv";
/// `node::IsolateData::CreateProperties()`, which creates the provider names.
const CREATE_PROPERTIES: &str = "_ZN4node11IsolateData16CreatePropertiesEv";
/// `node::AsyncHooksGetExecutionAsyncId(v8::Isolate*)`, which reads
/// `async_id_fields` through its environment.
const GET_EXECUTION_ASYNC_ID: &str = "_ZN4node29AsyncHooksGetExecutionAsyncIdEPN2v87IsolateE";
/// `node::Environment::CheckImmediate(uv_check_s*)`, which reads
/// `immediate_info` through its environment.
const CHECK_IMMEDIATE: &str = "_ZN4node11Environment14CheckImmediateEP10uv_check_s";
/// V8's functions `--js-resources` probes (outside `node::`, so not among the
/// symbols the site scan keeps): `MicrotaskQueue::RunMicrotasks(Isolate*)` and
/// `MicrotaskQueue::EnqueueMicrotask(v8::Isolate*, v8::Local<v8::Function>)`.
const V8_SITES: [(Probe, &str); 2] = [
    (
        Probe::NodeMicrotasks,
        "_ZN2v88internal14MicrotaskQueue13RunMicrotasksEPNS0_7IsolateE",
    ),
    (
        Probe::NodeEnqueueMicrotask,
        "_ZN2v88internal14MicrotaskQueue16EnqueueMicrotaskEPNS_7IsolateENS_5LocalINS_8FunctionEEE",
    ),
];

/// Why a resource has no location.
const NO_LOCATION: &str = "Node's native resources carry no creation site";
/// Why a resource has no name: its provider type is not in the binary's table.
const UNKNOWN_PROVIDER: &str = "its provider type is not in the binary's table of names";

impl RuntimeAdapter for Node {
    fn name(&self) -> &'static str {
        "node"
    }

    fn display_name(&self) -> &'static str {
        "Node.js"
    }

    fn symbol_hint(&self) -> &'static [u8] {
        b"_ZN4node"
    }

    fn mangled_names(&self) -> bool {
        true
    }

    fn probe_for(&self, mangled: &str, _path: &str) -> Option<Probe> {
        let rest = mangled.strip_prefix("_ZN4node")?;
        match rest {
            "9AsyncWrap10AsyncResetEN2v85LocalINS1_6ObjectEEEdb" => Some(Probe::NodeAsyncReset),
            "21InternalCallbackScopeC1EPNS_11EnvironmentEN2v85LocalINS3_6ObjectEEERKNS_13async_contextEi"
            | "21InternalCallbackScopeC2EPNS_11EnvironmentEN2v85LocalINS3_6ObjectEEERKNS_13async_contextEi" => {
                Some(Probe::NodeScope { wrap: false })
            }
            "21InternalCallbackScopeC1EPNS_9AsyncWrapEi"
            | "21InternalCallbackScopeC2EPNS_9AsyncWrapEi" => Some(Probe::NodeScope { wrap: true }),
            "21InternalCallbackScope5CloseEv" => Some(Probe::NodeScopeClose),
            "9AsyncWrapD0Ev"
            | "9AsyncWrapD1Ev"
            | "9AsyncWrapD2Ev"
            | "9AsyncWrap11EmitDestroyEb" => Some(Probe::NodeDestroy),
            _ => None,
        }
    }

    fn required(&self) -> &'static [(&'static [Probe], &'static str)] {
        &[
            (
                &[Probe::NodeAsyncReset],
                "resource creation (node::AsyncWrap::AsyncReset)",
            ),
            (
                &[Probe::NodeScope { wrap: false }],
                "callbacks (node::InternalCallbackScope's constructor)",
            ),
            (
                &[Probe::NodeScopeClose],
                "callback ends (node::InternalCallbackScope::Close)",
            ),
            (
                &[Probe::NodeDestroy],
                "destruction (node::AsyncWrap::~AsyncWrap)",
            ),
        ]
    }

    fn recognize(&self, data: &[u8]) -> Option<String> {
        code::version(data).map(|version| format!("Node.js {version}"))
    }

    fn prepare(&self, pid: u32, objects: &mut Vec<TargetObject>) -> anyhow::Result<Prepared> {
        let [object] = objects.as_mut_slice() else {
            bail!(
                "Node's functions are in {} mapped objects; tracer traces one Node per process",
                objects.len()
            );
        };
        let binary = NodeBinary::read(&object.attach_path, &as_seen(pid, &object.attach_path))?;
        for site in &mut object.sites.sites {
            if site.probe == Probe::NodeScopeClose {
                site.address += binary.scope_close.probe_offset;
                site.file_offset += binary.scope_close.probe_offset;
            }
        }
        object.sites.sites.extend(binary.v8_sites);
        object
            .sites
            .sites
            .sort_by_key(|site| (site.probe, site.address));
        let js = JsResources::new(pid, binary.js);
        let namer = Box::new(Providers(binary.providers));
        let table = NameTable::by_namer(namer, Box::new(NoLocation));
        Ok(Prepared {
            globals: BpfGlobals(vec![
                (layout::WRAP_PROVIDER, binary.wrap.provider),
                (layout::WRAP_ASYNC_ID, binary.wrap.async_id),
                (layout::WRAP_TRIGGER_ID, binary.wrap.trigger_id),
                (layout::SCOPE_CLOSED, binary.scope_close.closed),
            ]),
            names: SessionNames::without_sites(table),
            default_type: ResourceType::from_static("node.resource"),
            records: Some(Box::new(NodeEvents::new(js))),
            version: Some(binary.version),
        })
    }
}

/// What the session needs from a Node binary (or `libnode`), read once.
struct NodeBinary {
    /// "20.20.2".
    version: String,
    wrap: WrapFields,
    /// `closed_` and where `Close()` is probed.
    scope_close: ScopeClose,
    /// Provider names by provider type.
    providers: Vec<String>,
    /// Where `--js-resources` watches, or why this build shows no place.
    js: Result<JsLayout, String>,
    /// The V8 sites of [`V8_SITES`] the binary has.
    v8_sites: Vec<Site>,
}

impl NodeBinary {
    /// Reads the object at `path` (named `shown` in messages), refusing a Node
    /// it was not checked on and a build whose code does not show the layout
    /// tracer reads.
    fn read(path: &Path, shown: &Path) -> anyhow::Result<Self> {
        let data = mapped_file::map(path)?;
        let file = object::File::parse(&*data)
            .with_context(|| format!("{} is not an ELF file tracer can read", shown.display()))?;
        let version = code::version(&data).with_context(|| {
            format!(
                "{} holds Node's functions but names no Node version (no `node.js/v…` string)",
                shown.display()
            )
        })?;
        check_version(&version)
            .with_context(|| format!("version string in {}", shown.display()))?;
        let image = Image::new(&file);
        let refuse = |what: &str| {
            anyhow::anyhow!(
                "unsupported Node.js {version} build in {}: {what}; tracer reads the layout of Node's objects from this code and refuses rather than read the wrong fields (tracer supports Node {})",
                shown.display(),
                supported_list()
            )
        };
        let function = |name: &str| {
            function_code(&file, &image, name).ok_or_else(|| refuse(&format!("no function {name}")))
        };
        let (ip, bytes) = function(ASYNC_RESET)?;
        let wrap = code::wrap_fields(bytes, ip).map_err(refuse)?;
        let (ip, bytes) = function(SCOPE_CLOSE)?;
        let scope_close = code::scope_closed(bytes, ip).map_err(refuse)?;
        let (ip, bytes) = function(CREATE_PROPERTIES)?;
        let providers = code::provider_names(&image, bytes, ip).map_err(refuse)?;
        check_wrap_scope(&file, &image, wrap).map_err(|what| refuse(&what))?;
        let buffer = |function: &str, size| {
            let (ip, bytes) = function_code(&file, &image, function)
                .ok_or_else(|| format!("{} has no function {function}", shown.display()))?;
            code::env_buffer(bytes, ip, size).ok_or_else(|| {
                format!(
                    "{function} in {} reads no Environment field tracer knows",
                    shown.display()
                )
            })
        };
        let js = buffer(GET_EXECUTION_ASYNC_ID, MemorySize::Float64).and_then(|async_id_fields| {
            Ok(JsLayout {
                async_id_fields,
                immediate_info: buffer(CHECK_IMMEDIATE, MemorySize::UInt32)?,
            })
        });
        let v8_sites = V8_SITES
            .iter()
            .filter_map(|(probe, name)| {
                let symbol = find_symbol(&file, name)?;
                Some(Site {
                    probe: *probe,
                    address: symbol.address(),
                    file_offset: symbols::file_offset(&file, &symbol)?,
                    symbol: (*name).to_owned(),
                })
            })
            .collect();
        Ok(Self {
            version,
            wrap,
            scope_close,
            providers,
            js,
            v8_sites,
        })
    }
}

/// Refuses a Node major tracer was not checked on: its objects may be laid
/// out differently in ways the code patterns would not show.
fn check_version(version: &str) -> anyhow::Result<()> {
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if !SUPPORTED.iter().any(|(supported, _)| *supported == major) {
        bail!(
            "unsupported Node.js version {version}: tracer supports Node {}",
            supported_list()
        );
    }
    Ok(())
}

/// "18 (checked on 18.20.4) and 20 (…)".
fn supported_list() -> String {
    SUPPORTED
        .iter()
        .map(|(major, checked)| format!("{major} (checked on {checked})"))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The defined symbol whose mangled name is `name`.
fn find_symbol<'data, 'file>(
    file: &'file object::File<'data>,
    name: &str,
) -> Option<object::Symbol<'data, 'file>> {
    file.symbols()
        .chain(file.dynamic_symbols())
        .find(|symbol| symbol.name() == Ok(name) && symbol.address() != 0)
}

/// The address and code of the function whose mangled symbol is `name`.
fn function_code<'data>(
    file: &object::File<'data>,
    image: &Image<'data>,
    name: &str,
) -> Option<(u64, &'data [u8])> {
    let symbol = find_symbol(file, name)?;
    let code = image.bytes(symbol.address(), symbol.size().max(16))?;
    Some((symbol.address(), code))
}

/// The `InternalCallbackScope(AsyncWrap*, int)` constructor reads the wrap's
/// ids where `AsyncReset` wrote them.
fn check_wrap_scope(
    file: &object::File<'_>,
    image: &Image<'_>,
    wrap: WrapFields,
) -> Result<(), String> {
    const WRAP_SCOPE: &str = "_ZN4node21InternalCallbackScopeC2EPNS_9AsyncWrapEi";
    let Some((ip, bytes)) = function_code(file, image, WRAP_SCOPE) else {
        return Ok(());
    };
    let reads = code::wrap_reads(bytes, ip);
    if code::covers(&reads, wrap.async_id) && code::covers(&reads, wrap.trigger_id) {
        Ok(())
    } else {
        Err(format!(
            "AsyncReset writes the ids at {:#x}/{:#x} but InternalCallbackScope(AsyncWrap*) reads {reads:x?}",
            wrap.async_id, wrap.trigger_id
        ))
    }
}

/// Names resources by their provider type (the address [`provider_address`]
/// gives it).
struct Providers(Vec<String>);

impl AddressNamer for Providers {
    fn name(&mut self, address: u64) -> SiteName {
        if let Some(js) = address
            .checked_sub(JS_TYPE_BASE)
            .and_then(|index| JsType::ALL.get(usize::try_from(index).ok()?))
        {
            return SiteName::Named {
                name: js.name().to_owned(),
                resource_type: Some(ResourceType::named(format!("{TYPE_PREFIX}{}", js.name()))),
            };
        }
        let name = address
            .checked_sub(provider_address(0))
            .and_then(|index| self.0.get(usize::try_from(index).ok()?));
        match name {
            Some(name) => SiteName::Named {
                name: name.clone(),
                resource_type: Some(ResourceType::named(format!("{TYPE_PREFIX}{name}"))),
            },
            None => SiteName::Unnamed(UNKNOWN_PROVIDER),
        }
    }
}

/// Node's resources have no creation site tracer reads.
struct NoLocation;

impl LocationSource for NoLocation {
    fn location(&mut self, _pointer: u64) -> Result<String, &'static str> {
        Err(NO_LOCATION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_chosen_by_mangled_name_overload_and_variant() {
        let probe = |name: &str| Node.probe_for(name, name);
        assert_eq!(probe(ASYNC_RESET), Some(Probe::NodeAsyncReset));
        // The JS binding `AsyncReset(const FunctionCallbackInfo&)` is another overload.
        assert_eq!(
            probe("_ZN4node9AsyncWrap10AsyncResetERKN2v820FunctionCallbackInfoINS1_5ValueEEE"),
            None
        );
        assert_eq!(
            probe("_ZN4node21InternalCallbackScopeC2EPNS_9AsyncWrapEi"),
            Some(Probe::NodeScope { wrap: true })
        );
        assert_eq!(probe(SCOPE_CLOSE), Some(Probe::NodeScopeClose));
        assert_eq!(probe("_ZN4node9AsyncWrapD0Ev"), Some(Probe::NodeDestroy));
        // Destructors of the scope itself are no resource's destroy.
        assert_eq!(probe("_ZN4node21InternalCallbackScopeD1Ev"), None);
    }

    #[test]
    fn a_node_major_not_checked_is_refused_naming_the_supported_ones() {
        assert!(check_version("20.20.2").is_ok());
        assert!(check_version("18.20.4").is_ok());
        let error = check_version("22.1.0").unwrap_err().to_string();
        assert!(error.contains("22.1.0"), "{error}");
        assert!(error.contains("18 (checked on 18.20.4) and 20"), "{error}");
    }

    #[test]
    fn a_provider_is_named_as_async_hooks_names_it() {
        let mut providers = Providers(vec!["NONE".into(), "DIRHANDLE".into()]);
        assert_eq!(
            providers.name(provider_address(1)),
            SiteName::Named {
                name: "DIRHANDLE".into(),
                resource_type: Some(ResourceType::named("node.DIRHANDLE")),
            }
        );
        assert_eq!(
            providers.name(provider_address(7)),
            SiteName::Unnamed(UNKNOWN_PROVIDER)
        );
    }
}
