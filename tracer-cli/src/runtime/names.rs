//! What naming gives a session, whatever the runtime: the model's
//! [`NameTable`], each poll site's slot (its probe's cookie), and what to say on
//! stderr about sites left unnamed.

use std::collections::{BTreeMap, HashMap};

use crate::model::{
    names::{NameTable, SiteName},
    task_filter::TaskGlobs,
};

/// What the session needs from naming.
pub struct SessionNames {
    /// For the model.
    pub table: NameTable,
    /// The cookie of each poll site, by (object index, site address).
    pub slots: HashMap<(usize, u64), u64>,
    /// Poll sites named, by method (its label), over all objects.
    pub methods: BTreeMap<&'static str, usize>,
    /// Poll sites left unnamed, by reason.
    pub unnamed: BTreeMap<&'static str, usize>,
    /// Poll sites in all.
    pub sites: usize,
    /// Why locations cannot be read, if they cannot.
    pub location_problem: Option<String>,
    /// What to build with to name the sites left unnamed (a sentence tail).
    pub advice: &'static str,
}

impl SessionNames {
    /// Names from `table` alone, with no poll sites to name at load time (a
    /// runtime whose records carry what names them, like Go's start functions).
    pub fn without_sites(table: NameTable) -> Self {
        Self {
            table,
            slots: HashMap::new(),
            methods: BTreeMap::new(),
            unnamed: BTreeMap::new(),
            sites: 0,
            location_problem: None,
            advice: "",
        }
    }

    /// Whether the poll site at `address` of object `index` runs a future whose
    /// name `globs` match (`--task`); an unnamed site matches none.
    pub fn site_matches(&self, index: usize, address: u64, globs: &TaskGlobs) -> bool {
        let Some(slot) = self.slots.get(&(index, address)) else {
            return false;
        };
        matches!(
            self.table.site(u32::try_from(*slot).unwrap_or(0)),
            Some(SiteName::Named { name, .. }) if globs.matches(name)
        )
    }

    /// The status line: "names: 20 of 20 poll sites (20 by vtable drop glue)".
    pub fn describe(&self) -> String {
        let named: usize = self.methods.values().sum();
        let how = self
            .methods
            .iter()
            .map(|(method, count)| format!("{count} by {method}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!("names: {named} of {} poll sites named ({how})", self.sites)
    }

    /// Said once on stderr when some poll sites cannot be named: why, and how to
    /// keep names in the build.
    pub fn warning(&self) -> Option<String> {
        if self.unnamed.is_empty() {
            return None;
        }
        let reasons = self
            .unnamed
            .iter()
            .map(|(reason, count)| format!("{count}: {reason}"))
            .collect::<Vec<_>>()
            .join("; ");
        Some(format!(
            "{} of {} poll sites have no name ({reasons}); their tasks are traced unnamed{}",
            self.unnamed.values().sum::<usize>(),
            self.sites,
            self.advice
        ))
    }
}
