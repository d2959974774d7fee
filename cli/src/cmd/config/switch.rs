//! `config set core.state.uri NEW`: moving the state somewhere else moves nothing by
//! itself, so it says what the new state and the previous one hold, and how to copy what
//! only the previous one has (`state copy --from OLD`). A new state deployctl cannot read
//! (an etcd that does not answer, a file that is not a state) is refused, the setting left
//! as it was, unless `--force`; a file's missing directory is created.

use std::path::{Path, PathBuf};

use anyhow::anyhow;

use crate::decl;
use crate::project::{self, Project, StateConfig};
use crate::state::{self, State, StateStore};

pub(super) async fn state_uri(project: &Project, value: &str, force: bool) -> anyhow::Result<()> {
    // A URI the backends cannot use is bad input, before anything is read or written.
    let new_store = state::open_uri(project, value)?;
    let old_uri = project.state_uri();
    let old_store = state::open_uri(project, &old_uri);
    let same = old_store
        .as_ref()
        .is_ok_and(|old| old.describe() == new_store.describe());
    let mut created: Option<PathBuf> = None;
    let mut new_state: Result<State, String> = Ok(State::default());
    if !same {
        if let Some(dir) = state::file_path(project, value)
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .filter(|dir| !dir.exists())
        {
            match std::fs::create_dir_all(&dir) {
                Ok(()) => created = Some(dir),
                Err(e) => {
                    new_state = Err(format!(
                        "cannot create the directory {}: {e}",
                        dir.display()
                    ))
                }
            }
        }
        if new_state.is_ok() {
            new_state = read(project, value, &*new_store).await;
        }
        if let (Err(e), false) = (&new_state, force) {
            return Err(anyhow!(
                "core.state.uri: {value} cannot be read: {e}; the setting is unchanged (still {old_uri}). Make it readable, or pass --force to switch anyway"
            ));
        }
    }

    let mut config = project.config.clone();
    config.core.state = Some(StateConfig {
        uri: value.to_string(),
        endpoint: project.state_endpoint(),
    });
    let path = project.root.join(project::CONFIG_FILE);
    decl::save(&path, &config)?;
    println!(
        "core.state.uri: {old_uri} → {value} (in {})",
        path.display()
    );
    if same {
        println!("that is the state it was: nothing to copy");
        return Ok(());
    }
    if let Some(dir) = created {
        println!("created the directory {} for it", dir.display());
    }
    match &new_state {
        Ok(st) => println!("{value} holds {}", some(st.deployments.keys())),
        Err(e) => println!(
            "warning: {value} cannot be read ({e}); deployctl commands fail until it can (--force switched anyway)"
        ),
    }
    let old_state = match &old_store {
        Ok(store) => read(project, &old_uri, &**store).await,
        Err(e) => Err(format!("{e:#}")),
    };
    match old_state {
        Err(e) => println!(
            "the previous state ({old_uri}) cannot be read ({e}): what it holds is not known"
        ),
        Ok(old) if old.deployments.is_empty() => {}
        Ok(old) => advise(&old, new_state.ok().as_ref(), &old_uri, value),
    }
    Ok(())
}

/// What the previous state has that the new one does not, and the command that copies it.
fn advise(old: &State, new: Option<&State>, old_uri: &str, value: &str) {
    let copy = format!("deployctl state copy --from {}", shell_word(old_uri));
    let Some(new) = new else {
        println!(
            "the previous state ({old_uri}) holds {}: once {value} can be read, copy them with `{copy}`",
            some(old.deployments.keys())
        );
        return;
    };
    let mut missing = Vec::new();
    let mut differ = Vec::new();
    for (name, dep) in &old.deployments {
        match state::compare(dep, new.deployments.get(name)) {
            fit if fit.copies() => missing.push(name),
            state::Fit::Differs { .. } => differ.push(name),
            _ => {}
        }
    }
    if !missing.is_empty() {
        println!(
            "the previous state ({old_uri}) has {} that {value} does not: copy them with `{copy}`",
            some(missing.iter().copied())
        );
    }
    if !differ.is_empty() {
        println!(
            "the previous state ({old_uri}) and {value} have different records of {}: `{copy}` names the differences; with --force it replaces {value}'s records with the previous state's",
            some(differ.iter().copied())
        );
    }
    if missing.is_empty() && differ.is_empty() {
        println!("{value} has everything the previous state ({old_uri}) has");
    }
}

/// A state's deployments, without side effects: a file that does not exist is an empty
/// state (reading it would create its directory and lock file).
async fn read(project: &Project, uri: &str, store: &dyn StateStore) -> Result<State, String> {
    if state::file_path(project, uri).is_some_and(|p| !p.exists()) {
        return Ok(State::default());
    }
    store.load().await.map_err(|e| format!("{e:#}"))
}

/// "no deployments", "1 deployment (iris)", "3 deployments (a, b, c)"; at most 8 names.
fn some<'a>(names: impl ExactSizeIterator<Item = &'a String>) -> String {
    const SHOWN: usize = 8;
    let n = names.len();
    let mut list: Vec<&str> = names.take(SHOWN).map(String::as_str).collect();
    let more = format!("and {} more", n.saturating_sub(SHOWN));
    if n > SHOWN {
        list.push(&more);
    }
    match n {
        0 => "no deployments".to_string(),
        1 => format!("1 deployment ({})", list.join(", ")),
        _ => format!("{n} deployments ({})", list.join(", ")),
    }
}

/// `s` as one shell word: as it is when it has nothing a shell treats specially.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_counted_and_cut() {
        let names: Vec<String> = (0..10).map(|i| format!("d{i}")).collect();
        assert_eq!(some(names[..0].iter()), "no deployments");
        assert_eq!(some(names[..1].iter()), "1 deployment (d0)");
        assert_eq!(some(names[..2].iter()), "2 deployments (d0, d1)");
        assert!(some(names.iter()).ends_with("d7, and 2 more)"));
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word(".deployctl/state.json"), ".deployctl/state.json");
        assert_eq!(shell_word("etcd://h:1/x"), "etcd://h:1/x");
        assert_eq!(shell_word("my state.json"), "'my state.json'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
