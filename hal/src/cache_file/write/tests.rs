use super::*;

/// A fresh empty folder under the system's temporary folder.
fn folder(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("shadowattn-hal-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Names of the entries of `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
#[cfg_attr(miri, ignore = "files: Miri isolates the file system")]
fn the_file_replaces_the_old_one_and_no_temporary_file_stays() {
    let dir = folder("atomic");
    let path = dir.join("bank.bin");
    std::fs::write(&path, b"old").unwrap();
    write_atomic(&path, b"new contents").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
    assert_eq!(entries(&dir), ["bank.bin"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
#[cfg_attr(miri, ignore = "files: Miri isolates the file system")]
fn the_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = folder("mode");
    let path = dir.join("graph.bin");
    // Even over a file that everyone could read.
    std::fs::write(&path, b"old").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    write_atomic(&path, b"x").unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "files: Miri isolates the file system")]
fn a_failed_write_leaves_nothing_behind() {
    let dir = folder("failed");
    // The target is a folder: the rename fails, the temporary file goes.
    let target = dir.join("taken");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("inside"), b"keep").unwrap();
    assert!(write_atomic(&target, b"x").is_err());
    assert_eq!(entries(&dir), ["taken"]);
    assert!(write_atomic(&dir.join("no/such/folder/f"), b"x").is_err());
    assert_eq!(entries(&dir), ["taken"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
