use std::io::Write;

use super::*;

/// A fresh directory with an `app.log` and an appender that keeps its descriptor, like
/// an app does.
fn setup(name: &str) -> (PathBuf, PathBuf, File) {
    let dir = std::env::temp_dir().join(format!("logrotate-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let log = dir.join("app.log");
    let app = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    (dir, log, app)
}

fn len(p: &Path) -> u64 {
    fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn lines(from: u32, to: u32) -> String {
    (from..to).map(|n| format!("line {n:06}\n")).collect()
}

#[test]
fn rotates_and_keeps_n_files() {
    let (dir, log, mut app) = setup("keep");
    let logs = vec![log.clone()];
    let mut r = Rotator::new(4096, 2);
    let mut now = Instant::now();
    for round in 0..5u32 {
        app.write_all(lines(round * 1000, round * 1000 + 400).as_bytes())
            .unwrap();
        now += COPY_INTERVAL;
        r.round(&logs, true, now);
        assert_eq!(len(&log), 0, "round {round}: cut");
        assert!(len(&numbered(&log, 1)) <= 4096);
    }
    app.write_all(b"after\n").unwrap();
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "after\n",
        "the app writes at the new start"
    );
    let newest = fs::read_to_string(numbered(&log, 1)).unwrap();
    assert!(
        newest.starts_with("line "),
        "from a line's start: {:?}",
        &newest[..20]
    );
    assert!(newest.ends_with("line 004399\n"), "the newest part");
    assert!(fs::read_to_string(numbered(&log, 2))
        .unwrap()
        .ends_with("line 003399\n"));
    assert!(!numbered(&log, 3).exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_burst_keeps_its_newest_part_only() {
    let (dir, log, mut app) = setup("burst");
    app.write_all(lines(0, 100_000).as_bytes()).unwrap();
    let mut r = Rotator::new(64 * 1024, 3);
    let logs = vec![log.clone()];
    let next = r.round(&logs, true, Instant::now());
    let kept = fs::read_to_string(numbered(&log, 1)).unwrap();
    assert!(kept.len() as u64 <= 64 * 1024, "{}", kept.len());
    assert!(kept.len() as u64 > 60 * 1024, "{}", kept.len());
    assert!(kept.starts_with("line ") && kept.ends_with("line 099999\n"));
    assert_eq!(len(&log), 0);
    assert!(
        next < SLOWEST,
        "a fast writer is looked at more often: {next:?}"
    );
    assert_eq!(r.round(&logs, true, Instant::now()), SLOWEST);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_copy_without_room_or_twice_within_a_second() {
    let (dir, log, mut app) = setup("nocopy");
    let logs = vec![log.clone()];
    let mut r = Rotator::new(4096, 3);
    let now = Instant::now();
    app.write_all(lines(0, 1000).as_bytes()).unwrap();
    r.round(&logs, true, now);
    assert!(numbered(&log, 1).exists());
    app.write_all(lines(1000, 2000).as_bytes()).unwrap();
    r.round(&logs, true, now + Duration::from_millis(10));
    assert_eq!(len(&log), 0, "cut again");
    assert!(
        !numbered(&log, 2).exists(),
        "without a copy within a second"
    );
    app.write_all(lines(2000, 3000).as_bytes()).unwrap();
    r.round(&logs, false, now + COPY_INTERVAL);
    assert_eq!(len(&log), 0, "cut without room");
    assert!(!numbered(&log, 2).exists(), "without a copy");
    assert!(fs::read_to_string(numbered(&log, 1))
        .unwrap()
        .ends_with("line 000999\n"));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_steady_writer_loses_nothing() {
    let (dir, log, mut app) = setup("steady");
    let logs = vec![log.clone()];
    let mut r = Rotator::new(4096, 2);
    let mut now = Instant::now();
    let mut n = 0;
    while !numbered(&log, 1).exists() {
        app.write_all(lines(n, n + 10).as_bytes()).unwrap();
        n += 10;
        now += COPY_INTERVAL;
        r.round(&logs, true, now);
    }
    assert_eq!(fs::read_to_string(numbered(&log, 1)).unwrap(), lines(0, n));
    fs::remove_dir_all(&dir).unwrap();
}
