use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use super::*;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("unpack-test-{}-{name}", std::process::id()));
    let _ = crate::artifacts::remove_tree(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

enum E<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Link(&'a str, &'a str),
}

/// A .tar.gz with these entries, names written raw (the builder refuses `..`).
fn targz(dir: &Path, entries: &[E]) -> PathBuf {
    let path = dir.join("a.tar.gz");
    let gz = flate2::write::GzEncoder::new(File::create(&path).unwrap(), Default::default());
    let mut b = tar::Builder::new(gz);
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, kind, data, mode, link): (&str, tar::EntryType, &[u8], u32, &str) = match e {
            E::File(n, d, m) => (n, tar::EntryType::Regular, d, *m, ""),
            E::Dir(n) => (n, tar::EntryType::Directory, b"", 0o755, ""),
            E::Symlink(n, t) => (n, tar::EntryType::Symlink, b"", 0o777, t),
            E::Link(n, t) => (n, tar::EntryType::Link, b"", 0o644, t),
        };
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap().flush().unwrap();
    path
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_model_directory_is_unpacked_read_only() {
    let dir = scratch("ok");
    let archive = targz(
        &dir,
        &[
            E::Dir("model/"),
            E::File("model/MLmodel", b"flavors: {}\n", 0o644),
            E::File("model/bin/run", b"#!/bin/sh\n", 0o755),
            E::Symlink("model/latest", "MLmodel"),
            E::Link("model/copy", "model/MLmodel"),
        ],
    );
    let into = dir.join("out");
    let made = unpack(&archive, &into).unwrap();
    assert_eq!(
        made, 6,
        "model/, bin/, two files, a symlink and a hard link"
    );
    assert_eq!(
        fs::read_to_string(into.join("model/latest")).unwrap(),
        "flavors: {}\n"
    );
    assert_eq!(mode(&into.join("model/MLmodel")), 0o444);
    assert_eq!(mode(&into.join("model/bin/run")), 0o555);
    assert_eq!(mode(&into.join("model")), 0o555);
    assert_eq!(mode(&into), 0o555);
    crate::artifacts::remove_tree(&dir).unwrap();
}

#[test]
fn entries_that_leave_the_directory_are_refused() {
    let cases: Vec<(&str, Vec<E>)> = vec![
        ("dotdot", vec![E::File("../evil", b"x", 0o644)]),
        ("inner-dotdot", vec![E::File("a/../../evil", b"x", 0o644)]),
        ("absolute", vec![E::File("/tmp/evil", b"x", 0o644)]),
        ("symlink-out", vec![E::Symlink("link", "../../etc/passwd")]),
        ("symlink-abs", vec![E::Symlink("link", "/etc/passwd")]),
        (
            "through-symlink",
            vec![E::Symlink("d", "."), E::File("d/f", b"x", 0o644)],
        ),
        ("hardlink-out", vec![E::Link("l", "../x")]),
        ("hardlink-abs", vec![E::Link("l", "/etc/passwd")]),
    ];
    for (name, entries) in cases {
        let dir = scratch(name);
        let archive = targz(&dir, &entries);
        let err = unpack(&archive, &dir.join("out")).unwrap_err();
        assert!(err.contains("would land outside"), "{name}: {err}");
        crate::artifacts::remove_tree(&dir).unwrap();
    }
}

#[test]
fn zip_and_plain_files() {
    let dir = scratch("zip");
    let path = dir.join("a.zip");
    {
        let mut z = zip::ZipWriter::new(File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        z.add_directory("m/", opts).unwrap();
        z.start_file("m/weights.bin", opts).unwrap();
        z.write_all(b"0123").unwrap();
        z.finish().unwrap();
    }
    let into = dir.join("out");
    unpack(&path, &into).unwrap();
    assert_eq!(fs::read(into.join("m/weights.bin")).unwrap(), b"0123");
    let bad = dir.join("bad.zip");
    {
        let mut z = zip::ZipWriter::new(File::create(&bad).unwrap());
        z.start_file("../evil", zip::write::SimpleFileOptions::default())
            .unwrap();
        z.finish().unwrap();
    }
    let err = unpack(&bad, &dir.join("out2")).unwrap_err();
    assert!(err.contains("would land outside"), "{err}");
    let plain = dir.join("model.pkl");
    fs::write(&plain, b"not an archive").unwrap();
    let err = unpack(&plain, &dir.join("out3")).unwrap_err();
    assert!(err.starts_with("extract:"), "{err}");
    crate::artifacts::remove_tree(&dir).unwrap();
}

#[test]
fn a_tar_zst_is_unpacked() {
    let dir = scratch("zst");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path("weights.bin").unwrap();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &b"abcd"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let zst =
        ruzstd::encoding::compress_to_vec(&tar[..], ruzstd::encoding::CompressionLevel::Fastest);
    let path = dir.join("m.tar.zst");
    fs::write(&path, zst).unwrap();
    unpack(&path, &dir.join("out")).unwrap();
    assert_eq!(fs::read(dir.join("out/weights.bin")).unwrap(), b"abcd");
    crate::artifacts::remove_tree(&dir).unwrap();
}
