//! How capabilities plug in (wasmtime-wasi's and Spin's pattern). Each capability is a
//! [`Capability`]: its per-call state, built from the action's [`Grants`] and the backends
//! of the mode it runs in, and its own `add_to_linker`. Its host functions are implemented on
//! a [`CapView`] of its state. The store state only lists the parts ([`capability_set!`]).

use super::grant::Grants;
use super::scope::ActionScope;
use std::marker::PhantomData;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, ResourceTable};

/// What a capability's host functions see: its own state, the resource table (shared with
/// wasi:io, whose streams its calls take and return) and the action's scope.
pub struct CapView<'a, C> {
    pub cap: &'a mut C,
    pub table: &'a mut ResourceTable,
    pub scope: &'a Arc<ActionScope>,
}

/// The `HasData` of capability `C`: its host functions get a [`CapView`] of it.
pub struct HasCap<C>(PhantomData<C>);

impl<C: 'static> HasData for HasCap<C> {
    type Data<'a> = CapView<'a, C>;
}

/// The backends one mode (local, cluster, test harness) lends an action, each by its type
/// (`Arc<dyn ExecBackend>`, `Arc<dyn KubeBackend>`, …). A capability takes its own; one the
/// mode does not have is absent, and that capability answers `unavailable`.
#[derive(Default, Clone)]
pub struct Backends(http::Extensions);

impl Backends {
    pub fn with<B: Clone + Send + Sync + 'static>(mut self, backend: B) -> Backends {
        self.0.insert(backend);
        self
    }

    pub fn get<B: Clone + Send + Sync + 'static>(&self) -> Option<B> {
        self.0.get::<B>().cloned()
    }
}

/// One capability: the state a call of an action holds, and its WIT interface(s) linked.
pub trait Capability: Sized + Send + 'static {
    fn build(grants: &Grants, backends: &Backends) -> Self;

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> CapView<'_, Self>,
    ) -> wasmtime::Result<()>;
}

/// What an action lends its plugin: the scope its calls share, the grants, and the
/// backends. Each call (a Store) builds its [`super::CapabilitySet`] from it.
#[derive(Clone)]
pub struct Lending {
    pub scope: Arc<ActionScope>,
    pub grants: Grants,
    pub backends: Backends,
}

impl Lending {
    /// What one action lends: a scope whose records never hold the secrets' values, the
    /// grants, and the mode's backends with the action's own secrets and locations added.
    pub fn new(
        actor: super::Actor,
        limits: crate::limits::EffectiveLimits,
        grants: Grants,
        secrets: super::secrets::SecretValues,
        locations: super::location::BoundLocations,
        mode: Backends,
    ) -> Lending {
        let mut redactor = crate::redact::Redactor::new();
        for v in secrets.all() {
            redactor.add(v);
        }
        for v in mode
            .get::<Arc<super::signed_http::Signers>>()
            .map(|s| s.secret_values())
            .unwrap_or_default()
        {
            redactor.add(&v);
        }
        for v in mode
            .get::<Arc<dyn super::exec::ExecBackend>>()
            .map(|e| e.secret_values())
            .unwrap_or_default()
        {
            redactor.add(&v);
        }
        Lending {
            scope: Arc::new(ActionScope::new(actor, limits, redactor)),
            grants,
            backends: mode.with(Arc::new(secrets)).with(Arc::new(locations)),
        }
    }

    /// Nothing granted, nothing lent (describe, benchmarks).
    pub fn detached(plugin: &str) -> Lending {
        Lending {
            scope: Arc::new(ActionScope::detached(plugin)),
            grants: Grants::none(plugin),
            backends: Backends::default(),
        }
    }
}

/// The parts of a store's state a capability view borrows.
pub struct Parts<'a> {
    pub set: &'a mut super::CapabilitySet,
    pub table: &'a mut ResourceTable,
    pub scope: &'a Arc<ActionScope>,
}

/// A store state holding the capabilities.
pub trait HasCapabilities: Send + 'static {
    fn parts(&mut self) -> Parts<'_>;
}

/// The capability set: one field per capability, built and linked together. Adding a
/// capability is its folder plus one line in the list given to this macro.
macro_rules! capability_set {
    ($($field:ident: $ty:ty,)*) => {
        /// The capabilities of one call, each its own state.
        pub struct CapabilitySet {
            $(pub $field: $ty,)*
        }

        impl CapabilitySet {
            pub fn build(grants: &Grants, backends: &Backends) -> CapabilitySet {
                CapabilitySet {
                    $($field: <$ty as Capability>::build(grants, backends),)*
                }
            }

            pub fn add_to_linker<T: HasCapabilities>(
                linker: &mut wasmtime::component::Linker<T>,
            ) -> wasmtime::Result<()> {
                $(
                    <$ty as Capability>::add_to_linker(linker, |t: &mut T| {
                        let p = t.parts();
                        CapView { cap: &mut p.set.$field, table: p.table, scope: p.scope }
                    })?;
                )*
                Ok(())
            }
        }
    };
}
pub(crate) use capability_set;
