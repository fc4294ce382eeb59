//! `Registry`: the stacks a run can use, by name, each behind a [`StackFactory`] that builds one instance per host.
//!
//! A stack's registered name is its one name: scenario files say `stack = "<name>"`, command
//! lines say `--stack <name>` and `--diff <a>,<b>`, goldens of a run moved onto it are
//! `<scenario>@<name>.*`, and reports list it so. The built-in stacks (smoltcp, lwIP, the
//! Linux kernel) are registered the same way a user's own stack is.

use std::sync::Arc;

use crate::{Stack, StackConfig};

/// Why a stack instance could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// This machine cannot run the stack; the text says what is missing and how to get it.
    #[error("{0}")]
    Unavailable(String),
    /// The stack was there but failed to start; the text says how.
    #[error("{0}")]
    Failed(String),
}

/// What a factory's stacks allow a run to ask of them. Runners skip, with the reason, a run
/// that would exceed them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// The most hosts one run may put on this stack (each linux host is a namespace).
    pub max_hosts_per_run: Option<usize>,
    /// The longest virtual-time limit a run may have (a real-time stack spends it in real
    /// time).
    pub max_time_limit_us: Option<u64>,
}

/// Builds instances of one stack implementation, one per simulated host.
///
/// A factory is shared by every run of a sweep, across threads; the stacks it builds live on
/// the thread of their run only.
pub trait StackFactory: Send + Sync {
    /// One line for listings: what the stack is and where it comes from.
    fn description(&self) -> String;

    /// `Ok` when this machine can build the stack; otherwise what is missing, with the fix
    /// (for example the Debian package to install).
    fn available(&self) -> Result<(), String> {
        Ok(())
    }

    /// A new instance for one host, configured by `config`.
    fn build(&self, config: StackConfig) -> Result<Box<dyn Stack>, BuildError>;

    /// True for stacks that follow the wall clock (the kernel behind a TAP device): a run with
    /// such a host is paced to real time, cannot be reproduced byte for byte, and so has no
    /// goldens.
    fn real_time(&self) -> bool {
        false
    }

    /// True for stacks whose runs belong in a child process of their own: a stack that may
    /// end the whole process (an lwIP assertion calls `abort()`), so that an abort fails that
    /// run only, or one that leaves system state behind that the child cleans up when it is
    /// interrupted (the kernel's namespaces).
    fn needs_own_process(&self) -> bool {
        false
    }

    /// What runs on this stack may ask of it.
    fn limits(&self) -> Limits {
        Limits::default()
    }

    /// For a stack that acts only on a periodic timer of its own (PyTCP sends from a 1 ms
    /// tick): the tick's period. A conformance script accepts this stack's packets up to one
    /// tick from their scripted time, as packetdrill's `--tolerance_usecs` does for a kernel.
    /// 0, the default, for stacks that act at once: their packets are due at the exact
    /// virtual instant.
    fn tick_us(&self) -> u64 {
        0
    }
}

/// A factory made of a function from the host's configuration to its stack.
struct FnFactory<F> {
    description: String,
    build: F,
}

impl<S, F> StackFactory for FnFactory<F>
where
    S: Stack + 'static,
    F: Fn(StackConfig) -> S + Send + Sync,
{
    fn description(&self) -> String {
        self.description.clone()
    }

    fn build(&self, config: StackConfig) -> Result<Box<dyn Stack>, BuildError> {
        Ok(Box::new((self.build)(config)))
    }
}

/// A name is what files and command lines spell, so it keeps to characters that need no
/// quoting there: letters, digits and `_ - . @ :` (`smoltcp@0.12`, `plugin:pytcp`).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a stack's name cannot be empty".to_string());
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-.@:".contains(*c)))
    {
        Some(c) => Err(format!(
            "`{name}` is not a stack name: `{c}` is not allowed (use letters, digits and _ - . @ :)"
        )),
        None => Ok(()),
    }
}

#[derive(Clone)]
struct Entry {
    name: String,
    factory: Arc<dyn StackFactory>,
}

/// The stacks a run can use, by name, in the order they were registered (the order reports
/// list them in).
#[derive(Clone, Default)]
pub struct Registry {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Registry {
    /// A registry with no stack in it.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers `factory` under `name`, replacing a stack already registered so.
    ///
    /// # Panics
    /// When `name` is not a valid stack name ([`check_name`]): names are written in code.
    pub fn register(
        &mut self,
        name: impl Into<String>,
        factory: impl StackFactory + 'static,
    ) -> &mut Registry {
        self.register_shared(name, Arc::new(factory))
    }

    /// Like [`Registry::register`], for a factory that is already shared.
    pub fn register_shared(
        &mut self,
        name: impl Into<String>,
        factory: Arc<dyn StackFactory>,
    ) -> &mut Registry {
        let name = name.into();
        if let Err(problem) = check_name(&name) {
            panic!("{problem}");
        }
        match self.entries.iter_mut().find(|e| e.name == name) {
            Some(entry) => entry.factory = factory,
            None => self.entries.push(Entry { name, factory }),
        }
        self
    }

    /// Registers a stack built by `build` from each host's configuration: the short way for a
    /// stack whose construction cannot fail (`registry.register_fn("mystack", MyStack::new)`).
    pub fn register_fn<S, F>(&mut self, name: impl Into<String>, build: F) -> &mut Registry
    where
        S: Stack + 'static,
        F: Fn(StackConfig) -> S + Send + Sync + 'static,
    {
        let name = name.into();
        let description = format!("{name} (registered in code)");
        self.register(name, FnFactory { description, build })
    }

    /// The factory registered as `name`.
    pub fn get(&self, name: &str) -> Option<&dyn StackFactory> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.factory.as_ref())
    }

    /// The factory registered as `name`, shared.
    pub fn get_shared(&self, name: &str) -> Option<Arc<dyn StackFactory>> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| Arc::clone(&e.factory))
    }

    /// Whether a stack is registered as `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Every registered name, in registration order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// Builds an instance of the stack registered as `name`.
    pub fn build(&self, name: &str, config: StackConfig) -> Result<Box<dyn Stack>, BuildError> {
        match self.get(name) {
            Some(factory) => factory.build(config),
            None => Err(BuildError::Unavailable(format!(
                "no stack is registered as `{name}` (registered: {})",
                self.names().collect::<Vec<_>>().join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_registration_replaces_in_place() {
        assert!(check_name("smoltcp@0.12").is_ok());
        assert!(check_name("plugin:pytcp").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("my stack").is_err_and(|e| e.contains("` ` is not allowed")));

        struct Named(&'static str);
        impl StackFactory for Named {
            fn description(&self) -> String {
                self.0.to_string()
            }
            fn build(&self, _: StackConfig) -> Result<Box<dyn Stack>, BuildError> {
                Err(BuildError::Failed(self.0.to_string()))
            }
        }
        let mut registry = Registry::new();
        registry.register("a", Named("first a"));
        registry.register("b", Named("b"));
        registry.register("a", Named("second a"));
        assert_eq!(registry.names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            registry.get("a").map(|f| f.description()),
            Some("second a".to_string())
        );
        let config = StackConfig::new("h", crate::MacAddr::local_from_index(1), 1);
        assert_eq!(
            registry.build("a", config.clone()).err(),
            Some(BuildError::Failed("second a".to_string()))
        );
        let missing = registry
            .build("c", config)
            .err()
            .expect("c is not registered");
        assert!(
            missing.to_string().contains("registered: a, b"),
            "{missing}"
        );
    }
}
