use std::time::Duration;

use sha2::{Digest, Sha256};

use super::*;

fn sha(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// A directory of the test's own, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("partial-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// `n` bytes that differ from chunk to chunk.
fn chunk(i: usize, n: usize) -> Bytes {
    Bytes::from((0..n).map(|j| (i * 7 + j) as u8).collect::<Vec<u8>>())
}

/// Writes `count` chunks of `size` bytes: all of them.
async fn write_chunks(part: &mut Partial, count: usize, size: usize) -> Vec<u8> {
    let mut whole = Vec::new();
    for i in 0..count {
        let c = chunk(i, size);
        whole.extend_from_slice(&c);
        part.write(c).await.expect("written");
    }
    whole
}

#[tokio::test]
async fn chunks_are_hashed_and_written_in_order_across_a_reset() {
    let dir = scratch("order");
    let path = dir.join("a.part");
    let mut part = Partial::open(&path, false).await.expect("opened");
    part.write(Bytes::from_static(b"thrown away"))
        .await
        .expect("written");
    part.reset().await.expect("reset");
    assert_eq!(part.len, 0);
    // More than a writeback window, in chunks of a network read's size.
    let whole = write_chunks(&mut part, (WINDOW as usize) / 300_000 + 20, 300_000).await;
    assert_eq!(part.len, whole.len() as u64);
    let hash = part.finish().await.expect("finished");
    assert_eq!(hash, sha(&whole));
    assert!(std::fs::read(&path).expect("the file") == whole);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_kept_file_is_hashed_and_continued() {
    let dir = scratch("kept");
    let path = dir.join("b.part");
    std::fs::write(&path, b"the first half, ").expect("a partial file");
    let mut part = Partial::open(&path, true).await.expect("opened");
    assert_eq!(part.len, 16);
    part.write(Bytes::from_static(b"the second half"))
        .await
        .expect("written");
    let hash = part.finish().await.expect("finished");
    assert_eq!(hash, sha(b"the first half, the second half"));
    // Not kept: started again.
    let part = Partial::open(&path, false).await.expect("opened");
    assert_eq!(part.len, 0);
    assert_eq!(part.finish().await.expect("finished"), sha(b""));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_file_is_resumed_only_after_its_earlier_writer_wrote_all_it_was_given() {
    let dir = scratch("resume");
    let path = dir.join("c.part");
    let mut first = Partial::open(&path, true).await.expect("opened");
    let whole = write_chunks(&mut first, QUEUE, 1 << 20).await;
    // While the first writer has the file, a second one waits.
    let second = tokio::time::timeout(Duration::from_millis(300), Partial::open(&path, true));
    assert!(
        second.await.is_err(),
        "a second writer opened the file while the first had it"
    );
    // Dropped with chunks still queued: the next open sees all of them.
    drop(first);
    let second = Partial::open(&path, true).await.expect("opened");
    assert_eq!(second.len, whole.len() as u64);
    assert_eq!(second.finish().await.expect("finished"), sha(&whole));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn closed_it_holds_all_it_was_given() {
    let dir = scratch("closed");
    let path = dir.join("d.part");
    let mut part = Partial::open(&path, false).await.expect("opened");
    let c = chunk(3, 1000);
    part.write(c.clone()).await.expect("written");
    part.close().await.expect("closed");
    let again = Partial::open(&path, true).await.expect("opened");
    assert_eq!(again.len, c.len() as u64);
    assert_eq!(again.finish().await.expect("finished"), sha(&c));
    let _ = std::fs::remove_dir_all(&dir);
}
