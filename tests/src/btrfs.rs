//! A btrfs filesystem for a test: a sparse image file, formatted and loop-mounted under a
//! temporary directory (needs root and btrfs-progs; scripts/test-packages.sh installs it).
//! Dropping it unmounts it (the loop device is freed with it) and removes the image.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Btrfs {
    dir: tempfile::TempDir,
    pub mount: PathBuf,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Btrfs {
    /// A fresh filesystem of `mib` MiB.
    pub fn new(mib: u64) -> Btrfs {
        crate::ensure_packages();
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("fs.img");
        let mount = dir.path().join("mnt");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        std::fs::create_dir(&mount).unwrap();
        run(Command::new("mkfs.btrfs").arg("-q").arg(&image));
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mount));
        Btrfs { dir, mount }
    }

    /// A new subvolume at `rel` under the mount.
    pub fn subvolume(&self, rel: &str) -> PathBuf {
        let p = self.mount.join(rel);
        run(Command::new("btrfs").args(["subvolume", "create"]).arg(&p));
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Whether a file can be written and synced on the filesystem within `within`: false
    /// while it is frozen (`fsfreeze -f`). The writer thread left behind by a frozen
    /// filesystem finishes once it is thawed.
    pub fn writable(&self, within: std::time::Duration) -> bool {
        let file = self.mount.join(format!(".probe-{}", crate::random_hex(4)));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::Write;
            let r = std::fs::File::create(&file).and_then(|mut f| {
                f.write_all(b"probe")?;
                f.sync_all()
            });
            let _ = std::fs::remove_file(&file);
            let _ = tx.send(r.is_ok());
        });
        rx.recv_timeout(within).unwrap_or(false)
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        // A test that failed while the filesystem was frozen must not hang its unmount.
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.mount).output();
        let _ = Command::new("umount").arg(&self.mount).output();
    }
}
