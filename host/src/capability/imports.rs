//! What a component imports, what each import needs from policy, and whether
//! the policy grants it. Used at load (deny by default), by `inspect` and by `audit`.

use serde::Serialize;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::capability::table::Capability;
use crate::policy::Grants;

/// Package of our own interfaces, version included.
pub const PACKAGE: &str = "wasmvol:driver";
const VERSION: &str = "0.1.0";

/// How the host treats one imported interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    /// One of our capability interfaces: its functions need that grant.
    Capability(Capability),
    /// `log` and `types`: need nothing.
    Free,
    /// `wasi:*`: provided empty (no preopens, env, args or network) unless
    /// policy preopens the storage root.
    Wasi,
    /// Anything else: refused.
    Unknown,
}

impl ImportKind {
    /// Classifies an import by its interface name, e.g. `wasmvol:driver/mount@0.1.0`.
    pub fn of(name: &str) -> Self {
        if name.starts_with("wasi:") {
            return ImportKind::Wasi;
        }
        let Some(rest) = name.strip_prefix("wasmvol:driver/") else {
            return ImportKind::Unknown;
        };
        let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
        if version != VERSION {
            return ImportKind::Unknown;
        }
        match (Capability::of_interface(iface), iface) {
            (Some(c), _) => ImportKind::Capability(c),
            (None, "log" | "types") => ImportKind::Free,
            _ => ImportKind::Unknown,
        }
    }

    /// The policy grant this kind needs, for error messages and reports.
    pub fn grant_name(self) -> &'static str {
        match self {
            ImportKind::Capability(c) => c.grant_key(),
            ImportKind::Free | ImportKind::Wasi => "(none)",
            ImportKind::Unknown => "(not grantable)",
        }
    }

    /// Whether `grants` allow this kind.
    pub fn granted_by(self, grants: &Grants) -> bool {
        match self {
            ImportKind::Capability(c) => c.granted_by(grants),
            ImportKind::Free | ImportKind::Wasi => true,
            ImportKind::Unknown => false,
        }
    }

    /// One word for reports: the capability's name, `free`, `wasi` or `unknown`.
    pub fn label(self) -> &'static str {
        match self {
            ImportKind::Capability(c) => c.name(),
            ImportKind::Free => "free",
            ImportKind::Wasi => "wasi",
            ImportKind::Unknown => "unknown",
        }
    }
}

impl Serialize for ImportKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

/// One import of a component.
#[derive(Debug, Clone, Serialize)]
pub struct Import {
    /// The interface name with its version.
    pub name: String,
    /// How the host treats it.
    pub kind: ImportKind,
    /// Functions of the interface the component calls. An import with none
    /// only borrows the interface's types (e.g. `mount.target` in node
    /// signatures) and needs no grant.
    pub functions: Vec<String>,
    /// The policy grant its functions need.
    pub grant: &'static str,
}

impl Import {
    /// Whether this import needs a grant the policy does not give.
    pub fn denied_by(&self, grants: &Grants) -> bool {
        match self.kind {
            ImportKind::Unknown => true,
            kind => {
                let granted = kind.granted_by(grants)
                    || (self.only_methods_of(Capability::Storage, "root")
                        && grants.netfs.is_some())
                    || (self.only_methods_of(Capability::Device, "block-device")
                        && grants.lvm.is_some());
                !self.functions.is_empty() && !granted
            }
        }
    }

    /// Whether this is `capability`'s interface imported only for the
    /// methods of its `resource`: `volumes` for `root` (no `open-root`), a
    /// driver granted `netfs` gets its roots from `netfs.open-share`;
    /// `device` for `block-device` (no backing files), a driver granted
    /// `lvm` gets its devices from `lvm.open`. Neither then needs the
    /// interface's own grant.
    fn only_methods_of(&self, capability: Capability, resource: &str) -> bool {
        self.kind == ImportKind::Capability(capability)
            && self.functions.iter().all(|f| {
                f.strip_prefix("[method]")
                    .or_else(|| f.strip_prefix("[resource-drop]"))
                    .and_then(|rest| rest.strip_prefix(resource))
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            })
    }
}

/// The interfaces a component imports and exports.
#[derive(Debug, Clone, Serialize)]
pub struct Surface {
    /// What it imports.
    pub imports: Vec<Import>,
    /// The interfaces it exports.
    pub exports: Vec<String>,
}

impl Surface {
    /// Reads a compiled component's imports and exports.
    pub fn of(engine: &Engine, component: &Component) -> Self {
        let ty = component.component_type();
        let imports = ty
            .imports(engine)
            .map(|(name, item)| {
                let kind = ImportKind::of(name);
                let functions = match &item.ty {
                    ComponentItem::ComponentInstance(inst) => inst
                        .exports(engine)
                        .filter(|(_, e)| matches!(e.ty, ComponentItem::ComponentFunc(_)))
                        .map(|(f, _)| f.to_owned())
                        .collect(),
                    ComponentItem::ComponentFunc(_) => vec![name.to_owned()],
                    _ => Vec::new(),
                };
                Import {
                    name: name.to_owned(),
                    kind,
                    functions,
                    grant: kind.grant_name(),
                }
            })
            .collect();
        let exports = ty
            .exports(engine)
            .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentInstance(_)))
            .map(|(name, _)| name.to_owned())
            .collect();
        Self { imports, exports }
    }

    /// Imports the grants do not allow (the reason a component is refused).
    pub fn ungranted<'a>(&'a self, grants: &'a Grants) -> impl Iterator<Item = &'a Import> + 'a {
        self.imports.iter().filter(|i| i.denied_by(grants))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_imports_by_interface_and_version() {
        assert_eq!(
            ImportKind::of("wasmvol:driver/mount@0.1.0"),
            ImportKind::Capability(Capability::Mount)
        );
        assert_eq!(
            ImportKind::of("wasmvol:driver/mount@0.2.0"),
            ImportKind::Unknown
        );
        assert_eq!(
            ImportKind::of("wasi:filesystem/types@0.2.6"),
            ImportKind::Wasi
        );
        assert_eq!(ImportKind::of("evil:net/socket"), ImportKind::Unknown);
        let none = Grants::default();
        assert!(!ImportKind::Capability(Capability::Mount).granted_by(&none));
        assert!(ImportKind::Free.granted_by(&none));
    }
}
