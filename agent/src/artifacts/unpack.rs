//! An archive unpacked into a new directory: .tar.gz, .tar.zst, .zip (or a plain .tar),
//! known by their first bytes, whatever the URL's name. An entry that would land outside the
//! directory — an absolute path, `..`, a path through a symlink, a symlink or hard link
//! pointing out — refuses the whole archive, as do devices and pipes. What it unpacks is
//! read-only: directories 0555, files 0444 (0555 when executable in the archive).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    TarGz,
    TarZst,
    Tar,
    Zip,
}

fn format_of(archive: &Path) -> Result<Format, String> {
    let mut head = [0u8; 262];
    let mut f = File::open(archive).map_err(|e| format!("cannot read the archive: {e}"))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(format!("cannot read the archive: {e}")),
        }
    }
    let head = &head[..n];
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Format::TarGz)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Format::TarZst)
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Ok(Format::Zip)
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Ok(Format::Tar)
    } else {
        Err("extract: the file is not a .tar.gz, .tar.zst, .zip or .tar archive (by its first bytes); unpack nothing, or drop extract".into())
    }
}

/// Unpacks `archive` into `into` (created; left half-made on an error, for the caller to
/// delete). How many files, directories and links it made.
pub(super) fn unpack(archive: &Path, into: &Path) -> Result<u64, String> {
    let format = format_of(archive)?;
    fs::create_dir(into).map_err(|e| format!("cannot create {}: {e}", into.display()))?;
    let open = || File::open(archive).map_err(|e| format!("cannot read the archive: {e}"));
    let mut out = Tree {
        root: into.to_path_buf(),
        made: 0,
        dirs: vec![into.to_path_buf()],
    };
    match format {
        Format::TarGz => tar(
            flate2::read::MultiGzDecoder::new(io::BufReader::new(open()?)),
            &mut out,
        )?,
        Format::TarZst => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(io::BufReader::new(open()?))
                .map_err(|e| format!("not a zstd archive: {e}"))?;
            tar(decoder, &mut out)?
        }
        Format::Tar => tar(io::BufReader::new(open()?), &mut out)?,
        Format::Zip => zip(open()?, &mut out)?,
    }
    out.seal()?;
    Ok(out.made)
}

/// The directory being filled.
struct Tree {
    root: PathBuf,
    made: u64,
    /// Every directory made, to be made read-only at the end.
    dirs: Vec<PathBuf>,
}

/// An entry's name as a path beneath the root: relative, no `..`. `None`: the root itself.
fn inside(name: &Path) -> Result<Option<PathBuf>, String> {
    let mut clean = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(p) => clean.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(outside(name, "its path leaves the directory"))
            }
        }
    }
    Ok((!clean.as_os_str().is_empty()).then_some(clean))
}

fn outside(name: &Path, why: &str) -> String {
    format!(
        "the archive's entry {:?} would land outside the directory it is unpacked to ({why}); nothing was unpacked",
        name.display().to_string()
    )
}

impl Tree {
    /// The directory `rel` (and its parents), never through a symlink.
    fn dir(&mut self, rel: &Path, name: &Path) -> Result<PathBuf, String> {
        let mut at = self.root.clone();
        for part in rel.components() {
            at.push(part);
            match fs::symlink_metadata(&at) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(outside(name, "it goes through a symlink of the archive"))
                }
                Ok(_) => {
                    return Err(format!(
                        "the archive's entry {:?} needs a directory where it has a file",
                        name.display().to_string()
                    ))
                }
                Err(_) => {
                    fs::create_dir(&at).map_err(|e| self.failed(&at, e))?;
                    self.dirs.push(at.clone());
                    self.made += 1;
                }
            }
        }
        Ok(at)
    }

    /// Where entry `rel` goes: its directory made; nothing there yet (a later entry of the
    /// same name replaces a file, as tar does; never a directory or a symlink).
    fn place(&mut self, rel: &Path, name: &Path) -> Result<PathBuf, String> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let dir = self.dir(parent, name)?;
        let at = dir.join(rel.file_name().unwrap_or_default());
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_file() => fs::remove_file(&at).map_err(|e| self.failed(&at, e))?,
            Ok(_) => {
                return Err(format!(
                    "the archive has {:?} twice, once as a directory or link",
                    name.display().to_string()
                ))
            }
            Err(_) => {}
        }
        Ok(at)
    }

    fn file(
        &mut self,
        rel: &Path,
        name: &Path,
        data: &mut dyn Read,
        exec: bool,
    ) -> Result<(), String> {
        let at = self.place(rel, name)?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .mode(if exec { 0o555 } else { 0o444 })
            .open(&at)
            .map_err(|e| self.failed(&at, e))?;
        io::copy(data, &mut f).map_err(|e| self.failed(&at, e))?;
        self.made += 1;
        Ok(())
    }

    /// A symlink whose target, read from where it lies, stays beneath the root.
    fn symlink(&mut self, rel: &Path, name: &Path, target: &Path) -> Result<(), String> {
        if target.is_absolute() {
            return Err(outside(name, &format!("a symlink to {}", target.display())));
        }
        let mut depth = rel.components().count() as i64 - 1;
        for c in target.components() {
            match c {
                Component::ParentDir => depth -= 1,
                Component::Normal(_) => depth += 1,
                _ => {}
            }
            if depth < 0 {
                return Err(outside(name, &format!("a symlink to {}", target.display())));
            }
        }
        let at = self.place(rel, name)?;
        std::os::unix::fs::symlink(target, &at).map_err(|e| self.failed(&at, e))?;
        self.made += 1;
        Ok(())
    }

    /// A hard link to a file unpacked before it.
    fn hard_link(&mut self, rel: &Path, name: &Path, target: &Path) -> Result<(), String> {
        let Some(src) = inside(target)? else {
            return Err(outside(name, "a hard link to the directory itself"));
        };
        let from = self.root.join(&src);
        if !fs::symlink_metadata(&from).is_ok_and(|m| m.is_file()) || self.through_link(&src) {
            return Err(outside(
                name,
                &format!(
                    "a hard link to {}, not a file of the archive",
                    target.display()
                ),
            ));
        }
        let at = self.place(rel, name)?;
        fs::hard_link(&from, &at).map_err(|e| self.failed(&at, e))?;
        self.made += 1;
        Ok(())
    }

    /// Whether a directory on the way to `rel` is a symlink.
    fn through_link(&self, rel: &Path) -> bool {
        let mut at = self.root.clone();
        let parts: Vec<_> = rel.components().collect();
        parts[..parts.len().saturating_sub(1)].iter().any(|p| {
            at.push(p);
            fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink())
        })
    }

    fn failed(&self, at: &Path, e: io::Error) -> String {
        if crate::disk::is_full(&e) {
            crate::disk::full_reason(&self.root)
        } else {
            format!(
                "cannot unpack {}: {e}",
                at.strip_prefix(&self.root).unwrap_or(at).display()
            )
        }
    }

    /// Every directory read-only, the deepest first.
    fn seal(&mut self) -> Result<(), String> {
        self.dirs
            .sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in &self.dirs {
            fs::set_permissions(d, fs::Permissions::from_mode(0o555))
                .map_err(|e| self.failed(d, e))?;
        }
        Ok(())
    }
}

fn tar(reader: impl Read, out: &mut Tree) -> Result<(), String> {
    use tar::EntryType;
    let broken = |e: io::Error| format!("the archive is damaged or not a tar archive: {e}");
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(broken)? {
        let mut entry = entry.map_err(broken)?;
        let name = entry.path().map_err(broken)?.into_owned();
        let kind = entry.header().entry_type();
        let Some(rel) = inside(&name)? else {
            continue;
        };
        match kind {
            EntryType::Directory => {
                out.dir(&rel, &name)?;
            }
            EntryType::Regular | EntryType::Continuous => {
                let exec = entry.header().mode().is_ok_and(|m| m & 0o111 != 0);
                out.file(&rel, &name, &mut entry, exec)?;
            }
            EntryType::Symlink | EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(broken)?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if kind == EntryType::Symlink {
                    out.symlink(&rel, &name, &target)?;
                } else {
                    out.hard_link(&rel, &name, &target)?;
                }
            }
            // Metadata entries the reader has already applied.
            EntryType::XGlobalHeader | EntryType::XHeader => {}
            other => {
                return Err(format!(
                    "the archive's entry {:?} is a {other:?} (a device, pipe or sparse file); only files, directories and links are unpacked",
                    name.display().to_string()
                ))
            }
        }
    }
    Ok(())
}

fn zip(file: File, out: &mut Tree) -> Result<(), String> {
    let broken =
        |e: zip::result::ZipError| format!("the archive is damaged or not a zip archive: {e}");
    let mut archive = zip::ZipArchive::new(io::BufReader::new(file)).map_err(broken)?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(broken)?;
        let name = PathBuf::from(entry.name());
        let Some(rel) = inside(&name)? else {
            continue;
        };
        if entry.is_dir() {
            out.dir(&rel, &name)?;
        } else if entry.is_symlink() {
            let mut target = String::new();
            (&mut entry)
                .take(4096)
                .read_to_string(&mut target)
                .map_err(|e| format!("cannot read the link {}: {e}", name.display()))?;
            out.symlink(&rel, &name, Path::new(&target))?;
        } else {
            let exec = entry.unix_mode().is_some_and(|m| m & 0o111 != 0);
            out.file(&rel, &name, &mut entry, exec)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
