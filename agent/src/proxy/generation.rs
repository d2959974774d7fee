//! Route generations: every route and every removal the agent sends the node proxy carries
//! a number larger than any it sent before, and the proxy applies nothing older than what it
//! has for that address. So a request the agent gave up on (the proxy did not answer) can
//! never undo what the agent decided after it, should the proxy take it late. The last
//! number is kept in `<data>/proxy/generation`, so it keeps growing across agent restarts.

use std::path::{Path, PathBuf};

pub(super) struct Generations {
    last: u64,
    file: PathBuf,
}

impl Generations {
    /// The last generation handed out, from `file` (0 when there is none).
    pub(super) fn load(file: &Path) -> Generations {
        let last = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        Generations {
            last,
            file: file.to_path_buf(),
        }
    }

    /// From now on, numbers above `seen` (what a proxy has already applied).
    pub(super) fn above(&mut self, seen: u64) {
        self.last = self.last.max(seen);
    }

    /// The next generation, kept on disk first (a failure to write it is logged: the
    /// proxy's own table still keeps the numbers growing, see [`Generations::above`]).
    pub(super) async fn next(&mut self) -> u64 {
        self.last += 1;
        let (file, text) = (self.file.clone(), format!("{}\n", self.last));
        let written = tokio::task::spawn_blocking(move || {
            if let Some(dir) = file.parent() {
                crate::fsmode::create_dir(dir, crate::fsmode::PRIVATE_DIR)
                    .map_err(|e| e.to_string())?;
            }
            crate::fsmode::write_atomic(&file, text.as_bytes()).map_err(|e| e.to_string())
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot keep the node proxy's route generation")
            }
            Err(e) => tracing::warn!(error = %e, "cannot keep the node proxy's route generation"),
        }
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn generations_grow_across_restarts_and_above_what_the_proxy_has() {
        let dir = std::env::temp_dir().join(format!("generations-{}", std::process::id()));
        let file = dir.join("generation");
        let mut g = Generations::load(&file);
        assert_eq!((g.next().await, g.next().await), (1, 2));
        let mut again = Generations::load(&file);
        assert_eq!(again.next().await, 3, "an agent restart goes on");
        again.above(100);
        again.above(7);
        assert_eq!(again.next().await, 101);
        let _ = std::fs::remove_dir_all(dir);
    }
}
