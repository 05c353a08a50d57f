//! The action's scratch directory: where a tool that only writes files (`etcdctl snapshot
//! save FILE`) writes, and where a file is staged before the host installs it in a volume.
//! The host makes it private, streams files out of and into it, and removes it when the
//! action ends; the argument policy refuses file arguments anywhere else.

use crate::exec::{self, Target};
use crate::location::{ObjectInfo, PutOptions, Store};
use crate::types::Error;

/// The scratch directory of the action's workload (or of `target`).
pub struct Scratch {
    target: Target,
    dir: String,
}

impl Scratch {
    /// The action's own workload.
    pub fn new() -> Result<Scratch, Error> {
        Scratch::in_target(Target {
            workload: None,
            container: None,
        })
    }

    /// The scratch directory of another workload of the action (a task pod).
    pub fn in_target(target: Target) -> Result<Scratch, Error> {
        let dir = exec::scratch_dir(&target)?;
        Ok(Scratch { target, dir })
    }

    /// The directory's absolute path.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The absolute path of file `name` in it (what to give a tool).
    pub fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.dir)
    }

    /// Stream file `name` into `key` of `store` (compressed, hashed and checked by the host).
    pub fn put(
        &self,
        name: &str,
        store: &Store,
        key: &str,
        opts: &PutOptions,
    ) -> Result<ObjectInfo, Error> {
        let proc = exec::read_file(&self.target, name)?;
        let stdout = proc
            .take_stdout()
            .ok_or_else(|| crate::internal("the host's file reader has no stdout"))?;
        let transfer = store.put(key, stdout, opts)?;
        let status = proc.wait()?;
        let uploaded = transfer.wait();
        crate::check_exit(&format!("reading {name} of the scratch directory"), &status)?;
        uploaded
    }

    /// Write object `key` of `store` (verified as it streams) to a new file `name`.
    pub fn get(&self, store: &Store, key: &str, name: &str) -> Result<(), Error> {
        let proc = exec::write_file(&self.target, name)?;
        let stdin = proc
            .take_stdin()
            .ok_or_else(|| crate::internal("the host's file writer has no stdin"))?;
        let fed = store.get_into(key, stdin)?.wait();
        let status = proc.wait()?;
        fed?;
        crate::check_exit(&format!("writing {name} in the scratch directory"), &status)
    }

    /// Move file `name` to `dest` in the workload's volume `volume`, whole or not at all;
    /// an existing `dest` is replaced only with `replace`.
    pub fn install(
        &self,
        name: &str,
        volume: &str,
        dest: &str,
        replace: bool,
    ) -> Result<(), Error> {
        exec::install_file(&self.target, name, volume, dest, replace)
    }
}
