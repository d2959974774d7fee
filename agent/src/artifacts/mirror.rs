//! An unpacked archive shown in a release as a real directory: its directories made anew
//! (the agent's, 0755), its files hard links to the store's (the same read-only inodes:
//! nothing is copied, nothing can be changed), its symlinks as they are. Model servers
//! that refuse a model directory reached through a symlink (MLflow resolves the model's
//! path and refuses one that leaves its parent: "resolved path is outside the artifact
//! directory") read it as any directory. Where the release and the store are on different
//! file systems (no hard link), the release gets a symlink to the store's tree instead.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Makes `dst` a copy of the store tree `src` made of hard links; `Ok(false)` when the
/// file systems differ (nothing is left at `dst`: link it instead). Blocking.
pub(crate) fn mirror(src: &Path, dst: &Path) -> io::Result<bool> {
    match copy_tree(src, dst) {
        Ok(()) => Ok(true),
        Err(e) => {
            let _ = std::fs::remove_dir_all(dst);
            if e.raw_os_error() == Some(libc::EXDEV) {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    std::fs::create_dir(dst)?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&from, &to)?;
        } else if kind.is_symlink() {
            // Checked when unpacked: it stays beneath the tree.
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else {
            std::fs::hard_link(&from, &to)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn a_mirror_shares_the_stores_files_and_has_real_directories() {
        let dir = std::env::temp_dir().join(format!("artifacts-mirror-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("data")).unwrap();
        std::fs::write(src.join("MLmodel"), "flavors: {}\n").unwrap();
        std::fs::write(src.join("data/model.pkl"), [7u8; 64]).unwrap();
        std::os::unix::fs::symlink("data/model.pkl", src.join("latest")).unwrap();
        let dst = dir.join("release/models/m");
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        assert!(mirror(&src, &dst).unwrap());
        let meta = |p: &Path| std::fs::symlink_metadata(p).unwrap();
        assert!(meta(&dst).is_dir() && !meta(&dst).file_type().is_symlink());
        assert_eq!(
            meta(&dst.join("data/model.pkl")).ino(),
            meta(&src.join("data/model.pkl")).ino()
        );
        assert_eq!(std::fs::read(dst.join("latest")).unwrap(), [7u8; 64]);
        // The real path of the model stays under its parent (what MLflow checks).
        let real = dst.join("MLmodel").canonicalize().unwrap();
        assert!(real.starts_with(dst.parent().unwrap().canonicalize().unwrap()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
