//! The commands that build an environment, from the installer and what to install: pure,
//! so each case is a unit test.

use std::path::Path;

use super::VenvRequest;
use crate::venvs::Installer;

/// A program and its arguments.
pub(super) type Cmd = (String, Vec<String>);

/// The commands that make an environment.
#[derive(Debug, PartialEq)]
pub(super) struct Commands {
    /// Create the venv.
    pub create: Cmd,
    /// Install into it (none: only a Python version was declared).
    pub install: Option<Cmd>,
    /// The same install with `--offline`, tried first for a pinned environment with uv: its
    /// exact versions were installed before, so uv usually has every one in its cache
    /// (~0.1 s instead of ~0.7 s); whatever is missing, `install` then fetches.
    pub offline: Option<Cmd>,
}

pub(super) fn commands(
    installer: &Installer,
    interpreter: &Path,
    dir: &Path,
    req: &VenvRequest<'_>,
    pinned_file: &Path,
) -> Commands {
    let text = |p: &Path| p.to_string_lossy().into_owned();
    let python = text(&dir.join("bin/python"));
    let mut what: Vec<String> = Vec::new();
    if req.pinned.is_empty() {
        what.extend(req.pip.iter().cloned());
        if let Some((path, _)) = &req.requirements {
            what.extend(["-r".into(), text(path)]);
        }
    } else {
        what.extend(["--no-deps".into(), "-r".into(), text(pinned_file)]);
    }
    let (create, mut install): (Cmd, Cmd) = match installer {
        Installer::Uv { path, .. } => (
            (
                text(path),
                vec![
                    "venv".into(),
                    "--quiet".into(),
                    "--python".into(),
                    text(interpreter),
                    text(dir),
                ],
            ),
            (
                text(path),
                vec!["pip".into(), "install".into(), "--python".into(), python],
            ),
        ),
        Installer::Pip => (
            (
                text(interpreter),
                vec!["-m".into(), "venv".into(), text(dir)],
            ),
            (
                python,
                vec![
                    "-m".into(),
                    "pip".into(),
                    "install".into(),
                    "--progress-bar".into(),
                    "off".into(),
                ],
            ),
        ),
    };
    let nothing = what.is_empty();
    install.1.extend(what);
    let offline = match installer {
        Installer::Uv { .. } if !req.pinned.is_empty() => {
            let (program, mut args) = install.clone();
            args.insert(2, "--offline".into());
            Some((program, args))
        }
        _ => None,
    };
    Commands {
        create,
        install: (!nothing).then_some(install),
        offline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::pipeline::venv::tests::req;

    fn words(c: &Cmd) -> String {
        format!("{} {}", c.0, c.1.join(" "))
    }

    #[test]
    fn the_commands_that_make_an_environment() {
        let uv = Installer::Uv {
            path: "/opt/uv".into(),
            version: "uv 0.13".into(),
        };
        let (py, dir, pinned_file) = (
            Path::new("/usr/bin/python3"),
            Path::new("/e/k"),
            Path::new("/e/k.pinned.txt"),
        );
        let pip = vec!["six==1.16.0".to_string()];
        let r = Path::new("requirements.txt");
        let c = commands(
            &uv,
            py,
            dir,
            &req(&pip, Some((r, String::new()))),
            pinned_file,
        );
        assert_eq!(
            words(&c.create),
            "/opt/uv venv --quiet --python /usr/bin/python3 /e/k"
        );
        let install = c.install.as_ref().map(words);
        assert_eq!(
            install.as_deref(),
            Some("/opt/uv pip install --python /e/k/bin/python six==1.16.0 -r requirements.txt")
        );
        assert_eq!(c.offline, None);

        // Pinned: exactly the recorded versions, offline first.
        let pins = vec!["six==1.16.0".to_string(), "idna==3.7".to_string()];
        let mut pinned = req(&pip, None);
        pinned.pinned = &pins;
        let c = commands(&uv, py, dir, &pinned, pinned_file);
        let install = c.install.as_ref().map(words);
        assert_eq!(
            install.as_deref(),
            Some("/opt/uv pip install --python /e/k/bin/python --no-deps -r /e/k.pinned.txt")
        );
        assert_eq!(
            c.offline.as_ref().map(words).as_deref(),
            Some("/opt/uv pip install --offline --python /e/k/bin/python --no-deps -r /e/k.pinned.txt")
        );

        // pip, and a declared Python version alone: a venv with nothing installed.
        let c = commands(&Installer::Pip, py, dir, &req(&[], None), pinned_file);
        assert_eq!(words(&c.create), "/usr/bin/python3 -m venv /e/k");
        assert_eq!((c.install, c.offline), (None, None));
        let c = commands(&Installer::Pip, py, dir, &req(&pip, None), pinned_file);
        assert_eq!(
            c.install.as_ref().map(words).as_deref(),
            Some("/e/k/bin/python -m pip install --progress-bar off six==1.16.0")
        );
    }
}
