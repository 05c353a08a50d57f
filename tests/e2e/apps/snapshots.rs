//! Local volume snapshots on a real btrfs (a loop-mounted image): a read-only subvolume
//! snapshot cut of a Workload's volume, restored into a new directory the params name with
//! the same bytes; a second restore over it, another namespace, and a directory the params
//! do not name are refused; a volume that is not a subvolume, or not on btrfs, is refused
//! with what to do — never copied and called a snapshot.

use super::cli;
use coffer_tests::btrfs::Btrfs;
use coffer_tests::tree_contents as tree;
use std::path::Path;

fn setup(c: &coffer_tests::cli::Cli, name: &str, volume: &Path, target: &Path, named: bool) {
    let volumes = if named {
        format!(", volumes: {{data: {}}}", target.display())
    } else {
        String::new()
    };
    let applied = c.apply(&format!(
        "apiVersion: coffer.dev/v1alpha1\nkind: Blueprint\nmetadata: {{name: snap-{name}}}\nspec:\n  plugin: {{path: {}}}\n  grants: {{snapshot: true, location: [read, write]}}\n  params: {{backup: {{mode: snapshot, pvc: data, target: {}{volumes}}}}}\n---\napiVersion: coffer.dev/v1alpha1\nkind: Workload\nmetadata: {{name: {name}}}\nspec:\n  blueprint: snap-{name}\n  volumes: {{data: {}}}\n",
        coffer_tests::test_plugin("hostile").display(),
        target.display(),
        volume.display()
    ));
    assert!(applied.ok, "{}", applied.stderr);
}

#[test]
fn a_btrfs_volume_is_cut_and_restored_and_anything_else_refused() {
    let fs = Btrfs::new(256);
    let data = fs.subvolume("data");
    std::fs::create_dir_all(data.join("base")).unwrap();
    std::fs::write(data.join("base/1"), coffer_tests::random_hex(1 << 20)).unwrap();
    std::fs::write(data.join("PG_VERSION"), "15\n").unwrap();
    let before = tree(&data);
    let c = cli();

    let restored = fs.mount.join("restored");
    setup(&c, "vol", &data, &restored, true);
    let r = c.ok(&["backup", "vol", "-o", "json"]).json();
    let outputs = &r["status"]["outputs"];
    let snapshot = outputs["snapshot"].as_str().unwrap();
    assert_eq!(tree(&restored), before, "the restored volume differs");
    assert!(
        outputs["conflict"]
            .as_str()
            .unwrap()
            .contains("is not empty"),
        "{outputs:#}"
    );
    assert!(
        outputs["denied"]
            .as_str()
            .unwrap()
            .contains("no namespaces"),
        "{outputs:#}"
    );
    // The cut is a read-only snapshot beside the volume; the restore is writable.
    let cut = fs.mount.join(".coffer-snapshots/vol").join(snapshot);
    assert_eq!(tree(&cut), before);
    let e = std::fs::write(cut.join("x"), "x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc_erofs()), "{e}");
    std::fs::write(restored.join("x"), "x").unwrap();
    assert!(!data.join("x").exists());

    // A restore into a directory the params do not name.
    let loose = fs.mount.join("loose");
    setup(&c, "unnamed", &data, &loose, false);
    let r = c.run(&["backup", "unnamed"]);
    assert!(
        !r.ok
            && r.stderr
                .contains("a restore creates only a directory the action's params name"),
        "{}",
        r.stderr
    );
    assert!(!loose.exists());

    // Not a subvolume; not on btrfs.
    let plain = fs.mount.join("plain");
    std::fs::create_dir(&plain).unwrap();
    setup(&c, "plain", &plain, &fs.mount.join("p2"), true);
    let r = c.run(&["backup", "plain"]);
    assert!(
        !r.ok
            && r.stderr
                .contains("is a directory on btrfs but not a subvolume"),
        "{}",
        r.stderr
    );
    let elsewhere = tempfile::tempdir().unwrap();
    setup(&c, "ext", elsewhere.path(), &fs.mount.join("e2"), true);
    let r = c.run(&["backup", "ext"]);
    assert!(
        !r.ok && r.stderr.contains("is not on btrfs"),
        "{}",
        r.stderr
    );
    assert!(!fs.mount.join("p2").exists() && !fs.mount.join("e2").exists());
}

/// EROFS.
fn libc_erofs() -> i32 {
    30
}
