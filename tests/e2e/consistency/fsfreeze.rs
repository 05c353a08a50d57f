//! fsfreeze on a real filesystem: an ext4 image (the application's filesystem, mounted from
//! a loop device) lives in a btrfs subvolume; the built-in `fsfreeze` Blueprint freezes the
//! ext4, cuts the subvolume, thaws at once and exports the cut. The restored image is a
//! clean filesystem — ext4 cleared `needs_recovery` when it was frozen, which an unfrozen
//! cut of a mounted ext4 never has — holding every file written before the backup.

use super::cli;
use coffer_tests::btrfs::Btrfs;
use coffer_tests::tree_contents as tree;
use std::process::Command;
use std::time::Duration;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An ext4 image mounted for the test; unmounted (and thawed first) when dropped.
struct Ext4 {
    mount: std::path::PathBuf,
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.mount).output();
        let _ = Command::new("umount").arg(&self.mount).output();
    }
}

fn needs_recovery(image: &std::path::Path) -> bool {
    run(Command::new("dumpe2fs").arg("-h").arg(image)).contains("needs_recovery")
}

#[test]
fn a_frozen_filesystem_is_cut_clean_and_thawed_at_once() {
    let fs = Btrfs::new(512);
    let vm = fs.subvolume("vm");
    let image = vm.join("disk.img");
    run(Command::new("truncate").args(["-s", "128M"]).arg(&image));
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
    let app = fs.path().join("app");
    std::fs::create_dir(&app).unwrap();
    run(Command::new("mount")
        .args(["-o", "loop"])
        .arg(&image)
        .arg(&app));
    let ext4 = Ext4 { mount: app.clone() };
    // Files written and not synced: in the page cache and the journal, not yet in place.
    for i in 0..50 {
        std::fs::write(app.join(format!("f{i}")), coffer_tests::random_hex(8 << 10)).unwrap();
    }
    let before = tree(&app);
    assert!(
        needs_recovery(&image),
        "a mounted ext4 is not clean on disk"
    );

    let c = cli();
    let applied = c.apply(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: vm}}\nspec:\n  blueprint: fsfreeze\n  volumes: {{disk: {vm}}}\n  params: {{backup: {{freeze: [{app}], volumes: [disk]}}}}\n",
        vm = vm.display(),
        app = app.display()
    ));
    assert!(applied.ok, "{}", applied.stderr);
    let b = c.ok(&["backup", "vm", "-o", "json"]).json();
    let st = &b["status"];
    assert_eq!(st["phase"], "Completed", "{b:#}");
    assert!(
        st["quiesce"]["ms"].as_u64().unwrap() < 1000,
        "{:#}",
        st["quiesce"]
    );
    assert_eq!(st["guards"][0]["name"], format!("thaw {}", app.display()));
    assert_eq!(st["guards"][0]["firedBy"], "plugin");
    // Thawed: writes go through.
    let probe = app.join("after");
    let writer = std::thread::spawn(move || std::fs::write(probe, "x").is_ok());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        writer.is_finished() && writer.join().unwrap(),
        "left frozen"
    );
    // The cut was exported and deleted.
    let snaps = fs.mount.join(".coffer-snapshots/vm");
    assert_eq!(std::fs::read_dir(&snaps).map(|d| d.count()).unwrap_or(0), 0);

    let rp = st["restorePoint"].as_str().unwrap();
    let restored = fs.mount.join("restored");
    c.ok(&[
        "restore",
        "vm",
        "--from",
        rp,
        "-p",
        &format!("volumes={{\"disk\":\"{}\"}}", restored.display()),
    ]);
    let copy = restored.join("disk.img");
    assert!(
        !needs_recovery(&copy),
        "the cut of the frozen filesystem needs journal recovery"
    );
    run(Command::new("e2fsck").args(["-f", "-n"]).arg(&copy));
    let back = fs.path().join("back");
    std::fs::create_dir(&back).unwrap();
    run(Command::new("mount")
        .args(["-o", "loop,ro"])
        .arg(&copy)
        .arg(&back));
    let got = tree(&back);
    let _ = Command::new("umount").arg(&back).output();
    drop(ext4);
    assert_eq!(got, before, "the restored filesystem differs");
}
